package sim

import (
	"math"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/internal/kerneltest"
	"github.com/mlxtrain/mlxtrain/metal"
)

var (
	selfOnce sync.Once
	self     *Device
	selfErr  error
)

// selftest returns a simulator of the kernels in testdata/selftest.
func selftest(t testing.TB) *Device {
	t.Helper()
	requireClang(t)
	selfOnce.Do(func() { self, selfErr = OpenWith(Options{Sources: os.DirFS("testdata/selftest")}) })
	require.NoError(t, selfErr)
	require.Empty(t, self.Errors())
	return self
}

func launch1D(kernel string, groups, threads int, args ...metal.Arg) *metal.Launch {
	return &metal.Launch{Kernel: kernel, Groups: [3]int{groups, 1, 1}, Threads: [3]int{threads, 1, 1}, Args: args}
}

func isNaN(v float32) bool { return v != v }

func TestMissingBarrierIsWrongEveryTime(t *testing.T) {
	d := selftest(t)
	const n, groups = 64, 2
	x := make([]float32, n*groups)
	for i := range x {
		x[i] = float32(i + 1)
	}
	in := kerneltest.Upload(t, d, x)
	defer in.Release()

	out := kerneltest.Empty(t, d, n*groups)
	require.NoError(t, d.Dispatch(launch1D("rotate_with_barrier", groups, n, metal.Out(0, out), metal.In(1, in))))
	got := kerneltest.Download(out, n*groups)
	for g := 0; g < groups; g++ {
		for i := 0; i < n; i++ {
			assert.Equal(t, x[g*n+(i+1)%n], got[g*n+i], "with the barrier, group %d lane %d", g, i)
		}
	}
	out.Release()

	var first []float32
	for run := 0; run < 5; run++ {
		out := kerneltest.Empty(t, d, n*groups)
		require.NoError(t, d.Dispatch(launch1D("rotate_missing_barrier", groups, n, metal.Out(0, out), metal.In(1, in))))
		got := kerneltest.Download(out, n*groups)
		out.Release()
		for g := 0; g < groups; g++ {
			for i := 0; i < n-1; i++ {
				require.True(t, isNaN(got[g*n+i]), "run %d group %d lane %d read a slot its neighbour had not written: want NaN, got %v", run, g, i, got[g*n+i])
			}
			// the last lane reads lane 0's slot, written before it ran
			assert.Equal(t, x[g*n], got[g*n+n-1])
		}
		if first == nil {
			first = got
		}
		for i := range got {
			require.Equal(t, math.Float32bits(first[i]), math.Float32bits(got[i]), "run %d differs at %d: the simulator must be deterministic", run, i)
		}
	}

	// A write-after-read race: the first lane overwrites the slot the last lane
	// still has to read, so out[n-2] gets x[1] instead of x[0], every time.
	for run := 0; run < 3; run++ {
		out := kerneltest.Empty(t, d, n)
		require.NoError(t, d.Dispatch(launch1D("rotate_twice_missing_barrier", 1, n, metal.Out(0, out), metal.In(1, in))))
		got := kerneltest.Download(out, n)
		out.Release()
		for i := 0; i < n; i++ {
			want := x[(i+2)%n]
			if i == n-2 {
				want = x[1]
			}
			require.Equal(t, want, got[i], "run %d element %d", run, i)
		}
	}
	require.NoError(t, d.Synchronize())
}

func TestUnwrittenOutputIsNaN(t *testing.T) {
	d := selftest(t)
	const n = 100
	prev := make([]float32, n)
	for i := range prev {
		prev[i] = 5
	}
	out := kerneltest.Upload(t, d, prev) // plausible stale data must not survive
	defer out.Release()
	require.NoError(t, d.Dispatch(launch1D("write_even", 1, n, metal.Out(0, out))))
	got := kerneltest.Download(out, n)
	for i, v := range got {
		if i%2 == 0 {
			assert.Equal(t, float32(1), v, "element %d", i)
		} else {
			assert.True(t, isNaN(v), "element %d was not written: want NaN, got %v", i, v)
		}
	}
	// InOut keeps what the kernel does not write.
	inout := kerneltest.Upload(t, d, prev)
	defer inout.Release()
	require.NoError(t, d.Dispatch(launch1D("add_one", 1, n, metal.InOut(0, inout))))
	for i, v := range kerneltest.Download(inout, n) {
		assert.Equal(t, float32(6), v, "element %d", i)
	}
	require.NoError(t, d.Synchronize())
}

// simdRef computes what simd_ops writes for one SIMD group of width w.
func simdRef(x []float32, w int, mask, delta int) [][14]float64 {
	nan := math.NaN()
	out := make([][14]float64, w)
	var sum, evenSum float32
	mx, mn := x[0], x[0]
	for i, v := range x {
		sum += v
		mx = max(mx, v)
		mn = min(mn, v)
		if i%2 == 0 {
			evenSum += v
		}
	}
	from := func(src int) float64 {
		if src < 0 || src >= w {
			return nan
		}
		return float64(x[src])
	}
	var prefix float32
	for i := 0; i < w; i++ {
		o := &out[i]
		o[0], o[1], o[2] = float64(sum), float64(mx), float64(mn)
		o[3] = from((i + 5) % 32)
		o[4] = from(i ^ mask)
		if i-delta >= 0 {
			o[5] = from(i - delta)
		} else {
			o[5] = from(i)
		}
		if i+delta < w {
			o[6] = from(i + delta)
		} else {
			o[6] = from(i)
		}
		o[8] = float64(prefix)
		prefix += x[i]
		o[7] = float64(prefix)
		o[9] = from(2)
		o[10] = -1
		if i%2 == 0 {
			o[10] = float64(evenSum)
		}
		o[11] = float64(w * (w - 1) / 2)
		o[12] = float64(w)
		if i == 0 {
			o[13] = 1
		}
	}
	return out
}

func TestSIMDGroupFunctions(t *testing.T) {
	d := selftest(t)
	const n = 40 // a full SIMD group and one of 8 lanes
	x := make([]float32, n)
	for i := range x {
		x[i] = float32((i*37)%23) - 11.5
	}
	in := kerneltest.Upload(t, d, x)
	defer in.Release()
	out := kerneltest.Empty(t, d, n*14)
	defer out.Release()
	params := metal.Params(2, struct{ Mask, Delta uint32 }{5, 3})
	require.NoError(t, d.Dispatch(launch1D("simd_ops", 1, n, metal.Out(0, out), metal.In(1, in), params)))
	got := kerneltest.Download(out, n*14)
	names := []string{"simd_sum", "simd_max", "simd_min", "simd_shuffle", "simd_shuffle_xor", "simd_shuffle_up",
		"simd_shuffle_down", "simd_prefix_inclusive_sum", "simd_prefix_exclusive_sum", "simd_broadcast",
		"simd_sum over even lanes", "simd_sum(int)", "simd_sum(float2).y", "simd_is_first"}
	for base, w := range map[int]int{0: 32, 32: 8} {
		want := simdRef(x[base:base+w], w, 5, 3)
		for i := 0; i < w; i++ {
			for k := 0; k < 14; k++ {
				g := got[(base+i)*14+k]
				if math.IsNaN(want[i][k]) {
					assert.True(t, isNaN(g), "%s, SIMD group of %d, lane %d: reading a lane past the group's end gives NaN, got %v", names[k], w, i, g)
					continue
				}
				assert.InDelta(t, want[i][k], float64(g), 1e-4, "%s, SIMD group of %d, lane %d", names[k], w, i)
			}
		}
	}
	require.NoError(t, d.Synchronize())
}

func TestSimdgroupMatrixMultiply(t *testing.T) {
	d := selftest(t)
	a := make([]float32, 8*12)
	b := make([]float32, 64)
	c := make([]float32, 64)
	for i := range a {
		a[i] = float32(i%13) - 6
	}
	for i := range b {
		b[i] = float32(i%7)*0.5 - 1
		c[i] = float32(i) * 0.25
	}
	ba, bb, bc := kerneltest.Upload(t, d, a), kerneltest.Upload(t, d, b), kerneltest.Upload(t, d, c)
	defer ba.Release()
	defer bb.Release()
	defer bc.Release()
	out := kerneltest.Empty(t, d, 64)
	defer out.Release()
	require.NoError(t, d.Dispatch(launch1D("sg_matmul8", 1, 32, metal.Out(0, out), metal.In(1, ba), metal.In(2, bb), metal.In(3, bc))))
	got := kerneltest.Download(out, 64)
	for i := 0; i < 8; i++ {
		for j := 0; j < 8; j++ {
			want := float64(c[i*8+j])
			for k := 0; k < 8; k++ {
				want += float64(a[i*12+k]) * float64(b[k*8+j])
			}
			assert.InDelta(t, want, float64(got[i*8+j]), 1e-4, "d[%d][%d]", i, j)
		}
	}
	require.NoError(t, d.Synchronize())

	require.NoError(t, d.Dispatch(launch1D("sg_uninitialised", 1, 32, metal.Out(0, out))))
	for i, v := range kerneltest.Download(out, 64) {
		require.True(t, isNaN(v), "element %d of a never-loaded matrix: want NaN, got %v", i, v)
	}
	require.NoError(t, d.Synchronize())
}

// TestLaunchErrors checks the errors of the work itself: they come back from
// Synchronize, name the kernel, and leave the device usable.
func TestLaunchErrors(t *testing.T) {
	d := selftest(t)
	out := kerneltest.Empty(t, d, 64*1024)
	defer out.Release()
	in := kerneltest.Empty(t, d, 8*12)
	defer in.Release()
	for _, c := range []struct {
		kernel  string
		threads int
		want    string
	}{
		{"return_before_barrier", 64, "lane 10 returned before reaching it"},
		{"split_barriers", 4, "different threadgroup_barrier calls"},
		{"too_much_threadgroup_memory", 32, "over the 32768-byte limit"},
		{"sg_diverge", 32, "need all 32 lanes"},
		{"sg_matmul8", 16, "full SIMD groups of 32 lanes"},
	} {
		t.Run(c.kernel, func(t *testing.T) {
			args := []metal.Arg{metal.Out(0, out)}
			if c.kernel == "sg_matmul8" {
				args = append(args, metal.In(1, in), metal.In(2, in), metal.In(3, in))
			}
			require.NoError(t, d.Dispatch(launch1D(c.kernel, 1, c.threads, args...)))
			err := d.Synchronize()
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.kernel)
			assert.Contains(t, err.Error(), c.want)
			assert.NoError(t, d.Synchronize(), "an error is reported once")
		})
	}
	// still usable
	require.NoError(t, d.Dispatch(launch1D("write_even", 1, 2, metal.Out(0, out))))
	require.NoError(t, d.Synchronize())
}

func TestDynamicThreadgroupMemoryIsPoisoned(t *testing.T) {
	d := selftest(t)
	const n = 16
	out := kerneltest.Empty(t, d, 2*n)
	defer out.Release()
	l := launch1D("dynamic_scratch", 1, n, metal.Out(0, out))
	require.Error(t, d.Dispatch(l), "the kernel's [[threadgroup(0)]] needs Launch.Shared")
	l.Shared = []int{n * 4}
	require.NoError(t, d.Dispatch(l))
	got := kerneltest.Download(out, 2*n)
	for i := 0; i < n; i++ {
		assert.True(t, isNaN(got[2*i]), "threadgroup memory read before any write: want NaN, got %v", got[2*i])
		assert.Equal(t, float32(i), got[2*i+1])
	}
	require.NoError(t, d.Synchronize())
}

func TestFunctionConstants(t *testing.T) {
	d := selftest(t)
	x := []float32{1, -2, 3}
	in := kerneltest.Upload(t, d, x)
	defer in.Release()
	out := kerneltest.Empty(t, d, 3)
	defer out.Release()
	l := launch1D("scale_constants", 1, 3, metal.Out(0, out), metal.In(1, in))
	err := d.Dispatch(l)
	require.Error(t, err, "both constants are used and unset")
	assert.Contains(t, err.Error(), "NEGATE")
	l.Constants = []metal.Constant{{Index: 2, Value: true}, {Index: 3, Value: int32(2)}}
	err = d.Dispatch(l)
	require.Error(t, err, "SCALE is a float")
	assert.Contains(t, err.Error(), "SCALE")
	l.Constants = []metal.Constant{{Index: 2, Value: true}, {Index: 3, Value: float32(2)}, {Index: 9, Value: true}}
	require.Error(t, d.Dispatch(l), "no constant 9")
	for _, neg := range []bool{false, true} {
		l.Constants = []metal.Constant{{Index: 2, Value: neg}, {Index: 3, Value: float32(2.5)}}
		require.NoError(t, d.Dispatch(l))
		sign := float32(1)
		if neg {
			sign = -1
		}
		assert.Equal(t, []float32{2.5 * sign, -5 * sign, 7.5 * sign}, kerneltest.Download(out, 3), "NEGATE=%v", neg)
	}
	require.NoError(t, d.Synchronize())
}

func TestArgumentsAreCheckedAgainstTheSignature(t *testing.T) {
	d := selftest(t)
	buf := kerneltest.Empty(t, d, 64)
	defer buf.Release()
	host := metal.NewPool(1 << 20).Get(256)
	defer host.Release()
	other, err := OpenWith(Options{Sources: os.DirFS("testdata/selftest")})
	require.NoError(t, err)
	defer other.Close()
	foreign := kerneltest.Empty(t, other, 64)
	defer foreign.Release()
	for name, l := range map[string]*metal.Launch{
		"output bound read-only":   launch1D("rotate_with_barrier", 1, 4, metal.In(0, buf), metal.In(1, buf)),
		"input bound for writing":  launch1D("rotate_with_barrier", 1, 4, metal.Out(0, buf), metal.Out(1, buf)),
		"input not bound":          launch1D("rotate_with_barrier", 1, 4, metal.Out(0, buf)),
		"extra argument":           launch1D("write_even", 1, 4, metal.Out(0, buf), metal.In(1, buf)),
		"host memory":              launch1D("write_even", 1, 4, metal.Out(0, host)),
		"another device's buffer":  launch1D("write_even", 1, 4, metal.Out(0, foreign)),
		"params too short":         launch1D("simd_ops", 1, 4, metal.Out(0, buf), metal.In(1, buf), metal.Params(2, struct{ A uint32 }{1})),
		"bytes for a device array": launch1D("write_even", 1, 4, metal.Params(0, struct{ A uint32 }{1})),
		"unknown kernel":           launch1D("nope", 1, 4),
		"1025 threads":             launch1D("write_even", 1, 1025, metal.Out(0, buf)),
		"output aliases input":     launch1D("rotate_with_barrier", 1, 4, metal.Out(0, buf), metal.In(1, buf)),
	} {
		assert.Error(t, d.Dispatch(l), name)
	}
	require.NoError(t, d.Synchronize())
}

// TestAsynchronousLikeMetal checks that launches run only once submitted, that a
// CPU read without a wait sees poison, and that the CPU writing a buffer a
// pending launch uses is reported.
func TestAsynchronousLikeMetal(t *testing.T) {
	d := selftest(t)
	const n = 32
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(i)
	}
	in := kerneltest.Upload(t, d, x)
	defer in.Release()
	out := kerneltest.Empty(t, d, n)
	defer out.Release()
	require.NoError(t, d.Dispatch(launch1D("rotate_with_barrier", 1, n, metal.Out(0, out), metal.In(1, in))))
	assert.True(t, out.Busy())
	raw := unsafe.Slice((*float32)(out.Pointer()), n)
	assert.True(t, isNaN(raw[0]), "read without a wait: the launch has not run, the buffer is still fresh device memory")
	got := kerneltest.Download(out, n) // waits, which submits
	assert.Equal(t, x[1], got[0])
	assert.False(t, out.Busy())

	// The CPU writes an input while the launch that reads it is pending.
	require.NoError(t, d.Dispatch(launch1D("rotate_with_barrier", 1, n, metal.Out(0, out), metal.In(1, in))))
	unsafe.Slice((*float32)(in.Pointer()), n)[3] = 99
	err := d.Synchronize()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "in flight")

	// A buffer released while in flight is not handed out again until done.
	tmp := kerneltest.Empty(t, d, n)
	ptr := tmp.Pointer()
	require.NoError(t, d.Dispatch(launch1D("write_even", 1, n, metal.Out(0, tmp))))
	tmp.Release()
	again := kerneltest.Empty(t, d, n)
	assert.NotEqual(t, ptr, again.Pointer(), "memory in flight was handed out again")
	again.Release()
	require.NoError(t, d.Synchronize())
	third := kerneltest.Empty(t, d, n)
	assert.Equal(t, ptr, third.Pointer(), "once done, the memory is reused")
	third.Release()

	// More launches than a batch holds: they go out on their own, in order.
	acc := kerneltest.Upload(t, d, make([]float32, n))
	defer acc.Release()
	for i := 0; i < 3*batchMax+5; i++ {
		require.NoError(t, d.Dispatch(launch1D("add_one", 1, n, metal.InOut(0, acc))))
	}
	for i, v := range kerneltest.Download(acc, n) {
		require.Equal(t, float32(3*batchMax+5), v, "element %d", i)
	}
	require.NoError(t, d.Synchronize())
}

func TestSharedDeviceRegistersAndSelects(t *testing.T) {
	requireClang(t)
	d, err := metal.OpenCompute(metal.DeviceSim)
	require.NoError(t, err)
	assert.Equal(t, metal.DeviceSim, d.Kind())
	f := d.Facts()
	assert.True(t, f.Simulated)
	assert.Equal(t, 32, f.SIMDWidth)
	assert.Equal(t, "3.1", f.LanguageVersion)
	assert.Equal(t, metal.MatMulSimdgroup, metal.MatMulFor(f))
	require.NoError(t, d.(*Device).Close())
}

// TestPortableFibersAgree runs kernels with the ucontext fibers other machines
// use and with x86-64's own switch: the results must be identical bits.
func TestPortableFibersAgree(t *testing.T) {
	fast := selftest(t)
	portable, err := OpenWith(Options{Sources: os.DirFS("testdata/selftest"), portableFibers: true})
	require.NoError(t, err)
	defer portable.Close()
	const n = 40
	x := make([]float32, n*3)
	for i := range x {
		x[i] = float32((i*29)%31) - 15
	}
	run := func(d *Device) []float32 {
		in := kerneltest.Upload(t, d, x)
		defer in.Release()
		simd := kerneltest.Empty(t, d, n*14)
		defer simd.Release()
		rot := kerneltest.Empty(t, d, n)
		defer rot.Release()
		mm := kerneltest.Empty(t, d, 64)
		defer mm.Release()
		require.NoError(t, d.Dispatch(launch1D("simd_ops", 1, n, metal.Out(0, simd), metal.In(1, in), metal.Params(2, struct{ Mask, Delta uint32 }{3, 1}))))
		require.NoError(t, d.Dispatch(launch1D("rotate_missing_barrier", 1, n, metal.Out(0, rot), metal.In(1, in))))
		require.NoError(t, d.Dispatch(launch1D("sg_matmul8", 1, 32, metal.Out(0, mm), metal.In(1, in), metal.In(2, in), metal.In(3, in))))
		out := append(kerneltest.Download(simd, n*14), kerneltest.Download(rot, n)...)
		out = append(out, kerneltest.Download(mm, 64)...)
		require.NoError(t, d.Synchronize())
		return out
	}
	a, b := run(fast), run(portable)
	require.Len(t, b, len(a))
	for i := range a {
		require.Equal(t, math.Float32bits(a[i]), math.Float32bits(b[i]), "element %d", i)
	}
}

// TestDeviceEnvSelectsTheSimulator runs this test binary again with
// MLXTRAIN_DEVICE=sim and checks that metal.Accelerator opens the simulator.
func TestDeviceEnvSelectsTheSimulator(t *testing.T) {
	requireClang(t)
	if os.Getenv("MLXTRAIN_DEVICE") == "sim" {
		d, err := metal.Accelerator()
		require.NoError(t, err)
		require.NotNil(t, d)
		assert.Equal(t, metal.DeviceSim, d.Kind())
		x := kerneltest.Upload(t, d, []float32{1, 2, 3})
		out := kerneltest.Empty(t, d, 3)
		require.NoError(t, metal.RunBinary(d, metal.BinaryAdd, out, x, x, 3, 3))
		assert.Equal(t, []float32{2, 4, 6}, kerneltest.Download(out, 3))
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestDeviceEnvSelectsTheSimulator$", "-test.count=1")
	cmd.Env = append(os.Environ(), "MLXTRAIN_DEVICE=sim")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "PASS")
}

func BenchmarkLaunch(b *testing.B) {
	d := selftest(b)
	out := kerneltest.Empty(b, d, 32)
	defer out.Release()
	l := launch1D("write_even", 1, 32, metal.Out(0, out))
	b.ResetTimer()
	for range b.N {
		if err := d.Dispatch(l); err != nil {
			b.Fatal(err)
		}
	}
	if err := d.Synchronize(); err != nil {
		b.Fatal(err)
	}
}

func benchmarkMatMul(b *testing.B, kern metal.MatMulKernel, n int) {
	if _, err := FindCompiler(); err != nil {
		b.Skip(err)
	}
	d, err := Open()
	if err != nil {
		b.Fatal(err)
	}
	x := make([]float32, n*n)
	for i := range x {
		x[i] = float32(i%7) - 3
	}
	a := kerneltest.Upload(b, d, x)
	c := kerneltest.Empty(b, d, n*n)
	b.SetBytes(int64(2 * n * n * n)) // flops, shown as MB/s = Mflop/s
	b.ResetTimer()
	for range b.N {
		if err := metal.RunMatMulWith(d, kern, c, a, a, n, n, n); err != nil {
			b.Fatal(err)
		}
		c.Wait()
	}
}

func BenchmarkMatMulTiled127(b *testing.B)     { benchmarkMatMul(b, metal.MatMulTiled, 127) }
func BenchmarkMatMulSimdgroup127(b *testing.B) { benchmarkMatMul(b, metal.MatMulSimdgroup, 127) }

// TestWritingPastTheEndFaults runs a kernel that writes one element past its
// buffer in a child process: device memory ends at an inaccessible page, so the
// write faults there instead of corrupting other memory.
func TestWritingPastTheEndFaults(t *testing.T) {
	if runtime.GOOS != "linux" && runtime.GOOS != "darwin" {
		t.Skip("device memory has guard pages on unix only")
	}
	d := selftest(t)
	if os.Getenv("MLXTRAIN_SIM_FAULT_CHILD") == "1" {
		const n = 1024 // 4 KiB: the buffer ends exactly at the guard page
		out := kerneltest.Empty(t, d, n)
		require.NoError(t, d.Dispatch(launch1D("write_unchecked", 4, n/4, metal.Out(0, out))))
		require.NoError(t, d.Synchronize())
		require.NoError(t, d.Dispatch(launch1D("write_unchecked", 5, n/4, metal.Out(0, out))))
		_ = d.Synchronize()
		t.Fatal("the write past the end did not fault")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestWritingPastTheEndFaults$", "-test.count=1")
	cmd.Env = append(os.Environ(), "MLXTRAIN_SIM_FAULT_CHILD=1")
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "%s", out)
	assert.Contains(t, string(out), "SIGSEGV")
	assert.Contains(t, string(out), "mlxsim: kernel write_unchecked faulted", "the simulator names the kernel")
	assert.Contains(t, string(out), "threadgroup (4,0,0), lane 0")
	assert.NotContains(t, string(out), "did not fault")
}

func TestHalfAndBfloatStorage(t *testing.T) {
	d := selftest(t)
	one := float32(1)
	// inputs with their float16 and bfloat16 roundings (to nearest, ties to even)
	cases := []struct{ x, half, bf float32 }{
		{1.5, 1.5, 1.5},
		{-0.25, -0.25, -0.25},
		{65504, 65504, 65536},
		{one + 1.0/2048, 1, 1},                       // half tie: to even
		{one + 3.0/2048, one + 1.0/512, 1},           // half tie: up to even
		{one + 1.0/256, one + 1.0/256, 1},            // bfloat tie: to even
		{one + 3.0/256, one + 3.0/256, one + 1.0/64}, // bfloat tie: up to even
		{1e-8, 0, 1e-8 * 1.0000000},                  // half underflows
	}
	n := len(cases)
	x := make([]float32, n)
	for i, c := range cases {
		x[i] = c.x
	}
	in := kerneltest.Upload(t, d, x)
	defer in.Release()
	// 16-bit storage read by the kernel: 1.5 as half is 0x3e00, 2.0 as bfloat 0x4000
	h, err := d.NewBuffer(2 * n)
	require.NoError(t, err)
	defer h.Release()
	b, err := d.NewBuffer(2 * n)
	require.NoError(t, err)
	defer b.Release()
	hs, bs := unsafe.Slice((*uint16)(h.Pointer()), n), unsafe.Slice((*uint16)(b.Pointer()), n)
	for i := range hs {
		hs[i], bs[i] = 0x3e00, 0x4000
	}
	out := kerneltest.Empty(t, d, 3*n)
	defer out.Release()
	require.NoError(t, d.Dispatch(launch1D("convert16", 1, n, metal.Out(0, out), metal.In(1, in), metal.In(2, h), metal.In(3, b))))
	got := kerneltest.Download(out, 3*n)
	for i, c := range cases {
		assert.Equal(t, c.half, got[3*i], "half(%v)", c.x)
		if c.x == 1e-8 {
			assert.InDelta(t, float64(c.bf), float64(got[3*i+1]), 1e-10, "bfloat(%v)", c.x)
		} else {
			assert.Equal(t, c.bf, got[3*i+1], "bfloat(%v)", c.x)
		}
		assert.Equal(t, float32(3.5), got[3*i+2], "half 0x3e00 + bfloat 0x4000")
	}
	require.NoError(t, d.Synchronize())
}

func TestAtomics(t *testing.T) {
	d := selftest(t)
	counter, err := d.NewBuffer(12)
	require.NoError(t, err)
	defer counter.Release()
	copy(unsafe.Slice((*uint32)(counter.Pointer()), 3), []uint32{0, 0, 0})
	const groups, threads = 7, 96
	require.NoError(t, d.Dispatch(launch1D("count_atomically", groups, threads, metal.InOut(0, counter))))
	counter.Wait()
	n := uint32(groups * threads)
	assert.Equal(t, []uint32{n, n * (n - 1) / 2, n - 1}, append([]uint32(nil), unsafe.Slice((*uint32)(counter.Pointer()), 3)...))
	require.NoError(t, d.Synchronize())
}
