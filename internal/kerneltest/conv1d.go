package kerneltest

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/advanced"
	"github.com/mlxtrain/mlxtrain/metal"
)

// Conv1d checks the causal depthwise convolution, forward and backward, against
// package advanced's kernels (float64 on the same float32 inputs) on odd shapes,
// with and without bias, kernel widths 1, 4 and 7.
func Conv1d(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(51, 52))
	for _, batch := range []int{1, 2} {
		for _, length := range []int{1, 7, 33} {
			for _, channels := range []int{1, 7, 70} {
				for _, k := range []int{1, 4, 7} {
					conv1dCase(t, d, r, batch, length, channels, k, k != 4)
				}
			}
		}
	}
	// a long sequence: many rows per thread in the dw reduction
	conv1dCase(t, d, r, 3, 300, 5, 4, true)
	y := Empty(t, d, 8)
	assert.Error(t, metal.RunConv1d(d, y, y, y, nil, 1, 2, 4, 0), "k = 0")
	assert.Error(t, metal.RunConv1dBackward(d, nil, y, nil, y, y, y, 1, 2, 4, 2), "dw without db")
	assert.Error(t, metal.RunConv1d(d, y, y, y, nil, 1, 3, 4, 2), "y too small")
	release(y)
	require.NoError(t, d.Synchronize())
}

func conv1dCase(t *testing.T, d metal.Compute, r *rand.Rand, batch, length, channels, k int, withBias bool) {
	what := fmt.Sprintf("conv1d B=%d L=%d C=%d k=%d bias=%v", batch, length, channels, k, withBias)
	n := batch * length * channels
	x, w, g := Random(r, n, -1, 1), Random(r, channels*k, -1, 1), Random(r, n, -1, 1)
	var bias []float32
	var bb *metal.Buffer
	if withBias {
		bias = Random(r, channels, -1, 1)
		bb = Upload(t, d, bias)
	}
	xb, wb, gb := Upload(t, d, x), Upload(t, d, w), Upload(t, d, g)
	y, dx, dw, db := Empty(t, d, n), Empty(t, d, n), Empty(t, d, channels*k), Empty(t, d, channels)
	require.NoError(t, metal.RunConv1d(d, y, xb, wb, bb, batch, length, channels, k), what)
	require.NoError(t, metal.RunConv1dBackward(d, dx, dw, db, gb, xb, wb, batch, length, channels, k), what)

	wantY, wantDX := make([]float64, n), make([]float64, n)
	wantDW, wantDB := make([]float64, channels*k), make([]float64, channels)
	var bias64 []float64
	if withBias {
		bias64 = f64(bias)
	}
	advanced.CausalConv1dForward(wantY, f64(x), f64(w), bias64, nil, batch, length, channels, k)
	advanced.CausalConv1dBackward(wantDX, wantDW, wantDB, f64(g), f64(x), f64(w), batch, length, channels, k)
	AssertClose(t, Download(y, n), wantY, nil, what+" y")
	AssertClose(t, Download(dx, n), wantDX, nil, what+" dx")
	scale := float64(batch * length)
	AssertClose(t, Download(dw, channels*k), wantDW, constant(channels*k, scale), what+" dw")
	AssertClose(t, Download(db, channels), wantDB, constant(channels, scale), what+" db")
	release(xb, wb, gb, y, dx, dw, db)
	if bb != nil {
		release(bb)
	}
}

func constant(n int, v float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
}
