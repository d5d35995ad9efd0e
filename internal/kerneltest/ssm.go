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

// SSM checks the selective scan, forward (with checkpoints and the final
// state, from zeros and from a given state) and backward, against package
// advanced's kernels in float64 on odd shapes: state sizes below, at and above
// a SIMD group's 32 lanes, chunks shorter and longer than the sequence.
func SSM(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(61, 62))
	for _, c := range []struct{ B, L, D, N, chunk int }{
		{1, 1, 1, 1, 4}, {2, 37, 11, 5, 16}, {1, 20, 9, 16, 64}, {2, 13, 3, 40, 5}, {1, 9, 17, 33, 4},
	} {
		for _, skip := range []bool{false, true} {
			ssmCase(t, d, r, advanced.SSMDims{Batch: c.B, Len: c.L, Inner: c.D, State: c.N}, c.chunk, skip)
		}
	}
	y := Empty(t, d, 4)
	bad := &metal.SSMBuffers{X: y, Dt: y, A: y, B: y, C: y}
	assert.Error(t, metal.RunSelectiveScan(d, y, nil, nil, bad, 1, 1, 1, 200, 4), "state above the maximum")
	assert.Error(t, metal.RunSelectiveScan(d, y, nil, nil, bad, 1, 5, 1, 1, 4), "x too small")
	release(y)
	require.NoError(t, d.Synchronize())
}

func ssmCase(t *testing.T, d metal.Compute, r *rand.Rand, dims advanced.SSMDims, chunk int, skip bool) {
	B, L, D, N := dims.Batch, dims.Len, dims.Inner, dims.State
	what := fmt.Sprintf("ssm %v chunk=%d D=%v", dims, chunk, skip)
	x, g := Random(r, B*L*D, -1, 1), Random(r, B*L*D, -1, 1)
	dt := Random(r, B*L*D, 0.01, 0.5)
	a := Random(r, D*N, -2, -0.1)
	bm, cm := Random(r, B*L*N, -1, 1), Random(r, B*L*N, -1, 1)
	h0 := Random(r, B*D*N, -1, 1)
	var ds []float32
	in64 := advanced.SSMInputs[float64]{X: f64(x), Dt: f64(dt), A: f64(a), B: f64(bm), C: f64(cm)}
	bufs := &metal.SSMBuffers{X: Upload(t, d, x), Dt: Upload(t, d, dt), A: Upload(t, d, a), B: Upload(t, d, bm), C: Upload(t, d, cm)}
	if skip {
		ds = Random(r, D, -1, 1)
		in64.D = f64(ds)
		bufs.D = Upload(t, d, ds)
	}
	nck := advanced.SSMCheckpointLen(dims, chunk)
	y, ckpt, final := Empty(t, d, B*L*D), Empty(t, d, nck), Empty(t, d, B*D*N)
	require.NoError(t, metal.RunSelectiveScan(d, y, ckpt, final, bufs, B, L, D, N, chunk), what)
	wantY, wantCk, wantFinal := make([]float64, B*L*D), make([]float64, nck), make([]float64, B*D*N)
	advanced.SelectiveScanForward(wantY, wantCk, wantFinal, in64, dims, chunk)
	AssertClose(t, Download(y, B*L*D), wantY, constant(B*L*D, float64(N)), what+" y")
	AssertClose(t, Download(ckpt, nck), wantCk, constant(nck, float64(L)), what+" checkpoints")
	AssertClose(t, Download(final, B*D*N), wantFinal, constant(B*D*N, float64(L)), what+" final state")

	// from a given state, no checkpoints
	withH0 := *bufs
	withH0.H0 = Upload(t, d, h0)
	y2, final2 := Empty(t, d, B*L*D), Empty(t, d, B*D*N)
	require.NoError(t, metal.RunSelectiveScan(d, y2, nil, final2, &withH0, B, L, D, N, chunk), what)
	in64h := in64
	in64h.H0 = f64(h0)
	advanced.SelectiveScanForward(wantY, nil, wantFinal, in64h, dims, chunk)
	AssertClose(t, Download(y2, B*L*D), wantY, constant(B*L*D, float64(N)), what+" y from h0")
	AssertClose(t, Download(final2, B*D*N), wantFinal, constant(B*D*N, float64(L)), what+" final state from h0")

	// in place: the state moves on in its own buffer
	inPlace := *bufs
	inPlace.H0 = Upload(t, d, h0)
	y3 := Empty(t, d, B*L*D)
	require.NoError(t, metal.RunSelectiveScan(d, y3, nil, inPlace.H0, &inPlace, B, L, D, N, chunk), what)
	AssertClose(t, Download(y3, B*L*D), wantY, constant(B*L*D, float64(N)), what+" y in place")
	AssertClose(t, Download(inPlace.H0, B*D*N), wantFinal, constant(B*D*N, float64(L)), what+" final state in place")
	release(y3, inPlace.H0)

	// backward
	gb := Upload(t, d, g)
	gr := &metal.SSMGradBuffers{X: Empty(t, d, B*L*D), Dt: Empty(t, d, B*L*D), A: Empty(t, d, D*N), B: Empty(t, d, B*L*N), C: Empty(t, d, B*L*N)}
	want := advanced.SSMGrads[float64]{X: make([]float64, B*L*D), Dt: make([]float64, B*L*D), A: make([]float64, D*N),
		B: make([]float64, B*L*N), C: make([]float64, B*L*N)}
	if skip {
		gr.D = Empty(t, d, D)
		want.D = make([]float64, D)
	}
	require.NoError(t, metal.RunSelectiveScanBackward(d, gr, gb, ckpt, bufs, B, L, D, N, chunk), what)
	advanced.SelectiveScanBackward(want, f64(g), wantCk, in64, dims, chunk)
	// the adjoint sums over time (and channels, batch): scale by those counts
	sl := float64(L * N)
	AssertClose(t, Download(gr.X, B*L*D), want.X, constant(B*L*D, sl), what+" dx")
	AssertClose(t, Download(gr.Dt, B*L*D), want.Dt, constant(B*L*D, sl), what+" ddt")
	AssertClose(t, Download(gr.A, D*N), want.A, constant(D*N, float64(B*L*L)), what+" dA")
	AssertClose(t, Download(gr.B, B*L*N), want.B, constant(B*L*N, float64(D*L)), what+" dB")
	AssertClose(t, Download(gr.C, B*L*N), want.C, constant(B*L*N, float64(D*L)), what+" dC")
	if skip {
		AssertClose(t, Download(gr.D, D), want.D, constant(D, float64(B*L)), what+" dD")
		release(gr.D, bufs.D)
	}
	release(bufs.X, bufs.Dt, bufs.A, bufs.B, bufs.C, withH0.H0, y, ckpt, final, y2, final2, gb, gr.X, gr.Dt, gr.A, gr.B, gr.C)
}
