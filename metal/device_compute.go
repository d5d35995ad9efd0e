package metal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
	"sync"
)

// Compute is a device that runs the MSL kernels of package shaders: Metal on
// darwin (metal/mtl) and the simulator (metal/sim) implement it, and the same Go
// dispatch code ([RunBinary], [RunMatMul], ...) drives both.
//
// Work is asynchronous: Dispatch records a launch and returns; launches are
// batched and submitted when a buffer they use is waited for ([Buffer.Wait], which
// every CPU read of a tensor does), on Flush, on Synchronize, or when a batch is
// full. Buffers a kernel reads or writes must come from the device's NewBuffer.
type Compute interface {
	Device
	// Facts describes the device and its limits.
	Facts() Facts
	// Dispatch records one launch. It fails when the launch cannot be encoded (an
	// unknown kernel, a pipeline that does not build, arguments that do not match
	// the kernel); the caller then falls back to the CPU. Failures of the work
	// itself are reported by Synchronize.
	Dispatch(l *Launch) error
	// Flush submits the recorded launches without waiting for them.
	Flush()
}

// Facts are what a compute device reports about itself.
type Facts struct {
	Name string
	// Family is the Apple GPU family (7 for Apple7: M1; 8: M2; 9: M3 and M4;
	// 10: M5), 0 when below Apple7. simdgroup_matrix needs 7 or more.
	Family               int
	UnifiedMemory        bool
	WorkingSet           uint64 // recommended maximum bytes of buffers in use
	MaxThreadgroupMemory int    // bytes of threadgroup memory per threadgroup
	MaxThreadsPerGroup   int    // threads per threadgroup
	SIMDWidth            int    // threads per SIMD group
	LanguageVersion      string // the MSL version kernels are compiled for, read back
	Simulated            bool   // the simulator, not a GPU
}

// SimdgroupMatrix reports whether simdgroup_matrix kernels may run.
func (f Facts) SimdgroupMatrix() bool { return f.Family >= 7 }

// Access says how a kernel uses a buffer argument. The simulator checks it
// against the kernel's signature (Read needs a const pointer) and poisons Write
// arguments with NaN before the launch, so an element the kernel fails to write
// cannot pass as a plausible value.
type Access uint8

// The buffer access modes.
const (
	Read      Access = iota // the kernel only reads
	Write                   // the kernel overwrites every byte from the offset on
	ReadWrite               // the kernel reads and writes (in place)
)

func (a Access) String() string {
	switch a {
	case Read:
		return "read"
	case Write:
		return "write"
	case ReadWrite:
		return "read-write"
	}
	return fmt.Sprintf("access(%d)", uint8(a))
}

// Arg binds one [[buffer(Index)]] argument: a device buffer (from Offset on), or
// small constant data (Bytes, copied at Dispatch) for a `constant T&` argument.
type Arg struct {
	Index  int
	Buffer *Buffer
	Offset int
	Access Access
	Bytes  []byte
}

// In binds b as a read-only argument.
func In(index int, b *Buffer) Arg { return Arg{Index: index, Buffer: b, Access: Read} }

// Out binds b as an argument the kernel overwrites.
func Out(index int, b *Buffer) Arg { return Arg{Index: index, Buffer: b, Access: Write} }

// InOut binds b as an argument the kernel reads and updates in place.
func InOut(index int, b *Buffer) Arg { return Arg{Index: index, Buffer: b, Access: ReadWrite} }

// Params binds v, a struct of 32-bit fields (uint32, int32, float32 and arrays of
// them, so that Go and MSL lay it out alike), as constant data.
func Params(index int, v any) Arg {
	checkParams(reflect.TypeOf(v))
	b, err := binary.Append(nil, binary.LittleEndian, v)
	if err != nil {
		panic(fmt.Sprintf("metal: Params(%T): %v", v, err))
	}
	return Arg{Index: index, Bytes: b, Access: Read}
}

func checkParams(t reflect.Type) {
	switch t.Kind() {
	case reflect.Uint32, reflect.Int32, reflect.Float32:
		return
	case reflect.Array:
		checkParams(t.Elem())
		return
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			checkParams(t.Field(i).Type)
		}
		return
	}
	panic(fmt.Sprintf("metal: Params: %s: want uint32, int32 or float32 fields", t))
}

// Constant is a function constant ([[function_constant(Index)]]) of a launch:
// a bool, int32, uint32 or float32. Pipelines are cached per kernel and constants.
type Constant struct {
	Index int
	Value any
}

// Launch is one kernel dispatch: Groups threadgroups of Threads threads each.
type Launch struct {
	Kernel    string
	Constants []Constant
	Groups    [3]int // threadgroups in the grid, per dimension
	Threads   [3]int // threads per threadgroup, per dimension
	Args      []Arg
	// Shared holds the bytes of dynamic threadgroup memory for each
	// [[threadgroup(i)]] argument, by index i.
	Shared []int
}

// ConstantBits returns a constant's type name and its value as raw bits.
func ConstantBits(c Constant) (typ string, bits uint64, err error) {
	switch v := c.Value.(type) {
	case bool:
		if v {
			return "bool", 1, nil
		}
		return "bool", 0, nil
	case int32:
		return "int", uint64(uint32(v)), nil
	case uint32:
		return "uint", uint64(v), nil
	case float32:
		return "float", uint64(math.Float32bits(v)), nil
	}
	return "", 0, fmt.Errorf("function constant %d: %T: want bool, int32, uint32 or float32", c.Index, c.Value)
}

// PipelineKey names the pipeline a launch needs: its kernel and constants.
func (l *Launch) PipelineKey() string {
	if len(l.Constants) == 0 {
		return l.Kernel
	}
	cs := append([]Constant(nil), l.Constants...)
	sort.Slice(cs, func(i, j int) bool { return cs[i].Index < cs[j].Index })
	var sb strings.Builder
	sb.WriteString(l.Kernel)
	for _, c := range cs {
		typ, bits, _ := ConstantBits(c)
		fmt.Fprintf(&sb, "|%d:%s=%x", c.Index, typ, bits)
	}
	return sb.String()
}

// Check validates what any device needs of a launch: sizes within the device's
// limits and arguments that are well formed. Devices call it in Dispatch.
func (l *Launch) Check(f Facts) error {
	if l.Kernel == "" {
		return errors.New("launch without a kernel name")
	}
	threads := 1
	for d := 0; d < 3; d++ {
		if l.Groups[d] < 0 || l.Groups[d] > math.MaxUint32 || l.Threads[d] < 1 {
			return fmt.Errorf("%s: grid %v of threadgroups %v: want groups ≥ 0 and threads ≥ 1", l.Kernel, l.Groups, l.Threads)
		}
		threads *= l.Threads[d]
	}
	if threads > f.MaxThreadsPerGroup {
		return fmt.Errorf("%s: %d threads per threadgroup, the device allows %d", l.Kernel, threads, f.MaxThreadsPerGroup)
	}
	shared := 0
	for _, n := range l.Shared {
		if n < 0 || n%16 != 0 {
			return fmt.Errorf("%s: dynamic threadgroup memory of %d bytes: want a multiple of 16", l.Kernel, n)
		}
		shared += n
	}
	if shared > f.MaxThreadgroupMemory {
		return fmt.Errorf("%s: %d bytes of threadgroup memory, the device allows %d", l.Kernel, shared, f.MaxThreadgroupMemory)
	}
	seen := map[int]bool{}
	for _, a := range l.Args {
		if a.Index < 0 || a.Index > 30 {
			return fmt.Errorf("%s: buffer index %d out of range 0..30", l.Kernel, a.Index)
		}
		if seen[a.Index] {
			return fmt.Errorf("%s: buffer index %d bound twice", l.Kernel, a.Index)
		}
		seen[a.Index] = true
		switch {
		case a.Buffer != nil && a.Bytes != nil:
			return fmt.Errorf("%s: buffer %d has both a buffer and bytes", l.Kernel, a.Index)
		case a.Buffer == nil && a.Bytes == nil:
			return fmt.Errorf("%s: buffer %d has neither a buffer nor bytes", l.Kernel, a.Index)
		case a.Bytes != nil && (a.Access != Read || len(a.Bytes) == 0 || len(a.Bytes) > 4096):
			return fmt.Errorf("%s: buffer %d: constant bytes are read-only and at most 4 KiB", l.Kernel, a.Index)
		case a.Buffer != nil && (a.Offset < 0 || a.Offset > a.Buffer.Size() || a.Offset%4 != 0):
			return fmt.Errorf("%s: buffer %d: offset %d in a buffer of %d bytes", l.Kernel, a.Index, a.Offset, a.Buffer.Size())
		}
	}
	for _, c := range l.Constants {
		if _, _, err := ConstantBits(c); err != nil {
			return fmt.Errorf("%s: %w", l.Kernel, err)
		}
	}
	return nil
}

// Flusher is implemented by device objects behind buffers ([Buffer.Handle]) whose
// device batches work: [Buffer.Wait] flushes before it blocks, so a CPU read
// submits the launches it waits for.
type Flusher interface{ Flush() }

var (
	openersMu sync.Mutex
	openers   = map[DeviceKind]func() (Compute, error){}

	accelOnce sync.Once
	accel     Compute
	accelErr  error
)

// RegisterCompute makes a compute device available to [OpenCompute]; metal/mtl
// (darwin) and metal/sim register themselves when imported.
func RegisterCompute(kind DeviceKind, open func() (Compute, error)) {
	openersMu.Lock()
	defer openersMu.Unlock()
	openers[kind] = open
}

// OpenCompute opens a compute device of the given kind. Each call opens anew.
func OpenCompute(kind DeviceKind) (Compute, error) {
	openersMu.Lock()
	open := openers[kind]
	openersMu.Unlock()
	if open == nil {
		switch kind {
		case DeviceMetal:
			return nil, errors.New("metal: no Metal device in this build (darwin only; import metal/mtl)")
		case DeviceSim:
			return nil, errors.New("metal: the simulator is not linked in (import metal/sim)")
		}
		return nil, fmt.Errorf("metal: %q is not a compute device", string(kind))
	}
	return open()
}

// Accelerator returns the process's compute device, opened once: the simulator
// for MLXTRAIN_DEVICE=sim, Metal for =metal or when unset (auto) on a Mac, none
// for =cpu. It returns nil and an error when the device asked for (or, in auto
// mode, a Mac's GPU) cannot be opened: callers warn once and use the CPU.
func Accelerator() (Compute, error) {
	accelOnce.Do(func() {
		switch Settings().Device {
		case DeviceCPU:
		case DeviceSim:
			accel, accelErr = OpenCompute(DeviceSim)
		case DeviceMetal:
			accel, accelErr = OpenCompute(DeviceMetal)
		case DeviceAuto:
			openersMu.Lock()
			_, ok := openers[DeviceMetal]
			openersMu.Unlock()
			if ok {
				accel, accelErr = OpenCompute(DeviceMetal)
			}
		}
		if accelErr != nil {
			accel = nil
		}
	})
	return accel, accelErr
}
