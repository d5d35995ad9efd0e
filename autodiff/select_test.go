package autodiff

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/metal"
)

// selLines calls fn for every line of x (shape) along axis with the flat indices
// of its elements, in output order: the independent reference walk.
func selLines(shape []int, axis int, fn func(line int, at []int)) {
	strides := make([]int, len(shape))
	s := 1
	for i := len(shape) - 1; i >= 0; i-- {
		strides[i] = s
		s *= shape[i]
	}
	mask := make([]bool, len(shape))
	mask[axis] = true
	_, idx, _ := redGroups(make([]float64, numel(shape)), shape, mask)
	for line, at := range idx {
		fn(line, at)
	}
}

func TestArgmaxArgminMatchReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	shapes := [][]int{{1}, {7}, {127}, {7, 33}, {33, 7}, {3, 127, 2}, {2, 1, 5}, {0, 3}, {600, 127}, {3, 300, 130}}
	for _, shape := range shapes {
		x := randTensor(rng, -3, 3, shape...)
		xs := x.Float64s()
		for i := range xs { // plenty of ties
			xs[i] = math.Round(xs[i])
		}
		x32 := Cast(x, Float32)
		for axis := range shape {
			for _, keep := range []bool{false, true} {
				if shape[axis] == 0 && numel(shape[:axis])*numel(shape[axis+1:]) > 0 {
					assert.Panics(t, func() { Argmax(x, axis, keep) }, "arg-extremum over an empty axis")
					continue
				}
				amax, amin := Argmax(x, axis, keep), Argmin(x32, axis-len(shape), keep)
				require.Equal(t, Int32, amax.DType())
				want := append([]int(nil), shape...)
				if keep {
					want[axis] = 1
				} else {
					want = append(want[:axis], want[axis+1:]...)
				}
				require.Equal(t, len(want), amax.Rank())
				if len(want) > 0 {
					assert.Equal(t, want, amax.Shape())
					assert.Equal(t, want, amin.Shape())
				}
				selLines(shape, axis, func(line int, at []int) {
					bi, wi := 0, 0
					for r, f := range at {
						if xs[f] > xs[at[bi]] {
							bi = r
						}
						if xs[f] < xs[at[wi]] {
							wi = r
						}
					}
					assert.Equal(t, int32(bi), amax.Int32s()[line], "%v axis %d", shape, axis)
					assert.Equal(t, int32(wi), amin.Int32s()[line], "%v axis %d", shape, axis)
				})
			}
		}
	}
	assert.Panics(t, func() { Argmax(Zeros(Float32, 3, 0), 1, false) })
	assert.Equal(t, []int32{1, 2}, Argmax(FromFloat64([]float64{1, math.NaN(), 5, 1, 2, math.NaN()}, 2, 3), 1, false).Int32s())
}

// selTopKRef sorts each row's indices stably by descending value (NaN first).
func selTopKRef(row []float64, k int) []int {
	idx := make([]int, len(row))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		va, vb := row[idx[a]], row[idx[b]]
		if math.IsNaN(va) || math.IsNaN(vb) {
			return math.IsNaN(va) && !math.IsNaN(vb)
		}
		return va > vb
	})
	return idx[:k]
}

func TestTopKMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(43, 44))
	for _, shape := range [][]int{{1}, {7}, {33}, {127}, {7, 33}, {2, 3, 127}, {4, 0}, {0, 5}, {300, 300}} {
		n := shape[len(shape)-1]
		rows := numel(shape[:len(shape)-1])
		for _, k := range []int{0, 1, 2, 7, n / 2, n} {
			if k > n {
				continue
			}
			x := randTensor(rng, -3, 3, shape...)
			xs := x.Float64s()
			for i := range xs {
				xs[i] = math.Round(xs[i] * 2) // ties
				if i%37 == 5 {
					xs[i] = math.NaN()
				}
			}
			for _, dt := range []DType{Float64, Float32} {
				vals, idx := TopK(Cast(x, dt), k)
				want := append(append([]int(nil), shape[:len(shape)-1]...), k)
				require.Equal(t, want, vals.Shape())
				require.Equal(t, want, idx.Shape())
				for r := range rows {
					ref := selTopKRef(xs[r*n:(r+1)*n], k)
					gi := idx.Int32s()[r*k : (r+1)*k]
					for j, at := range ref {
						w, g := xs[r*n+at], vals.At(r*k+j)
						if int32(at) != gi[j] || !(w == g || (math.IsNaN(w) && math.IsNaN(g))) {
							assert.Fail(t, "topk mismatch", "%v k=%d row %d pos %d: want index %d value %g, got %d %g", shape, k, r, j, at, w, gi[j], g)
						}
					}
				}
			}
		}
	}
	assert.Panics(t, func() { TopK(Zeros(Float32, 3), 4) })
	assert.Panics(t, func() { TopK(Zeros(Float32, 3), -1) })
	assert.Panics(t, func() { TopK(Scalar(Float32, 1), 1) })
}

func TestTopKGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(45, 46))
	for _, shape := range [][]int{{1}, {7}, {33}, {3, 127}, {2, 3, 7}} {
		n := shape[len(shape)-1]
		for _, k := range []int{1, (n + 1) / 2, n} {
			x := redDistinct(rng, shape...)
			err := GradCheck{Seed: 4}.Check(func(in []*Tensor) *Tensor {
				v, i := TopK(in[0], k)
				i.Release()
				return v
			}, x)
			assert.NoError(t, err, "%v k=%d", shape, k)
		}
	}
}

func TestCumsumMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(47, 48))
	onDevice := metal.Offloading() && cumsumOp.OnMetal(1)
	for _, shape := range [][]int{{1}, {7}, {127}, {7, 33}, {33, 7}, {3, 127, 2}, {2, 0, 3}, {600, 127}, {3, 300, 130}} {
		x := randTensor(rng, -2, 2, shape...)
		x32 := Cast(x, Float32)
		x32v := x32.Float64Values()
		xs := x.Float64s()
		for axis := range shape {
			for _, rev := range []bool{false, true} {
				got, got32 := Cumsum(x, axis, rev), Cumsum(x32, axis-len(shape), rev)
				require.Equal(t, shape, got.Shape())
				selLines(shape, axis, func(_ int, at []int) {
					s, s32, mag := 0.0, 0.0, 0.0
					for j := range at {
						f := at[j]
						if rev {
							f = at[len(at)-1-j]
						}
						s += xs[f]
						s32 += x32v[f]
						mag += math.Abs(x32v[f])
						if math.Abs(s-got.At(f)) > 1e-13*float64(len(at)) {
							assert.InDelta(t, s, got.At(f), 1e-13*float64(len(at)), "%v axis %d rev %v", shape, axis, rev)
						}
						// float64 running sum, one rounding to float32; the
						// device sums in float32, in a tree of a few levels.
						tol := 6e-8*math.Abs(s32) + 1e-13*float64(len(at))
						if onDevice {
							tol += 1e-6 * mag
						}
						if math.Abs(s32-got32.At(f)) > tol {
							assert.InDelta(t, s32, got32.At(f), tol, "%v axis %d rev %v", shape, axis, rev)
						}
					}
				})
			}
		}
	}
}

func TestCumsumGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(49, 50))
	for _, shape := range [][]int{{1}, {7}, {33}, {127}, {7, 5}, {3, 4, 5}} {
		for axis := range shape {
			for _, rev := range []bool{false, true} {
				x := randTensor(rng, -1, 1, shape...)
				err := GradCheck{Seed: 5}.Check(func(in []*Tensor) *Tensor { return Cumsum(in[0], axis, rev) }, x)
				assert.NoError(t, err, "%v axis %d rev %v", shape, axis, rev)
			}
		}
	}
}

func ExampleArgmax() {
	x := FromFloat32([]float32{1, 7, 7, 3, 0, 2}, 2, 3)
	fmt.Println(Argmax(x, -1, false).Int32s(), Argmax(x, 0, true).Shape())
	// Output: [1 0] [1 3]
}

func ExampleTopK() {
	x := FromFloat32([]float32{0.1, 0.5, 0.2, 0.5}, 4)
	vals, idx := TopK(x, 3)
	fmt.Println(vals.Float32s(), idx.Int32s())
	// Output: [0.5 0.5 0.2] [1 3 2]
}

func ExampleCumsum() {
	x := FromFloat64([]float64{1, 2, 3, 4}, 4)
	fmt.Println(Cumsum(x, 0, false).Float64s(), Cumsum(x, 0, true).Float64s())
	// Output: [1 3 6 10] [10 9 7 4]
}
