// Package kerneltest checks a compute device's kernels against Go references. The
// simulator's tests run it in CI; metal/mtl's tests run it on a Mac's GPU.
package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/metal"
)

// Sizes are the odd lengths every kernel is tried on.
var Sizes = []int{1, 7, 33, 127}

// Upload returns a new device buffer holding xs.
func Upload(t testing.TB, d metal.Compute, xs []float32) *metal.Buffer {
	t.Helper()
	b, err := d.NewBuffer(4 * len(xs))
	require.NoError(t, err)
	if len(xs) > 0 {
		copy(unsafe.Slice((*float32)(b.Pointer()), len(xs)), xs)
	}
	return b
}

// Empty returns a new device buffer of n float32.
func Empty(t testing.TB, d metal.Compute, n int) *metal.Buffer {
	t.Helper()
	b, err := d.NewBuffer(4 * n)
	require.NoError(t, err)
	return b
}

// Download waits for b and returns a copy of its first n float32.
func Download(b *metal.Buffer, n int) []float32 { return download[float32](b, n) }

// download waits for b and returns a copy of its first n elements of 4 bytes.
func download[T float32 | int32](b *metal.Buffer, n int) []T {
	b.Wait()
	out := make([]T, n)
	if n > 0 {
		copy(out, unsafe.Slice((*T)(b.Pointer()), n))
	}
	return out
}

// Random returns n values uniform in [lo, hi).
func Random(r *rand.Rand, n int, lo, hi float64) []float32 {
	xs := make([]float32, n)
	for i := range xs {
		xs[i] = float32(lo + (hi-lo)*r.Float64())
	}
	return xs
}

// Close reports whether got is within the float32 tolerances of want (rtol
// 1e-5 and atol 1e-6 against scale, the magnitude the error grows with).
func Close(got float32, want, scale float64) bool {
	if math.IsNaN(want) {
		return math.IsNaN(float64(got))
	}
	if float64(got) == want { // infinities too
		return true
	}
	return math.Abs(float64(got)-want) <= 1e-6+1e-5*math.Max(math.Abs(want), scale)
}

// AssertClose compares got with want element by element, reporting the first
// few mismatches. scale may be nil.
func AssertClose(t testing.TB, got []float32, want, scale []float64, what string) bool {
	t.Helper()
	require.Len(t, got, len(want), what)
	bad := 0
	for i := range want {
		s := 0.0
		if scale != nil {
			s = scale[i]
		}
		if !Close(got[i], want[i], s) {
			if bad < 5 {
				t.Errorf("%s: [%d] = %v, want %v", what, i, got[i], want[i])
			}
			bad++
		}
	}
	if bad > 5 {
		t.Errorf("%s: %d of %d elements differ", what, bad, len(want))
	}
	return bad == 0
}

// RunKernels runs every kernel check on d.
func RunKernels(t *testing.T, d metal.Compute) {
	t.Run("Binary", func(t *testing.T) { Binary(t, d) })
	t.Run("BinaryBroadcast", func(t *testing.T) { BinaryBroadcast(t, d) })
	t.Run("Unary", func(t *testing.T) { Unary(t, d) })
	t.Run("Softmax", func(t *testing.T) { Softmax(t, d) })
	t.Run("MatMul", func(t *testing.T) { MatMul(t, d) })
	t.Run("EmptySizes", func(t *testing.T) { EmptySizes(t, d) })
	t.Run("BadLaunches", func(t *testing.T) { BadLaunches(t, d) })
	RunDenseKernels(t, d)
	RunCopyKernels(t, d)
	RunReduce2Kernels(t, d)
}

// Binary checks add, sub, mul and div, with b full and b a broadcast row.
func Binary(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(1, 2))
	ops := []struct {
		op metal.BinaryOp
		f  func(x, y float32) float32
	}{
		{metal.BinaryAdd, func(x, y float32) float32 { return x + y }},
		{metal.BinarySub, func(x, y float32) float32 { return x - y }},
		{metal.BinaryMul, func(x, y float32) float32 { return x * y }},
		{metal.BinaryDiv, func(x, y float32) float32 { return x / y }},
	}
	for _, rows := range []int{1, 7, 33} {
		for _, cols := range Sizes {
			for _, bcast := range []bool{false, true} {
				n := rows * cols
				bn := n
				if bcast {
					bn = cols
				}
				x := Random(r, n, -4, 4)
				y := Random(r, bn, 0.5, 3)
				for i := range y {
					if i%2 == 1 {
						y[i] = -y[i]
					}
				}
				a, b := Upload(t, d, x), Upload(t, d, y)
				for _, o := range ops {
					out := Empty(t, d, n)
					require.NoError(t, metal.RunBinary(d, o.op, out, a, b, n, bn))
					want := make([]float64, n)
					for i := range want {
						want[i] = float64(o.f(x[i], y[i%bn]))
					}
					AssertClose(t, Download(out, n), want, nil, fmt.Sprintf("op %d %dx%d bn=%d", o.op, rows, cols, bn))
					out.Release()
				}
				a.Release()
				b.Release()
			}
		}
	}
	require.NoError(t, d.Synchronize())
}

// Unary checks GELU (erf form) and SiLU against float64 references.
func Unary(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(3, 4))
	refs := []struct {
		op metal.UnaryOp
		f  func(x float64) float64
	}{
		{metal.UnaryGELU, func(x float64) float64 { return 0.5 * x * (1 + math.Erf(x/math.Sqrt2)) }},
		{metal.UnarySiLU, func(x float64) float64 { return x / (1 + math.Exp(-x)) }},
	}
	special := []float32{0, -0.0, 1e-8, -1e-8, 0.5, -0.5, 1, -1, 1.4142135, -1.4142135, 5.6, -5.6, 8, -8, 20, -20, 80, -80}
	for _, n := range append(Sizes, 1000) {
		x := append(Random(r, n, -7, 7), special...)
		m := len(x)
		in := Upload(t, d, x)
		for _, ref := range refs {
			out := Empty(t, d, m)
			require.NoError(t, metal.RunUnary(d, ref.op, out, in, m))
			want := make([]float64, m)
			for i := range want {
				want[i] = ref.f(float64(x[i]))
			}
			AssertClose(t, Download(out, m), want, nil, fmt.Sprintf("unary %d n=%d", ref.op, m))
			out.Release()
		}
		in.Release()
	}
	require.NoError(t, d.Synchronize())
}

// Softmax checks the row softmax, including rows longer than a threadgroup.
func Softmax(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, rows := range Sizes {
		for _, cols := range append(Sizes, 1000) {
			n := rows * cols
			x := Random(r, n, -10, 10)
			in, out := Upload(t, d, x), Empty(t, d, n)
			require.NoError(t, metal.RunSoftmax(d, out, in, rows, cols))
			want := make([]float64, n)
			for i := 0; i < rows; i++ {
				row := x[i*cols : (i+1)*cols]
				m := math.Inf(-1)
				for _, v := range row {
					m = math.Max(m, float64(v))
				}
				s := 0.0
				for _, v := range row {
					s += math.Exp(float64(v) - m)
				}
				for j, v := range row {
					want[i*cols+j] = math.Exp(float64(v)-m) / s
				}
			}
			AssertClose(t, Download(out, n), want, nil, fmt.Sprintf("softmax %dx%d", rows, cols))
			in.Release()
			out.Release()
		}
	}
	require.NoError(t, d.Synchronize())
}

// MatMul checks every matmul kernel the device has on odd shapes. The tolerance
// scales with Σ|a·b|, which bounds the float32 rounding of any summation order.
func MatMul(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(7, 8))
	kernels := []metal.MatMulKernel{metal.MatMulTiled}
	if d.Facts().SimdgroupMatrix() {
		kernels = append(kernels, metal.MatMulSimdgroup)
	}
	shapes := [][3]int{{1, 1, 1}, {1, 7, 33}, {7, 1, 127}, {33, 127, 1}, {127, 33, 7}, {7, 7, 7}, {33, 33, 33}, {127, 127, 127}, {1, 127, 127}, {127, 1, 33}}
	for _, s := range shapes {
		m, n, k := s[0], s[1], s[2]
		x, y := Random(r, m*k, -1, 1), Random(r, k*n, -1, 1)
		a, b := Upload(t, d, x), Upload(t, d, y)
		want := make([]float64, m*n)
		scale := make([]float64, m*n)
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				for p := 0; p < k; p++ {
					v := float64(x[i*k+p]) * float64(y[p*n+j])
					want[i*n+j] += v
					scale[i*n+j] += math.Abs(v)
				}
			}
		}
		for _, kern := range kernels {
			c := Empty(t, d, m*n)
			require.NoError(t, metal.RunMatMulWith(d, kern, c, a, b, m, n, k))
			AssertClose(t, Download(c, m*n), want, scale, fmt.Sprintf("%s %dx%dx%d", kern, m, n, k))
			c.Release()
		}
		a.Release()
		b.Release()
	}
	require.NoError(t, d.Synchronize())
}

// EmptySizes checks that zero-sized work launches nothing and fails nothing.
func EmptySizes(t *testing.T, d metal.Compute) {
	a := Empty(t, d, 4)
	defer a.Release()
	assert.NoError(t, metal.RunBinary(d, metal.BinaryAdd, a, a, a, 0, 0))
	assert.NoError(t, metal.RunUnary(d, metal.UnaryGELU, a, a, 0))
	assert.NoError(t, metal.RunSoftmax(d, a, a, 0, 5))
	assert.NoError(t, metal.RunMatMul(d, a, a, a, 0, 2, 2))
	c := Upload(t, d, []float32{1, 2, 3, 4})
	defer c.Release()
	// k = 0: c is the zero matrix
	assert.NoError(t, metal.RunMatMulWith(d, metal.MatMulTiled, c, a, a, 2, 2, 0))
	assert.Equal(t, []float32{0, 0, 0, 0}, Download(c, 4))
	require.NoError(t, d.Synchronize())
}

// BadLaunches checks that launches a device cannot run come back as errors.
func BadLaunches(t *testing.T, d metal.Compute) {
	small := Empty(t, d, 3)
	defer small.Release()
	big := Empty(t, d, 100)
	defer big.Release()
	assert.Error(t, metal.RunBinary(d, metal.BinaryAdd, small, big, big, 100, 100), "out too small")
	assert.Error(t, metal.RunBinary(d, metal.BinaryAdd, big, big, big, 100, 3), "b does not tile a")
	assert.Error(t, metal.RunUnary(d, metal.UnaryOp(99), big, big, 10), "unknown op")
	assert.Error(t, d.Dispatch(&metal.Launch{Kernel: "no_such_kernel", Groups: [3]int{1, 1, 1}, Threads: [3]int{1, 1, 1}}))
	assert.Error(t, d.Dispatch(&metal.Launch{Kernel: "unary_f32", Groups: [3]int{1, 1, 1}, Threads: [3]int{2048, 1, 1}}), "too many threads")
	require.NoError(t, d.Synchronize())
}
