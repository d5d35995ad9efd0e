package autodiff

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestReductionsFloat32MatchFloat64 runs every reduction (and pow, where,
// masked_fill, dropout, whose device mask must be the CPU's, and the matmul
// gradients of operands broadcast over batch axes) over leading, middle,
// trailing, separate and all axes of odd and empty shapes, and the broadcasting
// gradients SumTo sums over middle axes, forward and backward, on float32 and on
// float64 (which stays on the CPU): they agree within float32 rounding. Under
// MLXTRAIN_DEVICE=sim MLXTRAIN_METAL_MIN=0 (as CI runs it) the float32 side runs
// on the simulated GPU, and every op of it must say so in the profile.
func TestReductionsFloat32MatchFloat64(t *testing.T) {
	r := rand.New(rand.NewPCG(51, 52))
	type tc = deviceCase
	var cases []tc
	for _, n := range []int{1, 7, 33, 127, 0} {
		for _, axes := range [][]int{{1}, {0, 2}, {2}, {0}, nil} {
			cases = append(cases,
				tc{fmt.Sprintf("sum %v", axes), []int{3, n, 5}, func(x *Tensor) *Tensor { return Sum(x, axes, false) }},
				tc{fmt.Sprintf("mean %v", axes), []int{3, n, 5}, func(x *Tensor) *Tensor { return Mean(x, axes, true) }},
				tc{fmt.Sprintf("var %v", axes), []int{3, n, 5}, func(x *Tensor) *Tensor { return Var(x, axes, false, 1) }},
			)
			if n > 0 {
				cases = append(cases,
					tc{fmt.Sprintf("max %v", axes), []int{3, n, 5}, func(x *Tensor) *Tensor { return Max(x, axes, false) }},
					tc{fmt.Sprintf("min %v", axes), []int{3, n, 5}, func(x *Tensor) *Tensor { return Min(x, axes, true) }})
			}
		}
		cases = append(cases,
			tc{"pow 3", []int{n, 3}, func(x *Tensor) *Tensor { return Pow(x, 3) }},
			tc{"pow -1.5 of |x|+0.5", []int{n, 3}, func(x *Tensor) *Tensor { return Pow(AddScalar(Abs(x), 0.5), -1.5) }})
		cases = append(cases,
			tc{"where, int32 mask released before backward", []int{3, n}, func(x *Tensor) *Tensor {
				cond := Empty(Int32, 1, n)
				for i := range cond.Int32s() {
					cond.Int32s()[i] = int32(i % 3)
				}
				defer cond.Release()
				y := MulScalar(x, -2)
				return Where(cond, x, y)
			}},
			tc{"masked_fill, float32 mask", []int{3, n}, func(x *Tensor) *Tensor {
				mask := FromFloat32([]float32{0, 1, float32(math.Copysign(0, -1))}, 3, 1)
				defer mask.Release()
				return MaskedFill(x, mask, 7.5)
			}})
		cases = append(cases,
			tc{"matmul, a shared by a batch of b", []int{n, 3}, func(x *Tensor) *Tensor {
				b := Full(x.dtype, 0.25, 2, 3, 4)
				defer b.Release()
				return MatMul(x, AddScalar(b, 0.5))
			}},
			tc{"matmul, b shared by a batch of transposed a", []int{3, 5}, func(x *Tensor) *Tensor {
				a := Full(x.dtype, 0.5, 2, 3, n)
				defer a.Release()
				return MatMulT(AddScalar(a, 0.25), x, true, false)
			}},
			tc{"matmul, 1-D b shared", []int{3}, func(x *Tensor) *Tensor {
				a := Full(x.dtype, 0.5, 2, n, 3)
				defer a.Release()
				return MatMul(AddScalar(a, 0.25), x)
			}})
		cases = append(cases, tc{"dropout", []int{n, 33}, func(x *Tensor) *Tensor {
			rng := NewRNG(0x5eed)
			rng.Offset = 1<<32 - 40 // a draw across 2³²
			return Dropout(x, 0.3, rng, true)
		}})
		cases = append(cases, tc{"add broadcast over middle axes", []int{1, n, 1}, func(x *Tensor) *Tensor {
			y := Full(x.dtype, 0.5, 3, n, 4)
			defer y.Release()
			return Add(y, x)
		}})
	}
	close := func(want, got float64) bool {
		if math.IsNaN(want) {
			return math.IsNaN(got)
		}
		return math.Abs(want-got) <= 1e-5*(1+math.Abs(want))
	}
	ties := func(x *Tensor) {
		for i := range x.Float32s() {
			if i%4 == 1 {
				x.Float32s()[i] = 1.25 // ties for max and min
			}
		}
	}
	checkFloat32MatchesFloat64(t, r, cases, ties, false, func(what string, y32, y64, dx32, dx64 *Tensor) {
		for i, v := range y32.Float64Values() {
			assert.True(t, close(y64.Float64Values()[i], v), "%s: y[%d] = %v, want %v", what, i, v, y64.Float64Values()[i])
		}
		for i, v := range dx32.Float64Values() {
			assert.True(t, close(dx64.Float64Values()[i], v), "%s: dx[%d] = %v, want %v", what, i, v, dx64.Float64Values()[i])
		}
	})
}
