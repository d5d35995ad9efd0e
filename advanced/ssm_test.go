package advanced

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	ad "github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/internal/vecmath"
)

// refScan is the selective scan written out step by step, keeping every state
// (Batch, Len, Inner, State) for refScanBackward.
func refScan[T ad.Float](in SSMInputs[T], d SSMDims) (y, hs, hLast []T) {
	B, L, D, N := d.Batch, d.Len, d.Inner, d.State
	y, hs, hLast = make([]T, B*L*D), make([]T, B*L*D*N), make([]T, B*D*N)
	for b := range B {
		for c := range D {
			h := make([]T, N)
			if in.H0 != nil {
				copy(h, in.H0[(b*D+c)*N:])
			}
			for t := range L {
				i := (b*L+t)*D + c
				dl, xv := in.Dt[i], in.X[i]
				out := T(0)
				for n := range N {
					h[n] = T(math.Exp(float64(dl*in.A[c*N+n])))*h[n] + dl*in.B[(b*L+t)*N+n]*xv
					out += in.C[(b*L+t)*N+n] * h[n]
					hs[i*N+n] = h[n]
				}
				if in.D != nil {
					out += in.D[c] * xv
				}
				y[i] = out
			}
			copy(hLast[(b*D+c)*N:], h)
		}
	}
	return y, hs, hLast
}

// refScanBackward is reverse-mode differentiation of refScan one operation at a
// time: y = C·h + D·x, h = a·h' + u, a = exp(Δ·A), u = Δ·B·x.
func refScanBackward[T ad.Float](g []T, in SSMInputs[T], d SSMDims, hs []T) SSMGrads[T] {
	B, L, D, N := d.Batch, d.Len, d.Inner, d.State
	gr := SSMGrads[T]{X: make([]T, B*L*D), Dt: make([]T, B*L*D), A: make([]T, D*N), B: make([]T, B*L*N), C: make([]T, B*L*N), D: make([]T, D)}
	for b := range B {
		for c := range D {
			dh := make([]T, N) // ∂L/∂h_t flowing back from later steps
			for t := L - 1; t >= 0; t-- {
				i := (b*L+t)*D + c
				dl, xv, gy := in.Dt[i], in.X[i], g[i]
				if in.D != nil {
					gr.D[c] += gy * xv
					gr.X[i] += gy * in.D[c]
				}
				for n := range N {
					bn, cn := (b*L+t)*N+n, in.C[(b*L+t)*N+n]
					h := hs[i*N+n]
					hPrev := T(0)
					switch {
					case t > 0:
						hPrev = hs[((b*L+t-1)*D+c)*N+n]
					case in.H0 != nil:
						hPrev = in.H0[(b*D+c)*N+n]
					}
					gr.C[bn] += gy * h
					dh[n] += gy * cn
					a := T(math.Exp(float64(dl * in.A[c*N+n])))
					da, du := dh[n]*hPrev, dh[n]
					gr.Dt[i] += da * a * in.A[c*N+n]
					gr.A[c*N+n] += da * a * dl
					gr.Dt[i] += du * in.B[bn] * xv
					gr.B[bn] += du * dl * xv
					gr.X[i] += du * dl * in.B[bn]
					dh[n] *= a
				}
			}
		}
	}
	return gr
}

// randSSM draws operands in the ranges Mamba produces: Δ in (0.001, 1.5), A < 0.
func randSSM(rng *rand.Rand, d SSMDims, skip, h0 bool) SSMInputs[float64] {
	B, L, D, N := d.Batch, d.Len, d.Inner, d.State
	in := SSMInputs[float64]{X: normals(rng, B*L*D), Dt: make([]float64, B*L*D), A: make([]float64, D*N), B: normals(rng, B*L*N), C: normals(rng, B*L*N)}
	for i := range in.Dt {
		in.Dt[i] = 0.001 + 1.5*rng.Float64()
	}
	for i := range in.A {
		in.A[i] = -math.Exp(2 * rng.Float64())
	}
	if skip {
		in.D = normals(rng, D)
	}
	if h0 {
		in.H0 = normals(rng, B*D*N)
	}
	return in
}

func ssmTo32(in SSMInputs[float64]) SSMInputs[float32] {
	out := SSMInputs[float32]{X: to32(in.X), Dt: to32(in.Dt), A: to32(in.A), B: to32(in.B), C: to32(in.C)}
	if in.D != nil {
		out.D = to32(in.D)
	}
	if in.H0 != nil {
		out.H0 = to32(in.H0)
	}
	return out
}

func newGrads[T ad.Float](d SSMDims) SSMGrads[T] {
	return SSMGrads[T]{X: make([]T, d.Batch*d.Len*d.Inner), Dt: make([]T, d.Batch*d.Len*d.Inner), A: make([]T, d.Inner*d.State),
		B: make([]T, d.Batch*d.Len*d.State), C: make([]T, d.Batch*d.Len*d.State), D: make([]T, d.Inner)}
}

func assertGrads(t *testing.T, want, got SSMGrads[float64], tol float64, msg string) {
	t.Helper()
	assertClose(t, want.X, got.X, tol, msg+": dx")
	assertClose(t, want.Dt, got.Dt, tol, msg+": ddt")
	assertClose(t, want.A, got.A, tol, msg+": dA")
	assertClose(t, want.B, got.B, tol, msg+": dB")
	assertClose(t, want.C, got.C, tol, msg+": dC")
	assertClose(t, want.D, got.D, tol, msg+": dD")
}

func grads64(g SSMGrads[float32]) SSMGrads[float64] {
	return SSMGrads[float64]{X: to64(g.X), Dt: to64(g.Dt), A: to64(g.A), B: to64(g.B), C: to64(g.C), D: to64(g.D)}
}

func TestSelectiveScanMatchesReference(t *testing.T) {
	withThreads(t, func(t *testing.T) {
		for _, L := range []int{1, 7, 33, 127} {
			for _, c := range []struct {
				D, N     int
				skip, h0 bool
			}{{3, 4, true, false}, {20, 1, false, true}, {37, 5, true, true}, {20, 8, true, false}, {3, 16, false, true}} {
				d := SSMDims{Batch: 2, Len: L, Inner: c.D, State: c.N}
				rng := rand.New(rand.NewPCG(uint64(L), uint64(c.D)))
				in := randSSM(rng, d, c.skip, c.h0)
				g := normals(rng, d.Batch*L*d.Inner)
				wantY, hs, wantLast := refScan(in, d)
				wantG := refScanBackward(g, in, d, hs)
				if !c.skip {
					clear(wantG.D)
				}
				// Chunks that divide L and that don't, one step, and one chunk for all.
				for _, chunk := range []int{1, 4, 5, 64, L} {
					name := fmt.Sprintf("L=%d/D=%d/N=%d/chunk=%d", L, c.D, c.N, chunk)
					for _, segs := range []int{1, 2, 3} {
						y, last := make([]float64, len(wantY)), make([]float64, len(wantLast))
						ckpt := make([]float64, SSMCheckpointLen(d, chunk))
						ssmForward(y, ckpt, last, in, d, chunk, segs, ssmGo)
						assertClose(t, wantY, y, 1e-12, fmt.Sprintf("%s/segments=%d: y", name, segs))
						assertClose(t, wantLast, last, 1e-12, fmt.Sprintf("%s/segments=%d: final state", name, segs))
						if segs > 1 {
							continue
						}
						gr := newGrads[float64](d)
						SelectiveScanBackward(gr, g, ckpt, in, d, chunk)
						assertGrads(t, wantG, gr, 1e-11, name)
					}
				}
				// float32 on each path, default chunk: the float32 exp and float32 sums
				// round differently from the float64 reference; errors stay at 1e-4
				// of the values' scale on these lengths.
				in32, g32 := ssmTo32(in), to32(g)
				chunk := SSMChunk(L)
				for _, path := range ssmPaths(c.N) {
					name := fmt.Sprintf("L=%d/D=%d/N=%d float32 path %d", L, c.D, c.N, path)
					for _, segs := range []int{1, 3} {
						y32, ckpt32 := make([]float32, len(wantY)), make([]float32, SSMCheckpointLen(d, chunk))
						last32 := make([]float32, len(wantLast))
						ssmForward(y32, ckpt32, last32, in32, d, chunk, segs, path)
						assertClose(t, wantY, to64(y32), 1e-4, fmt.Sprintf("%s/segments=%d: y", name, segs))
						assertClose(t, wantLast, to64(last32), 1e-4, fmt.Sprintf("%s/segments=%d: final state", name, segs))
						gr32 := newGrads[float32](d)
						ssmBackward(gr32, g32, ckpt32, in32, d, chunk, path)
						assertGrads(t, wantG, grads64(gr32), 3e-4, name)
					}
				}
			}
		}
	})
}

// ssmPaths lists the paths the float32 kernels can take for state size n here.
func ssmPaths(n int) []ssmPath {
	if vecmath.AVX2FMA && n%8 == 0 {
		return []ssmPath{ssmGo, ssmAVX}
	}
	return []ssmPath{ssmGo}
}

func TestSelectiveScanGradCheck(t *testing.T) {
	for _, c := range []struct {
		d     SSMDims
		chunk int
	}{{SSMDims{1, 1, 1, 1}, 1}, {SSMDims{2, 5, 3, 2}, 2}, {SSMDims{1, 9, 2, 3}, 4}} {
		rng := rand.New(rand.NewPCG(uint64(c.d.Len), 17))
		in := randSSM(rng, c.d, true, false)
		d := c.d
		x := ad.FromFloat64(in.X, d.Batch, d.Len, d.Inner)
		dt := ad.FromFloat64(in.Dt, d.Batch, d.Len, d.Inner)
		A := ad.FromFloat64(in.A, d.Inner, d.State)
		B := ad.FromFloat64(in.B, d.Batch, d.Len, d.State)
		C := ad.FromFloat64(in.C, d.Batch, d.Len, d.State)
		D := ad.FromFloat64(in.D, d.Inner)
		err := ad.GradCheck{Seed: 3}.Check(func(v []*ad.Tensor) *ad.Tensor {
			return SelectiveScan(v[0], v[1], v[2], v[3], v[4], v[5], SSMOptions{Chunk: c.chunk})
		}, x, dt, A, B, C, D)
		assert.NoError(t, err, "%v chunk %d", d, c.chunk)
		err = ad.GradCheck{Seed: 4}.Check(func(v []*ad.Tensor) *ad.Tensor {
			return SelectiveScan(v[0], v[1], v[2], v[3], v[4], nil, SSMOptions{})
		}, x, dt, A, B, C)
		assert.NoError(t, err, "%v without D", d)
	}
}

func TestSelectiveScanStepAndContinuation(t *testing.T) {
	d := SSMDims{Batch: 2, Len: 11, Inner: 19, State: 3}
	rng := rand.New(rand.NewPCG(9, 9))
	in := randSSM(rng, d, true, true)
	wantY, _, wantLast := refScan(in, d)
	B, L, D, N := d.Batch, d.Len, d.Inner, d.State

	// One step at a time.
	h := append([]float64(nil), in.H0...)
	y := make([]float64, B*D)
	xt, dtt, bt, ct := make([]float64, B*D), make([]float64, B*D), make([]float64, B*N), make([]float64, B*N)
	for tt := range L {
		for b := range B {
			copy(xt[b*D:(b+1)*D], in.X[(b*L+tt)*D:])
			copy(dtt[b*D:(b+1)*D], in.Dt[(b*L+tt)*D:])
			copy(bt[b*N:(b+1)*N], in.B[(b*L+tt)*N:])
			copy(ct[b*N:(b+1)*N], in.C[(b*L+tt)*N:])
		}
		SelectiveScanStep(y, h, xt, dtt, in.A, bt, ct, in.D, B, D, N)
		for b := range B {
			assertClose(t, wantY[(b*L+tt)*D:(b*L+tt+1)*D], y[b*D:(b+1)*D], 1e-12, fmt.Sprintf("step %d", tt))
		}
	}
	assertClose(t, wantLast, h, 1e-12, "state after the steps")

	// Two scans, the second starting from the first's final state (tensors).
	const cut = 4
	part := func(s []float64, width, t0, t1 int) *ad.Tensor {
		out := make([]float64, 0, B*(t1-t0)*width)
		for b := range B {
			out = append(out, s[(b*L+t0)*width:(b*L+t1)*width]...)
		}
		return ad.FromFloat64(out, B, t1-t0, width)
	}
	mid := ad.Zeros(ad.Float64, B, D, N)
	end := ad.Zeros(ad.Float64, B, D, N)
	A, Dk := ad.FromFloat64(in.A, D, N), ad.FromFloat64(in.D, D)
	y1 := SelectiveScan(part(in.X, D, 0, cut), part(in.Dt, D, 0, cut), A, part(in.B, N, 0, cut), part(in.C, N, 0, cut), Dk,
		SSMOptions{H0: ad.FromFloat64(in.H0, B, D, N), Final: mid})
	y2 := SelectiveScan(part(in.X, D, cut, L), part(in.Dt, D, cut, L), A, part(in.B, N, cut, L), part(in.C, N, cut, L), Dk,
		SSMOptions{H0: mid, Final: end, Chunk: 3})
	assertClose(t, part(wantY, D, 0, cut).Float64s(), y1.Float64s(), 1e-12, "first part")
	assertClose(t, part(wantY, D, cut, L).Float64s(), y2.Float64s(), 1e-12, "second part")
	assertClose(t, wantLast, end.Float64s(), 1e-12, "final state")
}

func TestSelectiveScanEmptyAndErrors(t *testing.T) {
	for _, d := range []SSMDims{{0, 5, 3, 2}, {2, 0, 3, 2}, {2, 5, 0, 2}, {2, 5, 3, 0}} {
		in := randSSM(rand.New(rand.NewPCG(1, 1)), d, true, false)
		y := make([]float64, d.Batch*d.Len*d.Inner)
		ckpt := make([]float64, SSMCheckpointLen(d, 4))
		SelectiveScanForward(y, ckpt, nil, in, d, 4)
		gr := newGrads[float64](d)
		SelectiveScanBackward(gr, y, ckpt, in, d, 4)
		assert.Equal(t, make([]float64, len(gr.A)), gr.A, "%v", d)
	}
	x := ad.Zeros(ad.Float64, 2, 3, 4)
	A := ad.Zeros(ad.Float64, 4, 5)
	BC := ad.Zeros(ad.Float64, 2, 3, 5)
	require.NotPanics(t, func() { SelectiveScan(x, x, A, BC, BC, nil, SSMOptions{}) })
	assert.PanicsWithValue(t, "advanced: selective_scan: B and C must be (batch, length, state): x float64 [2 3 4], dt float64 [2 3 4], A float64 [4 5], B float64 [2 3 5], C float64 [2 3 4], D none, h0 none, final none",
		func() { SelectiveScan(x, x, A, BC, x, nil, SSMOptions{}) })
	assert.Panics(t, func() { SelectiveScan(x, x, A, BC, BC, ad.Zeros(ad.Float64, 5), SSMOptions{}) })
	assert.Panics(t, func() { SelectiveScan(x, x, A, BC, BC, nil, SSMOptions{H0: ad.Zeros(ad.Float64, 2, 4)}) })
	assert.Panics(t, func() { SelectiveScan(x, ad.Zeros(ad.Float32, 2, 3, 4), A, BC, BC, nil, SSMOptions{}) })
	tp := ad.NewTape()
	defer tp.Release()
	assert.Panics(t, func() { SelectiveScan(x, x, A, BC, BC, nil, SSMOptions{H0: tp.Watch(ad.Zeros(ad.Float64, 2, 4, 5))}) })
}

func TestExp32(t *testing.T) {
	worst := 0.0
	for x := float32(-87); x <= 88; x += 0.001 {
		want := math.Exp(float64(x))
		rel := math.Abs(float64(exp32(x))-want) / want
		worst = math.Max(worst, rel)
	}
	assert.Less(t, worst, 4e-7, "relative error (float32 eps is 6e-8)")
	assert.Equal(t, float32(1), exp32(0))
	assert.Equal(t, float32(0), exp32(-100))
	assert.Equal(t, float32(0), exp32(float32(math.Inf(-1))))
	assert.True(t, math.IsInf(float64(exp32(100)), 1))
	assert.True(t, math.IsNaN(float64(exp32(float32(math.NaN())))))
}

// The assembly's exponential (through the recomputation kernel with a zero state
// and zero input: e = exp(dt·a)) against math.Exp, edge cases included.
func TestExpAVX(t *testing.T) {
	if !vecmath.AVX2FMA {
		t.Skip("no AVX2+FMA")
	}
	var a []float32
	for x := float32(-87); x <= 88; x += 0.01 {
		a = append(a, x)
	}
	inf := float32(math.Inf(1))
	a = append(a, 0, -100, -inf, 100, inf, float32(math.NaN()))
	for len(a)%8 != 0 {
		a = append(a, 0)
	}
	n := len(a)
	e, zero, cur := make([]float32, n), make([]float32, n), make([]float32, n)
	ssmRecBlock(zero, cur, e, a, zero, []float32{1}, []float32{0}, n, ssmAVX)
	worst := 0.0
	for i, x := range a {
		want := math.Exp(float64(x))
		switch {
		case math.IsNaN(float64(x)):
			assert.True(t, math.IsNaN(float64(e[i])), "exp(NaN)")
		case x < -87:
			assert.Less(t, e[i], float32(2e-38), "exp(%g) underflows", x)
		case x > 88:
			assert.Equal(t, float32(math.Exp(88)), e[i], "exp(%g) saturates", x)
		default:
			worst = math.Max(worst, math.Abs(float64(e[i])-want)/want)
		}
	}
	assert.Less(t, worst, 4e-7, "relative error")
}
