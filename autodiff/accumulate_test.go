package autodiff

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tripleInPlace is 3x as a custom op whose VJP writes (or adds) 3g straight
// into x's gradient with AccumulateInPlace.
func tripleInPlace(x *Tensor) *Tensor {
	out := Empty(x.DType(), x.Shape()...)
	for i, v := range x.Float64s() {
		out.Float64s()[i] = 3 * v
	}
	return Record(out, "triple", func(g *Tensor) {
		AccumulateInPlace(x, func(dst *Tensor, fresh bool) {
			d := dst.Float64s()
			for i, v := range g.Float64s() {
				if fresh {
					d[i] = 3 * v
				} else {
					d[i] += 3 * v
				}
			}
		})
	}, x)
}

// TestGradientSharing checks the gradients where Add hands its output's gradient
// to an input without a copy and where AccumulateInPlace writes into a gradient:
// the shared buffer must not leak into another input's gradient when either is
// accumulated into later.
func TestGradientSharing(t *testing.T) {
	cases := map[string]func(in []*Tensor) *Tensor{
		"x+x":           func(in []*Tensor) *Tensor { return Add(in[0], in[0]) },
		"(a+b)·a":       func(in []*Tensor) *Tensor { return Mul(Add(in[0], in[1]), in[0]) },
		"(a+b)·b":       func(in []*Tensor) *Tensor { return Mul(Add(in[0], in[1]), in[1]) },
		"(a+b)+(a+b)·a": func(in []*Tensor) *Tensor { s := Add(in[0], in[1]); return Add(s, Mul(s, in[0])) },
		"a+(a+b)":       func(in []*Tensor) *Tensor { return Add(in[0], Add(in[0], in[1])) },
		"(a+b)+a·b":     func(in []*Tensor) *Tensor { return Add(Add(in[0], in[1]), Mul(in[0], in[1])) },
		"a+row b":       func(in []*Tensor) *Tensor { return Add(in[0], Sum(in[1], []int{0}, true)) },
		"3a":            func(in []*Tensor) *Tensor { return Mul(tripleInPlace(in[0]), in[1]) },
		"3a+a":          func(in []*Tensor) *Tensor { return Mul(Add(tripleInPlace(in[0]), in[0]), in[1]) },
		"a+3a":          func(in []*Tensor) *Tensor { return Mul(Add(in[0], tripleInPlace(in[0])), in[1]) },
		"3(a+b)·a":      func(in []*Tensor) *Tensor { return Mul(tripleInPlace(Add(in[0], in[1])), in[0]) },
		"3a+3a":         func(in []*Tensor) *Tensor { return Add(tripleInPlace(in[0]), tripleInPlace(in[0])) },
		"(3a+b)·(a+b)·a": func(in []*Tensor) *Tensor {
			return Mul(Mul(Add(tripleInPlace(in[0]), in[1]), Add(in[0], in[1])), in[0])
		},
	}
	for name, f := range cases {
		for _, shape := range [][]int{{1, 1}, {7, 33}, {0, 5}} {
			t.Run(fmt.Sprintf("%s/%v", name, shape), func(t *testing.T) {
				rng := NewRNG(9)
				a, b := RandNormal(rng, Float64, 0, 1, shape...), RandNormal(rng, Float64, 0, 1, shape...)
				require.NoError(t, GradCheck{Seed: 3}.Check(f, a, b))
			})
		}
	}
	// The exact values of the plainest case: d(x+x)/dx = 2g.
	tp := NewTape()
	defer tp.Release()
	x := tp.Watch(FromFloat64([]float64{1, 2, 3}, 3))
	tp.BackwardWith(Add(x, x), FromFloat64([]float64{0.5, -1, 4}, 3))
	assert.Equal(t, []float64{1, -2, 8}, tp.Grad(x).Float64s())
}

// ceLogSumExp32 (8 lanes) against smLogSumExp, and the float32 row gradient
// against the float64 formula, on rows of every length class and with the
// special values the fast path hands back (NaN, ±Inf) or must keep (−Inf
// entries of a masked row become 0).
func TestCrossEntropyRows32(t *testing.T) {
	rng := NewRNG(4)
	for _, v := range []int{8, 9, 33, 65, 127} {
		x := RandNormal(rng, Float32, 0, 3, v).Float32s()
		tmp, zeros := make([]float32, v), make([]float32, v)
		l := ceLogSumExp32(x, tmp, zeros)
		assert.InDelta(t, smLogSumExp(x), l, 3e-7*(1+math.Abs(l)), "v=%d", v)
		d := make([]float32, v)
		ceRowGrad(d, x, l, 0.25, 0.01)
		for j := range v {
			want := 0.25*math.Exp(float64(x[j])-l) - 0.01
			assert.InDelta(t, want, float64(d[j]), 1e-7, "v=%d grad %d", v, j)
		}
		for _, special := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
			y := append([]float32(nil), x...)
			y[v/2] = special
			want, got := smLogSumExp(y), ceLogSumExp32(y, tmp, zeros)
			if math.IsNaN(want) {
				assert.True(t, math.IsNaN(got), "v=%d %v", v, special)
			} else {
				assert.InDelta(t, want, got, 3e-7*(1+math.Abs(want)), "v=%d %v", v, special)
			}
		}
		masked := append([]float32(nil), x...)
		masked[1] = float32(math.Inf(-1))
		lm := smLogSumExp(masked)
		ceRowGrad(d, masked, lm, 1, 0)
		assert.Zero(t, d[1], "v=%d masked", v)
	}
}
