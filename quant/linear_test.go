package quant

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/layers"
)

func TestWeightMatMulTGradCheck(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, shape := range [][]int{{1, 64}, {7, 64}, {2, 3, 128}} {
		for _, bits := range []int{3, 4, 8} {
			K := shape[len(shape)-1]
			w, err := QuantizeTensor(Params{GroupSize: 64, Bits: bits}, autodiff.FromFloat32(randVec(rng, 7*K), 7, K))
			require.NoError(t, err)
			n := 1
			for _, d := range shape {
				n *= d
			}
			x64 := make([]float64, n)
			for i := range x64 {
				x64[i] = rng.NormFloat64()
			}
			x := autodiff.FromFloat64(x64, shape...)
			err = autodiff.GradCheck{}.Check(func(in []*autodiff.Tensor) *autodiff.Tensor {
				y := w.MatMulT(in[0])
				return autodiff.SumAll(autodiff.Mul(y, y))
			}, x)
			assert.NoError(t, err, "shape %v bits %d", shape, bits)

			// Float32 through the kernels, forward and backward, against float64.
			x32 := autodiff.Cast(x, autodiff.Float32)
			tp := autodiff.NewTape()
			xw := tp.Watch(x32)
			y32 := w.MatMulT(xw)
			tp.Backward(autodiff.SumAll(y32))
			g32 := tp.Grad(xw)
			y64 := w.MatMulT(x)
			assert.Equal(t, append(shape[:len(shape)-1:len(shape)-1], 7), y32.Shape())
			for i, v := range y64.Float64s() {
				assert.InDelta(t, v, float64(y32.Float32s()[i]), 1e-4*(1+abs64(v)))
			}
			d := w.Matrix.Dequantize()
			for i, v := range g32.Float32s() {
				var want float64
				for o := range 7 {
					want += float64(d[o*K+i%K])
				}
				assert.InDelta(t, want, float64(v), 1e-4)
			}
			tp.Release()
		}
	}
}

func abs64(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func TestQuantizedLayers(t *testing.T) {
	rng := autodiff.NewRNG(1)
	l := layers.NewLinear(rng, autodiff.Float32, 64, 5, true, layers.Init{})
	copy(l.Bias.Float32s(), []float32{1, 2, 3, 4, 5})
	x := autodiff.RandNormal(rng, autodiff.Float32, 0, 1, 3, 64)
	require.NoError(t, QuantizeLinear(l, Params{GroupSize: 64, Bits: 8}))
	assert.Nil(t, l.Weight)
	assert.Equal(t, 64, l.In())
	assert.Equal(t, 5, l.Out())
	names := []string{}
	for _, p := range l.Params("p.") {
		names = append(names, p.Name)
	}
	assert.Equal(t, []string{"p.weight", "p.scales", "p.biases", "p.bias"}, names)
	yq := l.Forward(nil, x)
	DequantizeLinear(l)
	require.NotNil(t, l.Weight)
	yf := l.Forward(nil, x)
	for i, v := range yf.Float32s() {
		assert.InDelta(t, v, yq.Float32s()[i], 1e-4)
	}

	e := layers.NewEmbedding(rng, autodiff.Float32, 10, 32, 0)
	ids := autodiff.FromInt32([]int32{9, 0, 4}, 3)
	require.NoError(t, QuantizeEmbedding(e, Params{GroupSize: 32, Bits: 4}))
	got := e.Forward(nil, ids)
	assert.Equal(t, []int{3, 32}, got.Shape())
	want := e.Packed.(*Weight).Matrix.Dequantize()
	assert.Equal(t, want[9*32:10*32], got.Float32s()[:32])
	assert.Equal(t, []int{3, 10}, e.AsHead(nil, got).Shape())
	assert.Panics(t, func() { e.Forward(nil, autodiff.FromInt32([]int32{10}, 1)) })
}
