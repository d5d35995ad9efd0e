package metal

import (
	"encoding/binary"
	"math"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParamsLayOutLikeMSL(t *testing.T) {
	a := Params(3, struct {
		N     uint32
		Scale float32
		Off   [2]int32
	}{7, 1.5, [2]int32{-1, 2}})
	assert.Equal(t, 3, a.Index)
	assert.Equal(t, Read, a.Access)
	require.Len(t, a.Bytes, 16)
	assert.Equal(t, uint32(7), binary.LittleEndian.Uint32(a.Bytes[0:]))
	assert.Equal(t, float32(1.5), math.Float32frombits(binary.LittleEndian.Uint32(a.Bytes[4:])))
	assert.Equal(t, int32(-1), int32(binary.LittleEndian.Uint32(a.Bytes[8:])))
	assert.Panics(t, func() { Params(0, struct{ N int }{1}) }, "int has no fixed size")
	assert.Panics(t, func() { Params(0, struct{ X float64 }{1}) }, "no FP64 on Apple GPUs")
	assert.Panics(t, func() { Params(0, struct{ H uint16 }{1}) }, "16-bit fields would need MSL's padding rules")
}

func TestPipelineKeyNamesKernelAndConstants(t *testing.T) {
	a := &Launch{Kernel: "k", Constants: []Constant{{Index: 2, Value: true}, {Index: 0, Value: uint32(3)}}}
	b := &Launch{Kernel: "k", Constants: []Constant{{Index: 0, Value: uint32(3)}, {Index: 2, Value: true}}}
	c := &Launch{Kernel: "k", Constants: []Constant{{Index: 0, Value: int32(3)}, {Index: 2, Value: true}}}
	assert.Equal(t, a.PipelineKey(), b.PipelineKey(), "the order of constants does not matter")
	assert.NotEqual(t, a.PipelineKey(), c.PipelineKey(), "the type does")
	assert.Equal(t, "k", (&Launch{Kernel: "k"}).PipelineKey())
	_, _, err := ConstantBits(Constant{Index: 1, Value: 1.5})
	assert.Error(t, err, "float64 is not a function constant type")
	typ, bits, err := ConstantBits(Constant{Value: float32(-2)})
	require.NoError(t, err)
	assert.Equal(t, "float", typ)
	assert.Equal(t, uint64(math.Float32bits(-2)), bits)
}

func TestLaunchCheck(t *testing.T) {
	f := Facts{MaxThreadsPerGroup: 1024, MaxThreadgroupMemory: 32 << 10, SIMDWidth: 32}
	buf := NewPool(1 << 20).Get(64)
	defer buf.Release()
	ok := Launch{Kernel: "k", Groups: [3]int{2, 1, 1}, Threads: [3]int{32, 2, 1}, Args: []Arg{Out(0, buf), Params(1, struct{ N uint32 }{1})}, Shared: []int{256}}
	require.NoError(t, ok.Check(f))
	for name, mod := range map[string]func(l *Launch){
		"no kernel":        func(l *Launch) { l.Kernel = "" },
		"zero threads":     func(l *Launch) { l.Threads[1] = 0 },
		"too many threads": func(l *Launch) { l.Threads = [3]int{32, 32, 2} },
		"negative groups":  func(l *Launch) { l.Groups[0] = -1 },
		"shared too big":   func(l *Launch) { l.Shared = []int{16 << 10, 16<<10 + 16} },
		"shared unaligned": func(l *Launch) { l.Shared = []int{100} },
		"index twice":      func(l *Launch) { l.Args = append(l.Args, In(0, buf)) },
		"index 31":         func(l *Launch) { l.Args = append(l.Args, In(31, buf)) },
		"neither":          func(l *Launch) { l.Args = append(l.Args, Arg{Index: 2}) },
		"both":             func(l *Launch) { l.Args = append(l.Args, Arg{Index: 2, Buffer: buf, Bytes: []byte{1}}) },
		"writable bytes":   func(l *Launch) { l.Args = append(l.Args, Arg{Index: 2, Bytes: []byte{1}, Access: Write}) },
		"empty bytes":      func(l *Launch) { l.Args = append(l.Args, Arg{Index: 2, Bytes: []byte{}}) },
		"offset past end":  func(l *Launch) { l.Args = append(l.Args, Arg{Index: 2, Buffer: buf, Offset: 68}) },
		"odd offset":       func(l *Launch) { l.Args = append(l.Args, Arg{Index: 2, Buffer: buf, Offset: 2}) },
		"bad constant":     func(l *Launch) { l.Constants = []Constant{{Index: 0, Value: "x"}} },
	} {
		l := ok
		l.Args = append([]Arg(nil), ok.Args...)
		mod(&l)
		assert.Error(t, l.Check(f), name)
	}
}

// flushCounter is a device handle that counts flushes and completes the work
// it was given when flushed, as a batching device would.
type flushCounter struct {
	flushes int
	pending []func()
}

func (f *flushCounter) Flush() {
	f.flushes++
	for _, done := range f.pending {
		done()
	}
	f.pending = nil
}

func TestWrapAndWaitFlushDeviceMemory(t *testing.T) {
	p := NewPool(1 << 20)
	words := make([]uint64, 4)
	freed := 0
	h := &flushCounter{}
	b := p.Wrap(words, 30, h, func() { freed++ })
	assert.Equal(t, 30, b.Size())
	assert.Equal(t, int64(32), p.InUse())
	assert.Equal(t, h, b.Handle())

	h.pending = append(h.pending, b.BeginUse())
	b.Wait() // would block forever if Wait did not submit the batch
	assert.Equal(t, 1, h.flushes)
	b.Wait()
	assert.Equal(t, 1, h.flushes, "nothing in flight: no flush")

	h.pending = append(h.pending, b.BeginUse())
	b.Release()
	assert.Zero(t, freed, "device work still uses it")
	h.Flush()
	assert.Equal(t, 1, freed, "the device gets its memory back once")
	assert.Zero(t, p.InUse())
	c := p.Get(30)
	assert.NotEqual(t, unsafe.Pointer(&words[0]), c.Pointer(), "device memory never enters the host lists")
	c.Release()
	assert.Panics(t, func() { p.Wrap(words, 40, h, nil) }, "size beyond the memory")
}

func TestOpenComputeWithoutDevices(t *testing.T) {
	_, err := OpenCompute(DeviceKind("gpu9000"))
	assert.Error(t, err)
	_, err = OpenCompute(DeviceCPU)
	assert.Error(t, err, "the CPU is not a compute device")
	assert.Equal(t, MatMulTiled, MatMulFor(Facts{Family: 0}))
	assert.Equal(t, MatMulSimdgroup, MatMulFor(Facts{Family: 9}))
}
