package metal

import (
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"sync/atomic"
)

// Offloading ops to the accelerator ([Accelerator]): tensor storage, the device
// implementations of the registry's ops, and the warnings of the fallback chain.
//
// Storage: while an accelerator is open, every tensor's buffer comes from it
// ([Storage]). On Apple's unified memory a Metal buffer in shared storage mode is
// a Go slice to the CPU, and the simulator's buffers are host memory too, so the
// CPU kernels and the device kernels work on the same bytes: an op switching
// between the device and the CPU copies nothing. A CPU read waits only for the
// launches that use that buffer ([Buffer.Wait], which every tensor accessor calls).

// metalMinEnv sets every threshold of every device implementation at once, below
// the per-op variables: MLXTRAIN_METAL_MIN=0 sends every op with a kernel to the
// device whatever its size (tests and the simulator use it).
const metalMinEnv = "MLXTRAIN_METAL_MIN"

// Tuning holds a device implementation's thresholds (its Min, by dim) per Apple
// GPU family: the entry of the largest family not above the device's applies,
// and family 0 is the default.
type Tuning map[int][]int

// For returns the thresholds for a GPU family.
func (t Tuning) For(family int) []int {
	best := -1
	for f := range t {
		if f <= family && f > best {
			best = f
		}
	}
	if best < 0 {
		return nil
	}
	return t[best]
}

// Tunings is the tuning table of the device implementations, by op name and
// GPU family. The figures are estimates, not measurements (no Mac has run them
// yet): a launch costs some 5–10 µs of encoding and scheduling, so an op goes to
// the GPU once its work clearly exceeds that on the CPU; the M3 generation
// (Apple9) schedules small launches faster. MLXTRAIN_<OP>_MIN_<DIM>[_METAL] and
// MLXTRAIN_METAL_MIN override them.
var Tunings = map[string]Tuning{
	"binary":          {0: {1 << 15}, 9: {1 << 14}},
	"activation":      {0: {1 << 15}, 9: {1 << 14}},
	"unary":           {0: {1 << 15}, 9: {1 << 14}},
	"reduce":          {0: {1 << 15}, 9: {1 << 14}},
	"softmax":         {0: {64, 256}, 9: {32, 128}},
	"cross_entropy":   {0: {64, 256}, 9: {32, 128}},
	"embedding":       {0: {256, 64}},
	"matmul":          {0: {32, 32, 32}, 9: {16, 32, 32}},
	"rms_norm":        {0: {64, 128}, 9: {32, 64}},
	"layer_norm":      {0: {64, 128}, 9: {32, 64}},
	"swiglu":          {0: {1 << 15}, 9: {1 << 14}},
	"rope":            {0: {1 << 14}},
	"flash_attention": {0: {64, 64}, 9: {32, 32}},
	"adamw":           {0: {1 << 16}, 9: {1 << 15}},
	// mixture of experts: (rows, experts) for the router and its losses, pairs
	// for the sort (one threadgroup: worth it once the copy back would cost
	// more than the sort), (tokens, dim) and (rows, out) for the rest
	"moe_router":         {0: {256, 1}, 9: {128, 1}},
	"moe_router_loss":    {0: {256, 1}, 9: {128, 1}},
	"moe_route_sort":     {0: {1024}, 9: {512}},
	"moe_dispatch":       {0: {64, 64}, 9: {32, 64}},
	"moe_combine":        {0: {64, 64}, 9: {32, 64}},
	"moe_grouped_linear": {0: {64, 64}, 9: {32, 64}},
	// composites (CompositeImpl): rows of the model width
	"embed_positions":  {0: {256}},
	"linear_gelu":      {0: {64}, 9: {32}},
	"linear_residual":  {0: {64}, 9: {32}},
	"layer_norm_avx2":  {0: {64}, 9: {32}},
	"packed_attention": {0: {64}, 9: {32}},
}

// DeviceImpl returns the device implementation of op name: available when an
// accelerator is open (Metal, or the simulator with MLXTRAIN_DEVICE=sim), its
// thresholds from [Tunings], and selfTest run at its first use.
func DeviceImpl(name string, selfTest func() error) *Impl {
	return &Impl{Path: PathMetal, Available: Offloading, Tuning: Tunings[name], SelfTest: selfTest}
}

// CompositeImpl returns the device implementation of op name, which the CPU runs
// as one fused kernel and a device runs as its parts (each an op with a kernel
// of its own): available when an accelerator is open, thresholds from [Tunings]
// (below them the fused CPU kernel beats the parts).
func CompositeImpl(name string) *Impl {
	return &Impl{Path: PathMetal, Available: Offloading, Tuning: Tunings[name]}
}

// OnMetal reports whether op picks its device implementation for sizes.
func (o *Op) OnMetal(sizes ...int) bool { return o.Pick(sizes...).Path == PathMetal }

var (
	offloadOnce sync.Once
	offloadDev  Compute
)

// acceleratorOrNil is the open accelerator, or nil; the first call warns once
// when the device asked for could not be opened.
func acceleratorOrNil() Compute {
	offloadOnce.Do(func() {
		d, err := Accelerator()
		if err != nil {
			Warnf("device %s is not available (%v); the CPU runs every op", Settings().Device, err)
		}
		if d != nil {
			offloadDev = Counted(d)
		}
	})
	return offloadDev
}

// Offloading reports whether an accelerator is open, so that ops may run there.
func Offloading() bool { return acceleratorOrNil() != nil }

// OffloadDevice returns the open accelerator (counting its launches), or nil.
func OffloadDevice() Compute { return acceleratorOrNil() }

// Storage returns n bytes for a tensor: memory of the accelerator when one is
// open (shared with the CPU; see [Offloading]), else of [HostPool]. Its
// contents are undefined.
func Storage(n int) *Buffer {
	if d := acceleratorOrNil(); d != nil {
		b, err := d.NewBuffer(n)
		if err == nil {
			return b
		}
	}
	return HostPool.Get(n)
}

// StorageZeroed is Storage with the contents cleared.
func StorageZeroed(n int) *Buffer {
	if d := acceleratorOrNil(); d != nil {
		if b, err := d.NewBuffer(n); err == nil {
			clear(b.Bytes())
			return b
		}
	}
	return HostPool.GetZeroed(n)
}

// StoragePool is the pool tensors' memory comes from ([Storage]): the open
// accelerator's, else [HostPool]. Its Peak is the tensors' high-water mark.
func StoragePool() *Pool {
	if d := acceleratorOrNil(); d != nil {
		if p, ok := d.(interface{ Pool() *Pool }); ok && p.Pool() != nil {
			return p.Pool()
		}
	}
	return HostPool
}

// Owns reports whether b is memory of device d, which d's kernels may bind.
func Owns(d Compute, b *Buffer) bool {
	p, ok := d.(interface{ Pool() *Pool })
	return ok && b != nil && b.pool == p.Pool()
}

var (
	warnMu   sync.Mutex
	warnOut  io.Writer = os.Stderr
	warned             = map[string]bool{}
	launches atomic.Int64
)

// Warnf prints one line on stderr, "mlxtrain: warning: ...", once per distinct
// message.
func Warnf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	warnMu.Lock()
	defer warnMu.Unlock()
	if warned[msg] {
		return
	}
	warned[msg] = true
	fmt.Fprintf(warnOut, "mlxtrain: warning: %s\n", msg)
}

// SetWarnings sends warnings to w (tests capture them) and returns the previous
// writer.
func SetWarnings(w io.Writer) io.Writer {
	warnMu.Lock()
	defer warnMu.Unlock()
	prev := warnOut
	warnOut = w
	return prev
}

// DispatchFailed reports that op's device implementation could not launch (the
// op then runs on the CPU): one warning per op and error.
func DispatchFailed(op string, err error) {
	Warnf("%s: the device could not run it (%v); the CPU runs it", op, err)
}

// Launches counts the kernel launches dispatched through [Counted] since the
// process started.
func Launches() int64 { return launches.Load() }

// Counted wraps d so that every Dispatch adds to [Launches].
func Counted(d Compute) Compute { return countingDevice{d} }

type countingDevice struct{ Compute }

func (c countingDevice) Dispatch(l *Launch) error {
	err := c.Compute.Dispatch(l)
	if err == nil {
		launches.Add(1)
	}
	return err
}

func (c countingDevice) Pool() *Pool {
	if p, ok := c.Compute.(interface{ Pool() *Pool }); ok {
		return p.Pool()
	}
	return nil
}

// SelfTestReport lists, sorted, each op whose device implementation ran its
// self-test, with the outcome.
func SelfTestReport(ops []OpInfo) []string {
	var out []string
	for _, o := range ops {
		for _, im := range o.Impls {
			if im.SelfTest != "" {
				out = append(out, o.Name+": "+im.SelfTest)
			}
		}
	}
	sort.Strings(out)
	return out
}

// CheckAccelerator waits for the work submitted to the accelerator and reports
// the first error of that work (a launch that failed while running). On an
// error every device implementation is disabled, with one warning, and the CPU
// runs every op from then on. Training calls it once per optimizer step: a
// failure a self-test did not catch then costs that step, not the run.
func CheckAccelerator() error {
	d := acceleratorOrNil()
	if d == nil {
		return nil
	}
	err := d.Synchronize()
	if err != nil {
		Warnf("the device failed (%v); its kernels are disabled and the CPU runs every op", err)
		Kernels.DisableDevice("device failure: " + err.Error())
	}
	return err
}
