package autodiff

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// redGroups is the independent reference for every reduction: it walks x in
// row-major order with an odometer and files each element (value and flat index)
// under the output element it reduces into. Each group therefore lists its
// elements in row-major order over the reduced axes.
func redGroups(x []float64, shape []int, mask []bool) (vals [][]float64, idx [][]int, outShape []int) {
	nOut := 1
	for i, d := range shape {
		if !mask[i] {
			nOut *= d
			outShape = append(outShape, d)
		}
	}
	vals = make([][]float64, nOut)
	idx = make([][]int, nOut)
	pos := make([]int, len(shape))
	for f := range x {
		o := 0
		for i, d := range shape {
			if !mask[i] {
				o = o*d + pos[i]
			}
		}
		vals[o] = append(vals[o], x[f])
		idx[o] = append(idx[o], f)
		for i := len(shape) - 1; i >= 0; i-- {
			pos[i]++
			if pos[i] < shape[i] {
				break
			}
			pos[i] = 0
		}
	}
	return vals, idx, outShape
}

// redNear asserts |want − got| ≤ tol (NaN never passes), calling testify only on
// failure: per-element assertions on large tensors are otherwise slow.
func redNear(t *testing.T, want, got, tol float64, msgAndArgs ...any) bool {
	t.Helper()
	if math.Abs(want-got) <= tol {
		return true
	}
	return assert.InDelta(t, want, got, tol, msgAndArgs...)
}

// redRefOp reduces one group in float64 the plain way.
func redRefOp(kind redKind, v []float64, ddof int) (float64, int) {
	switch kind {
	case redSum, redMean:
		s := 0.0
		for _, x := range v {
			s += x
		}
		if kind == redMean {
			return s / float64(len(v)), -1
		}
		return s, -1
	case redMax, redMin:
		best, at := v[0], 0
		for i, x := range v {
			if (kind == redMax && x > best) || (kind == redMin && x < best) {
				best, at = x, i
			}
		}
		return best, at
	default:
		m, _ := redRefOp(redMean, v, 0)
		s := 0.0
		for _, x := range v {
			s += (x - m) * (x - m)
		}
		if len(v)-ddof <= 0 {
			return math.NaN(), -1
		}
		return s / float64(len(v)-ddof), -1
	}
}

// redSubsets lists every subset of the axes of a rank-r shape, plus nil (all).
func redSubsets(rank int) [][]int {
	out := [][]int{nil}
	for m := range 1 << rank {
		s := []int{}
		for i := range rank {
			if m&(1<<i) != 0 {
				s = append(s, i)
			}
		}
		out = append(out, s)
	}
	return out
}

func redMaskOf(axes []int, rank int) []bool {
	m := make([]bool, rank)
	for i := range m {
		m[i] = axes == nil
	}
	for _, a := range axes {
		m[(a+rank)%rank] = true
	}
	return m
}

// redDistinct returns values spaced at least 0.008 apart (a shuffled ramp plus
// small noise): no ties, and finite differences cannot change the winner.
func redDistinct(rng *rand.Rand, shape ...int) *Tensor {
	t := Empty(Float64, shape...)
	xs := t.Float64s()
	perm := rng.Perm(len(xs))
	for i := range xs {
		xs[i] = float64(perm[i])*0.01 - float64(len(xs))*0.005 + 0.001*rng.Float64()
	}
	return t
}

var redShapes = [][]int{
	{}, {1}, {7}, {33}, {127}, {7, 33}, {33, 7}, {1, 127}, {127, 1}, {3, 1, 7}, {2, 3, 4, 5}, {4, 1, 7, 3},
	{0}, {3, 0, 5}, {5, 0},
	{600, 127}, {127, 600}, {3, 300, 130}, // big enough to run on several workers and tiles
}

func TestReductionsMatchReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	type opFn func(x *Tensor, axes []int, keep bool) *Tensor
	ops := map[redKind]opFn{
		redSum: Sum, redMean: Mean, redMax: Max, redMin: Min,
		redVar: func(x *Tensor, axes []int, keep bool) *Tensor { return Var(x, axes, keep, 1) },
	}
	for _, shape := range redShapes {
		x := randTensor(rng, -2, 2, shape...)
		x32 := Cast(x, Float32)
		x32v := x32.Float64Values() // the reference sees the float32 inputs exactly
		for _, axes := range redSubsets(len(shape)) {
			if len(shape) > 3 && numel(shape) > 1000 {
				continue
			}
			mask := redMaskOf(axes, len(shape))
			groups, _, outShape := redGroups(x.Float64s(), shape, mask)
			groups32, _, _ := redGroups(x32v, shape, mask)
			emptyRed := len(groups) > 0 && len(groups[0]) == 0
			for kind := redSum; kind <= redVar; kind++ {
				for _, keep := range []bool{false, true} {
					label := fmt.Sprintf("%s %v axes %v keep %v", redNames[kind], shape, axes, keep)
					if (kind == redMax || kind == redMin) && emptyRed {
						assert.Panics(t, func() { ops[kind](x, axes, keep) }, label)
						continue
					}
					wantShape := outShape
					if keep {
						wantShape = make([]int, len(shape))
						for i, d := range shape {
							wantShape[i] = d
							if mask[i] {
								wantShape[i] = 1
							}
						}
					}
					got := ops[kind](x, axes, keep)
					got32 := ops[kind](x32, axes, keep)
					require.Equal(t, len(wantShape), got.Rank(), label)
					if len(wantShape) > 0 {
						assert.Equal(t, wantShape, got.Shape(), label)
					}
					for o, g := range groups {
						if len(g) == 0 {
							// Sum over nothing is 0; the mean and variance are NaN.
							if kind == redSum {
								assert.Equal(t, 0.0, got.At(o), label)
								assert.Equal(t, 0.0, got32.At(o), label)
							} else {
								assert.True(t, math.IsNaN(got.At(o)), label)
								assert.True(t, math.IsNaN(got32.At(o)), label)
							}
							continue
						}
						want, _ := redRefOp(kind, g, 1)
						want32, _ := redRefOp(kind, groups32[o], 1)
						if math.IsNaN(want) { // variance of one element with ddof 1
							assert.True(t, math.IsNaN(got.At(o)), label)
							continue
						}
						// float64: only the summation order differs.
						if tol := 1e-13 * float64(len(g)) * (1 + math.Abs(want)); !(math.Abs(want-got.At(o)) <= tol) {
							assert.InDelta(t, want, got.At(o), tol, label)
						}
						// float32: float64 accumulation, then one rounding to float32.
						if tol := 1.2e-7*math.Abs(want32) + 1e-12*float64(len(g)); !(math.Abs(want32-got32.At(o)) <= tol) {
							assert.InDelta(t, want32, got32.At(o), tol, label)
						}
					}
				}
			}
		}
	}
}

func TestReductionNegativeAxesAndAll(t *testing.T) {
	x := FromFloat64([]float64{1, 2, 3, 4, 5, 6}, 2, 3)
	assert.Equal(t, []float64{6, 15}, Sum(x, []int{-1}, false).Float64s())
	assert.Equal(t, []float64{5, 7, 9}, Sum(x, []int{-2}, false).Float64s())
	assert.Equal(t, []int{2, 1}, Sum(x, []int{1}, true).Shape())
	all := SumAll(x)
	assert.Equal(t, 0, all.Rank())
	assert.Equal(t, 21.0, all.Item())
	assert.Equal(t, 3.5, MeanAll(x).Item())
	assert.Equal(t, []float64{1, 2, 3, 4, 5, 6}, Sum(x, []int{}, false).Float64s(), "no axes: identity")
	assert.Equal(t, []int{1, 1}, Max(x, nil, true).Shape())
	assert.InDelta(t, 17.5/6, Var(x, nil, false, 0).Item(), 1e-15)
	assert.InDelta(t, 17.5/5, Var(x, nil, false, 1).Item(), 1e-15)
	assert.True(t, math.IsNaN(Var(x, nil, false, 6).Item()))
}

func TestReductionPanics(t *testing.T) {
	x := Zeros(Float32, 2, 3)
	assert.PanicsWithValue(t, "autodiff: sum: axes [1 -1] name axis 1 twice", func() { Sum(x, []int{1, -1}, false) })
	assert.PanicsWithValue(t, "autodiff: mean: axis 2 out of range for rank 2", func() { Mean(x, []int{2}, false) })
	assert.Panics(t, func() { Max(Zeros(Float32, 2, 0), []int{1}, false) })
	assert.Panics(t, func() { Min(Zeros(Float32, 0), nil, false) })
	assert.Panics(t, func() { Var(x, nil, false, -1) })
	assert.Panics(t, func() { Sum(Zeros(Int32, 3), nil, false) })
	assert.Panics(t, func() { Sum(Scalar(Float64, 1), []int{0}, false) })
}

func TestReductionNaNAndTies(t *testing.T) {
	x := FromFloat64([]float64{1, math.NaN(), 3, 3, 0, 3}, 2, 3)
	mx := Max(x, []int{1}, false)
	assert.True(t, math.IsNaN(mx.At(0)))
	assert.Equal(t, 3.0, mx.At(1))

	// Ties: the gradient goes to the first maximum, rows and columns alike.
	tp := NewTape()
	defer tp.Release()
	y := FromFloat64([]float64{1, 3, 3, 2, 3, 0}, 2, 3)
	yw := tp.Watch(y)
	tp.Backward(Add(SumAll(Max(yw, []int{1}, false)), SumAll(Max(yw, []int{0}, false))))
	// rows: (1,3,3) → element 1; (2,3,0) → element 4. columns: (1,2) → 3, (3,3) → 1, (3,0) → 2.
	assert.Equal(t, []float64{0, 2, 1, 1, 1, 0}, tp.Grad(y).Float64s())

	tp2 := NewTape()
	defer tp2.Release()
	yw2 := tp2.Watch(y)
	tp2.Backward(SumAll(Min(yw2, nil, false)))
	assert.Equal(t, []float64{0, 0, 0, 0, 0, 1}, tp2.Grad(y).Float64s())
}

func TestReductionGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	shapes := [][]int{{1}, {7}, {33}, {127}, {7, 33}, {33, 7}, {2, 3, 4}, {2, 3, 2, 3}, {3, 1, 5}}
	for _, shape := range shapes {
		for _, axes := range redSubsets(len(shape)) {
			for _, keep := range []bool{false, true} {
				x := redDistinct(rng, shape...)
				ops := map[string]func(*Tensor) *Tensor{
					"sum":  func(v *Tensor) *Tensor { return Sum(v, axes, keep) },
					"mean": func(v *Tensor) *Tensor { return Mean(v, axes, keep) },
					"max":  func(v *Tensor) *Tensor { return Max(v, axes, keep) },
					"min":  func(v *Tensor) *Tensor { return Min(v, axes, keep) },
					"var0": func(v *Tensor) *Tensor { return Var(v, axes, keep, 0) },
				}
				if numel(shape) > 1 {
					ops["var1"] = func(v *Tensor) *Tensor { return Var(v, axes, keep, 1) }
				}
				for name, op := range ops {
					if name == "var1" && redCount(shape, axes) < 2 {
						continue
					}
					err := GradCheck{Seed: 1}.Check(func(in []*Tensor) *Tensor { return op(in[0]) }, x)
					assert.NoError(t, err, "%s %v axes %v keep %v", name, shape, axes, keep)
				}
			}
		}
	}
}

func redCount(shape, axes []int) int {
	n := 1
	for i, d := range shape {
		if redMaskOf(axes, len(shape))[i] {
			n *= d
		}
	}
	return n
}

// The float32 backward must agree with the float64 one (all layouts).
func TestReductionBackwardFloat32(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	for _, c := range []struct {
		shape []int
		axes  []int
	}{{[]int{600, 127}, []int{1}}, {[]int{127, 600}, []int{0}}, {[]int{3, 300, 130}, []int{1}}, {[]int{4, 5, 6, 7}, []int{0, 2}}} {
		for kind := redSum; kind <= redVar; kind++ {
			x := redDistinct(rng, c.shape...)
			x32 := Cast(x, Float32)
			grads := make([][]float64, 2)
			for i, in := range []*Tensor{x, x32} {
				tp := NewTape()
				w := tp.Watch(in)
				y := reduce(kind, w, c.axes, false, 0)
				g := Full(in.DType(), 0, y.Shape()...)
				for j := range y.Len() {
					if in.DType() == Float32 {
						g.Float32s()[j] = float32(j%5) - 2
					} else {
						g.Float64s()[j] = float64(j%5) - 2
					}
				}
				tp.BackwardWith(y, g)
				grads[i] = tp.Grad(in).Float64Values()
				tp.Release()
			}
			for j := range grads[0] {
				redNear(t, grads[0][j], grads[1][j], 1e-5*(1+math.Abs(grads[0][j])), "%s %v", redNames[kind], c.shape)
			}
		}
	}
}

func ExampleSum() {
	x := FromFloat32([]float32{1, 2, 3, 4, 5, 6}, 2, 3)
	fmt.Println(Sum(x, []int{1}, false).Float32s())
	fmt.Println(Sum(x, []int{0}, true).Shape(), Sum(x, []int{0}, true).Float32s())
	fmt.Println(SumAll(x).Item(), MeanAll(x).Item())
	// Output:
	// [6 15]
	// [1 3] [5 7 9]
	// 21 3.5
}

func ExampleMax() {
	tp := NewTape()
	defer tp.Release()
	x := FromFloat64([]float64{1, 5, 5, 2}, 4)
	m := Max(tp.Watch(x), nil, false)
	tp.Backward(m)
	fmt.Println(m.Item(), tp.Grad(x).Float64s()) // the first maximum takes the gradient
	// Output: 5 [0 1 0 0]
}

func ExampleVar() {
	x := FromFloat64([]float64{1, 2, 3, 4}, 4)
	fmt.Println(Var(x, nil, false, 0).Item(), Var(x, nil, false, 1).Item())
	// Output: 1.25 1.6666666666666667
}

func ExampleSumAxis() {
	// The kernel on plain slices: x viewed as (a, n, b) = (2, 3, 2), summed over n.
	x := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	out := make([]float32, 4)
	SumAxis(out, x, 2, 3, 2)
	fmt.Println(out)
	// Output: [9 12 27 30]
}

func ExampleMean() {
	x := FromFloat64([]float64{1, 2, 3, 4, 5, 6}, 2, 3)
	fmt.Println(Mean(x, []int{-1}, true).Shape(), Mean(x, []int{-1}, true).Float64s())
	// Output: [2 1] [2 5]
}
