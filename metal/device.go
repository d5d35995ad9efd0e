package metal

// Device is where kernels run and buffers live. The CPU device is always present;
// Metal (metal/mtl, darwin) and the simulator (metal/sim) implement the same
// interface, and their buffers are shared memory whose contents are a Go slice.
type Device interface {
	Kind() DeviceKind
	Name() string
	// NewBuffer returns n bytes the CPU can read once pending work is waited for.
	NewBuffer(n int) (*Buffer, error)
	// Synchronize waits for all work submitted so far.
	Synchronize() error
}

// CPU is the host device: pooled Go memory, kernels on the calling goroutine and
// the worker pool.
type CPU struct{}

// Kind is DeviceCPU.
func (CPU) Kind() DeviceKind { return DeviceCPU }

// Name describes the host.
func (CPU) Name() string { return "cpu" }

// NewBuffer takes n bytes from the host pool.
func (CPU) NewBuffer(n int) (*Buffer, error) { return HostPool.Get(n), nil }

// Synchronize has nothing to wait for on the CPU.
func (CPU) Synchronize() error { return nil }
