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

// Steps checks Mamba's decoding steps, the convolution step and the selective
// scan step (each updating its state in place), against package advanced's
// step kernels in float64, over three steps in a row on odd shapes.
func Steps(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(67, 68))
	for _, batch := range []int{1, 2} {
		for _, channels := range []int{1, 7, 33, 127} {
			for _, k := range []int{1, 4, 7} {
				conv1dStepCase(t, d, r, batch, channels, k, k != 7)
			}
			for _, state := range []int{1, 16, 33, 128} {
				ssmStepCase(t, d, r, batch, channels, state, state != 16)
			}
		}
	}
	conv1dStepCase(t, d, r, 0, 7, 4, true) // an empty batch
	ssmStepCase(t, d, r, 0, 7, 16, true)
	y := Empty(t, d, 8)
	assert.Error(t, metal.RunConv1dStep(d, y, y, y, y, nil, 1, 4, 0), "k = 0")
	assert.Error(t, metal.RunConv1dStep(d, y, y, y, y, nil, 2, 8, 2), "state too small")
	assert.Error(t, metal.RunSelectiveScanStep(d, y, nil, &metal.SSMBuffers{X: y, Dt: y, A: y, B: y, C: y}, 1, 1, 1), "no state")
	release(y)
	require.NoError(t, d.Synchronize())
}

func conv1dStepCase(t *testing.T, d metal.Compute, r *rand.Rand, batch, channels, k int, withBias bool) {
	what := fmt.Sprintf("conv1d step B=%d C=%d k=%d bias=%v", batch, channels, k, withBias)
	n, ns := batch*channels, batch*(k-1)*channels
	w, st := Random(r, channels*k, -1, 1), Random(r, ns, -1, 1)
	bb, bias64 := maybeRandom(t, d, r, channels, withBias)
	wb, stb, y := Upload(t, d, w), Upload(t, d, st), Empty(t, d, n)
	want, wantSt := make([]float64, n), f64(st)
	for step := range 3 {
		x := Random(r, n, -1, 1)
		xb := Upload(t, d, x)
		require.NoError(t, metal.RunConv1dStep(d, y, stb, xb, wb, bb, batch, channels, k), what)
		advanced.CausalConv1dStep(want, wantSt, f64(x), f64(w), bias64, batch, channels, k)
		AssertClose(t, Download(y, n), want, nil, fmt.Sprintf("%s step %d y", what, step))
		AssertClose(t, Download(stb, ns), wantSt, nil, fmt.Sprintf("%s step %d state", what, step))
		release(xb)
	}
	release(wb, stb, y)
	if bb != nil {
		release(bb)
	}
}

func ssmStepCase(t *testing.T, d metal.Compute, r *rand.Rand, batch, inner, state int, skip bool) {
	what := fmt.Sprintf("ssm step B=%d D=%d N=%d skip=%v", batch, inner, state, skip)
	a, h := Random(r, inner*state, -2, -0.1), Random(r, batch*inner*state, -1, 1)
	ab, hb, y := Upload(t, d, a), Upload(t, d, h), Empty(t, d, batch*inner)
	db, ds64 := maybeRandom(t, d, r, inner, skip)
	want, wantH := make([]float64, batch*inner), f64(h)
	for step := range 3 {
		x, dt := Random(r, batch*inner, -1, 1), Random(r, batch*inner, 0.01, 0.5)
		bm, cm := Random(r, batch*state, -1, 1), Random(r, batch*state, -1, 1)
		in := &metal.SSMBuffers{X: Upload(t, d, x), Dt: Upload(t, d, dt), A: ab, B: Upload(t, d, bm), C: Upload(t, d, cm), D: db}
		require.NoError(t, metal.RunSelectiveScanStep(d, y, hb, in, batch, inner, state), what)
		advanced.SelectiveScanStep(want, wantH, f64(x), f64(dt), f64(a), f64(bm), f64(cm), ds64, batch, inner, state)
		AssertClose(t, Download(y, batch*inner), want, constant(batch*inner, float64(state)), fmt.Sprintf("%s step %d y", what, step))
		AssertClose(t, Download(hb, batch*inner*state), wantH, constant(batch*inner*state, 1), fmt.Sprintf("%s step %d state", what, step))
		release(in.X, in.Dt, in.B, in.C)
	}
	release(ab, hb, y)
	if db != nil {
		release(db)
	}
}

// Conv1dContinue checks the convolution continuing from a decoding state (and
// moving it on), against package advanced's CausalConv1dForward with prev and
// CausalConv1dAdvance in float64, over two calls in a row: lengths shorter and
// longer than the state.
func Conv1dContinue(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(69, 70))
	for _, batch := range []int{1, 2} {
		for _, channels := range []int{1, 7, 33} {
			for _, k := range []int{1, 4, 7} {
				for _, withBias := range []bool{false, true} {
					conv1dContinueCase(t, d, r, batch, channels, k, withBias)
				}
			}
		}
	}
	y := Empty(t, d, 8)
	assert.Error(t, metal.RunConv1dContinue(d, y, y, y, y, nil, 2, 1, 8, 2), "state too small")
	release(y)
	require.NoError(t, d.Synchronize())
}

func conv1dContinueCase(t *testing.T, d metal.Compute, r *rand.Rand, batch, channels, k int, withBias bool) {
	what := fmt.Sprintf("conv1d continue B=%d C=%d k=%d bias=%v", batch, channels, k, withBias)
	ns := batch * (k - 1) * channels
	w, st := Random(r, channels*k, -1, 1), Random(r, ns, -1, 1)
	bb, bias64 := maybeRandom(t, d, r, channels, withBias)
	wb, stb := Upload(t, d, w), Upload(t, d, st)
	wantSt := f64(st)
	for _, length := range []int{2, 9, 0, 1} {
		n := batch * length * channels
		x := Random(r, n, -1, 1)
		xb, y := Upload(t, d, x), Empty(t, d, n)
		require.NoError(t, metal.RunConv1dContinue(d, y, stb, xb, wb, bb, batch, length, channels, k), what)
		want := make([]float64, n)
		var prev []float64
		if k > 1 {
			prev = wantSt
		}
		advanced.CausalConv1dForward(want, f64(x), f64(w), bias64, prev, batch, length, channels, k)
		advanced.CausalConv1dAdvance(wantSt, f64(x), batch, length, channels, k)
		AssertClose(t, Download(y, n), want, nil, fmt.Sprintf("%s length %d y", what, length))
		AssertClose(t, Download(stb, ns), wantSt, nil, fmt.Sprintf("%s length %d state", what, length))
		release(xb, y)
	}
	release(wb, stb)
	if bb != nil {
		release(bb)
	}
}

// maybeRandom returns n random values in [−1, 1) on the device and in float64
// when on, for an optional operand; else nil and nil.
func maybeRandom(t *testing.T, d metal.Compute, r *rand.Rand, n int, on bool) (*metal.Buffer, []float64) {
	if !on {
		return nil, nil
	}
	v := Random(r, n, -1, 1)
	return Upload(t, d, v), f64(v)
}
