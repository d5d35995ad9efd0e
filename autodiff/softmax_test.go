package autodiff

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// smRef computes softmax or log-softmax of x (shape) along axis with nested loops
// in float64, straight from the definition (with the max shift for range).
func smRef(x []float64, shape []int, axis int, log bool) []float64 {
	a, n, b := 1, shape[axis], 1
	for _, d := range shape[:axis] {
		a *= d
	}
	for _, d := range shape[axis+1:] {
		b *= d
	}
	out := make([]float64, len(x))
	for i := range a {
		for j := range b {
			at := func(r int) int { return (i*n+r)*b + j }
			m := math.Inf(-1)
			for r := range n {
				m = math.Max(m, x[at(r)])
			}
			s := 0.0
			for r := range n {
				s += math.Exp(x[at(r)] - m)
			}
			for r := range n {
				if log {
					out[at(r)] = x[at(r)] - m - math.Log(s)
				} else {
					out[at(r)] = math.Exp(x[at(r)]-m) / s
				}
			}
		}
	}
	return out
}

func TestSmExp32(t *testing.T) {
	worst := 0.0
	for i := -8800000; i <= 8872000; i += 3 { // up to ln(MaxFloat32) = 88.7228
		x := float32(i) * 1e-5
		want := math.Exp(float64(x))
		got := float64(smExp32(x))
		if want < 1.2e-38 { // subnormal results: absolute error only
			assert.InDelta(t, want, got, 1.5e-45, "x=%g", x)
			continue
		}
		worst = math.Max(worst, math.Abs(got-want)/want)
	}
	assert.Less(t, worst, 1.2e-7, "worst relative error (one float32 ulp is 1.19e-7 at most)")
	assert.Equal(t, float32(0), smExp32(float32(math.Inf(-1))))
	assert.True(t, math.IsInf(float64(smExp32(float32(math.Inf(1)))), 1))
	assert.True(t, math.IsInf(float64(smExp32(89)), 1))
	assert.True(t, math.IsNaN(float64(smExp32(float32(math.NaN())))))
	assert.Equal(t, float32(1), smExp32(0))
	assert.Equal(t, float32(0), smExp32(-200))
}

func TestSoftmaxMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	shapes := [][]int{{1}, {7}, {33}, {127}, {7, 33}, {33, 7}, {3, 127, 2}, {2, 1, 5}, {2, 0, 3}, {0, 4}, {300, 300}, {2, 60, 300}}
	for _, shape := range shapes {
		for axis := range shape {
			for _, log := range []bool{false, true} {
				x := randTensor(rng, -4, 4, shape...)
				xs := x.Float64s()
				if len(xs) > 0 {
					xs[0] += 500 // a large logit must not overflow (max subtraction)
				}
				x32 := Cast(x, Float32)
				want := smRef(xs, shape, axis, log)
				want32 := smRef(x32.Float64Values(), shape, axis, log)
				op := Softmax
				if log {
					op = LogSoftmax
				}
				label := fmt.Sprintf("%v axis %d log %v", shape, axis, log)
				// negative axis spelling
				got := op(x, axis-len(shape))
				got32 := op(x32, axis)
				require.Equal(t, shape, got.Shape(), label)
				for i, w := range want {
					redNear(t, w, got.Float64s()[i], 1e-14*(1+math.Abs(w)), label)
				}
				// float32: x − max is rounded to float32 (relative error 2⁻²⁴), which
				// moves p by up to |ln p|·2⁻²⁴ relative; exp adds one ulp, the scaling
				// one rounding. The log form is a difference of float32 values of size
				// |x|, each rounded once.
				for i, w := range want32 {
					tol := 1.2e-7 * (3 + math.Abs(math.Log(w))) * w
					if log {
						tol = 2.4e-7 * (math.Abs(w) + math.Abs(x32.At(i)) + 1)
					}
					redNear(t, w, float64(got32.Float32s()[i]), tol+1e-30, label)
				}
			}
		}
	}
}

func TestSoftmaxSpecialValues(t *testing.T) {
	inf := math.Inf(1)
	x := FromFloat64([]float64{math.Inf(-1), 0, math.Inf(-1), 0}, 4)
	assert.Equal(t, []float64{0, 0.5, 0, 0.5}, Softmax(x, 0).Float64s())
	ls := LogSoftmax(x, 0).Float64s()
	assert.True(t, math.IsInf(ls[0], -1))
	assert.InDelta(t, -math.Ln2, ls[1], 1e-15)
	// A row of −Inf only (a fully masked row) has no softmax: NaN, as in PyTorch.
	y := FromFloat32([]float32{float32(-inf), float32(-inf)}, 1, 2)
	assert.True(t, math.IsNaN(Softmax(y, 1).At(0)))

	lse := make([]float64, 3)
	LogSumExpRows(lse, []float32{0, 0, float32(-inf), float32(-inf), 1000, 1000}, 3, 2)
	assert.InDelta(t, math.Ln2, lse[0], 1e-7)
	assert.True(t, math.IsInf(lse[1], -1))
	assert.InDelta(t, 1000+math.Ln2, lse[2], 1e-4)
}

func TestSoftmaxGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	shapes := [][]int{{1}, {7}, {33}, {127}, {7, 33}, {3, 5, 4}, {2, 1, 3}}
	for _, shape := range shapes {
		for axis := range shape {
			x := randTensor(rng, -2, 2, shape...)
			for name, op := range map[string]func(*Tensor, int) *Tensor{"softmax": Softmax, "log_softmax": LogSoftmax} {
				err := GradCheck{Seed: 2}.Check(func(in []*Tensor) *Tensor { return op(in[0], axis) }, x)
				assert.NoError(t, err, "%s %v axis %d", name, shape, axis)
			}
		}
	}
}

func TestSoftmaxBackwardFloat32(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	for _, c := range []struct {
		shape []int
		axis  int
	}{{[]int{300, 300}, 1}, {[]int{300, 300}, 0}, {[]int{3, 200, 300}, 1}} {
		for _, log := range []bool{false, true} {
			x := randTensor(rng, -3, 3, c.shape...)
			gs := randTensor(rng, -1, 1, c.shape...)
			grads := make([][]float64, 2)
			for i, dt := range []DType{Float64, Float32} {
				tp := NewTape()
				xin := Cast(x, dt)
				y := softmaxOp("sm", tp.Watch(xin), c.axis, log)
				tp.BackwardWith(y, Cast(gs, dt))
				grads[i] = tp.Grad(xin).Float64Values()
				tp.Release()
			}
			for j := range grads[0] {
				redNear(t, grads[0][j], grads[1][j], 2e-6*(1+math.Abs(grads[0][j])), "%v axis %d log %v", c.shape, c.axis, log)
			}
		}
	}
}

func ExampleSoftmax() {
	x := FromFloat64([]float64{0, math.Log(3), 1, 1}, 2, 2)
	fmt.Printf("%.4f\n", Softmax(x, -1).Float64s())
	// Output: [0.2500 0.7500 0.5000 0.5000]
}

func ExampleLogSoftmax() {
	x := FromFloat64([]float64{0, 0, 0, 0}, 4)
	fmt.Printf("%.4f\n", LogSoftmax(x, 0).Float64s())
	// Output: [-1.3863 -1.3863 -1.3863 -1.3863]
}

func ExampleSoftmaxRows() {
	out := make([]float64, 4)
	SoftmaxRows(out, []float64{0, 0, 5, 5}, 2, 2)
	fmt.Println(out)
	// Output: [0.5 0.5 0.5 0.5]
}
