package quant

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/autodiff"
)

func TestExpertsGroupedLinear(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	const E, R, C = 3, 7, 64
	w := autodiff.FromFloat32(randVec(rng, E*R*C), E, R, C)
	x, err := QuantizeExperts(Params{GroupSize: 32, Bits: 4}, w)
	require.NoError(t, err)
	assert.Equal(t, []int{E, R, C * 4 / 32}, x.Packed.Shape())
	d := x.Dequantize(autodiff.Float32).Float32s()
	for e := range E {
		// Each expert is quantized as Quantize does on its matrix alone.
		m, err := Quantize(Params{GroupSize: 32, Bits: 4}, w.Float32s()[e*R*C:(e+1)*R*C], R, C)
		require.NoError(t, err)
		assert.Equal(t, m.Packed, x.Expert(e).Packed)
		assert.Equal(t, m.Scales, x.Expert(e).Scales)
	}
	offsets := []int{0, 5, 5, 38} // expert 1 gets no rows
	in := randVec(rng, 38*C)
	b := randVec(rng, E*R)
	y := x.GroupedLinear(autodiff.FromFloat32(in, 38, C), autodiff.FromFloat32(b, E, R), offsets)
	require.Equal(t, []int{38, R}, y.Shape())
	for e := range E {
		for r := offsets[e]; r < offsets[e+1]; r++ {
			for o := range R {
				want := float64(b[e*R+o])
				for k := range C {
					want += float64(in[r*C+k]) * float64(d[(e*R+o)*C+k])
				}
				require.InDelta(t, want, float64(y.Float32s()[r*R+o]), 1e-4, "expert %d row %d out %d", e, r, o)
			}
		}
	}

	in64 := make([]float64, 38*C)
	for i := range in64 {
		in64[i] = rng.NormFloat64()
	}
	b64 := make([]float64, E*R)
	for i := range b64 {
		b64[i] = rng.NormFloat64()
	}
	err = autodiff.GradCheck{}.Check(func(v []*autodiff.Tensor) *autodiff.Tensor {
		y := x.GroupedLinear(v[0], v[1], offsets)
		return autodiff.SumAll(autodiff.Mul(y, y))
	}, autodiff.FromFloat64(in64, 38, C), autodiff.FromFloat64(b64, E, R))
	assert.NoError(t, err)

	// Float32 gradients through the kernels match float64.
	tp := autodiff.NewTape()
	xin := tp.Watch(autodiff.FromFloat32(in, 38, C))
	tp.Backward(autodiff.SumAll(x.GroupedLinear(xin, nil, offsets)))
	g := tp.Grad(xin).Float32s()
	for e := range E {
		for r := offsets[e]; r < offsets[e+1]; r++ {
			for k := range C {
				var want float64
				for o := range R {
					want += float64(d[(e*R+o)*C+k])
				}
				require.InDelta(t, want, float64(g[r*C+k]), 1e-4)
			}
		}
	}
	tp.Release()
	assert.Panics(t, func() { x.GroupedLinear(autodiff.FromFloat32(in, 38, C), nil, []int{0, 5, 38}) })
}
