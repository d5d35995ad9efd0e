package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/attention"
	"github.com/mlxtrain/mlxtrain/metal"
)

// attnRef is attention computed plainly in float64 with the probabilities
// materialised, forward and backward, and the scales the float32 errors of each
// result grow with: sums of the magnitudes of the terms that make it up.
type attnRef struct {
	out, lse, dq, dk, dv                          []float64
	outScale, lseScale, dqScale, dkScale, dvScale []float64
}

// attnSpan is the keys [lo, hi) query row i attends (attention.Options).
func attnSpan(a metal.Attention, i int) (lo, hi int) {
	p := a.KLen - a.QLen + i
	lo, hi = 0, a.KLen
	if a.Causal {
		hi = min(hi, p+1)
	}
	if a.Window > 0 {
		lo = max(lo, p-a.Window+1)
		if !a.Causal {
			hi = min(hi, p+a.Window)
		}
	}
	lo = min(lo, a.KLen)
	return lo, max(hi, lo)
}

// at returns the offset of (b, s, h) in a tensor of the layout.
func attnAt(a metal.Attention, seq, heads, dim, b, s, h int) int {
	if a.Layout == metal.LayoutBHSD {
		return ((b*heads+h)*seq + s) * dim
	}
	return ((b*seq+s)*heads + h) * dim
}

func newAttnRef(a metal.Attention, q, k, v, dout []float64) attnRef {
	D, DV := a.HeadDim, a.VDim
	scale := float64(a.Scale)
	if scale == 0 {
		scale = 1 / math.Sqrt(float64(D))
	}
	nq, nk := a.Batch*a.QLen*a.QHeads, a.Batch*a.KLen*a.KVHeads
	r := attnRef{
		out: make([]float64, nq*DV), lse: make([]float64, nq), dq: make([]float64, nq*D),
		dk: make([]float64, nk*D), dv: make([]float64, nk*DV),
		outScale: make([]float64, nq*DV), lseScale: make([]float64, nq), dqScale: make([]float64, nq*D),
		dkScale: make([]float64, nk*D), dvScale: make([]float64, nk*DV),
	}
	group := a.QHeads / a.KVHeads
	s := make([]float64, a.KLen)
	pr := make([]float64, a.KLen)
	dp := make([]float64, a.KLen)
	for b := 0; b < a.Batch; b++ {
		for h := 0; h < a.QHeads; h++ {
			hk := h / group
			for i := 0; i < a.QLen; i++ {
				qo := attnAt(a, a.QLen, a.QHeads, D, b, i, h)
				oo := attnAt(a, a.QLen, a.QHeads, DV, b, i, h)
				row := (b*a.QHeads+h)*a.QLen + i
				lo, hi := attnSpan(a, i)
				if lo == hi {
					r.lse[row] = math.Inf(-1)
					continue
				}
				m, smax := math.Inf(-1), 0.0
				for j := lo; j < hi; j++ {
					ko := attnAt(a, a.KLen, a.KVHeads, D, b, j, hk)
					dot := 0.0
					for c := 0; c < D; c++ {
						dot += q[qo+c] * k[ko+c]
					}
					s[j] = dot * scale
					m = math.Max(m, s[j])
					smax = math.Max(smax, math.Abs(s[j]))
				}
				sum := 0.0
				for j := lo; j < hi; j++ {
					pr[j] = math.Exp(s[j] - m)
					sum += pr[j]
				}
				r.lse[row] = m + math.Log(sum)
				r.lseScale[row] = smax + 1
				delta := 0.0
				for j := lo; j < hi; j++ {
					pr[j] /= sum
					vo := attnAt(a, a.KLen, a.KVHeads, DV, b, j, hk)
					dp[j] = 0
					for c := 0; c < DV; c++ {
						r.out[oo+c] += pr[j] * v[vo+c]
						r.outScale[oo+c] += pr[j] * math.Abs(v[vo+c])
						dp[j] += dout[oo+c] * v[vo+c]
					}
					delta += pr[j] * dp[j]
				}
				for j := lo; j < hi; j++ {
					ko := attnAt(a, a.KLen, a.KVHeads, D, b, j, hk)
					vo := attnAt(a, a.KLen, a.KVHeads, DV, b, j, hk)
					ds := pr[j] * (dp[j] - delta)
					dsAbs := pr[j] * (math.Abs(dp[j]) + math.Abs(delta))
					for c := 0; c < D; c++ {
						r.dq[qo+c] += scale * ds * k[ko+c]
						r.dqScale[qo+c] += scale * dsAbs * math.Abs(k[ko+c])
						r.dk[ko+c] += scale * ds * q[qo+c]
						r.dkScale[ko+c] += scale * dsAbs * math.Abs(q[qo+c])
					}
					for c := 0; c < DV; c++ {
						r.dv[vo+c] += pr[j] * dout[oo+c]
						r.dvScale[vo+c] += pr[j] * math.Abs(dout[oo+c])
					}
				}
			}
		}
	}
	return r
}

// attnCases lists the shapes and masks FlashAttention checks.
func attnCases() []metal.Attention {
	var cases []metal.Attention
	masks := []struct {
		causal bool
		window int
	}{{false, 0}, {true, 0}, {true, 4}, {false, 3}}
	for _, T := range []int{1, 7, 33} {
		for _, D := range []int{8, 32, 64} {
			for _, ratio := range []int{1, 2} {
				for _, m := range masks {
					cases = append(cases, metal.Attention{Batch: 2, QLen: T, KLen: T, QHeads: 2 * ratio, KVHeads: 2,
						HeadDim: D, VDim: D, Causal: m.causal, Window: m.window})
				}
			}
		}
	}
	return append(cases,
		// queries at the end of longer keys (decoding with a cache), and more
		// queries than keys (causal rows that see nothing)
		metal.Attention{Batch: 1, QLen: 7, KLen: 33, QHeads: 4, KVHeads: 2, HeadDim: 32, VDim: 32, Causal: true},
		metal.Attention{Batch: 1, QLen: 7, KLen: 33, QHeads: 2, KVHeads: 1, HeadDim: 8, VDim: 8, Window: 5},
		metal.Attention{Batch: 1, QLen: 33, KLen: 7, QHeads: 2, KVHeads: 2, HeadDim: 32, VDim: 32, Causal: true},
		metal.Attention{Batch: 1, QLen: 33, KLen: 7, QHeads: 2, KVHeads: 1, HeadDim: 8, VDim: 8, Causal: true, Window: 2},
		// value dim unlike the key dim, BHSD, the largest head dim, an explicit scale, MQA
		metal.Attention{Batch: 2, QLen: 7, KLen: 7, QHeads: 2, KVHeads: 1, HeadDim: 32, VDim: 8, Causal: true},
		metal.Attention{Batch: 1, QLen: 33, KLen: 33, QHeads: 2, KVHeads: 2, HeadDim: 8, VDim: 64, Window: 6},
		metal.Attention{Batch: 2, QLen: 33, KLen: 33, QHeads: 4, KVHeads: 2, HeadDim: 32, VDim: 32, Causal: true, Layout: metal.LayoutBHSD},
		metal.Attention{Batch: 1, QLen: 33, KLen: 33, QHeads: 2, KVHeads: 1, HeadDim: 128, VDim: 128, Causal: true, Window: 9},
		metal.Attention{Batch: 1, QLen: 33, KLen: 40, QHeads: 3, KVHeads: 1, HeadDim: 64, VDim: 64, Scale: 0.3},
	)
}

// FlashAttention checks the flash forward (output and lse) and backward (dq, dk,
// dv) against a plain float64 reference with materialised probabilities, which
// is in turn checked against the CPU package attention's SDPA (the same
// conventions): T in {1, 7, 33}, head dims 8 to 128, GQA ratios 1 and 2, causal
// or not, sliding windows, Tq ≠ Tk, BSHD and BHSD. Inputs are uniform in [−1, 1).
func FlashAttention(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(35, 36))
	for _, a := range attnCases() {
		what := fmt.Sprintf("%+v", a)
		nq, nk := a.Batch*a.QLen*a.QHeads, a.Batch*a.KLen*a.KVHeads
		q, k := Random(r, nq*a.HeadDim, -1, 1), Random(r, nk*a.HeadDim, -1, 1)
		v, dout := Random(r, nk*a.VDim, -1, 1), Random(r, nq*a.VDim, -1, 1)
		q64, k64, v64, dout64 := f64(q), f64(k), f64(v), f64(dout)
		ref := newAttnRef(a, q64, k64, v64, dout64)
		checkAgainstSDPA(t, a, ref, q64, k64, v64, dout64)

		qb, kb, vb, gb := Upload(t, d, q), Upload(t, d, k), Upload(t, d, v), Upload(t, d, dout)
		out, lse := Empty(t, d, nq*a.VDim), Empty(t, d, nq)
		dq, dk, dv := Empty(t, d, nq*a.HeadDim), Empty(t, d, nk*a.HeadDim), Empty(t, d, nk*a.VDim)
		require.NoError(t, metal.RunFlashAttention(d, out, lse, qb, kb, vb, a), what)
		require.NoError(t, metal.RunFlashAttentionBackward(d, dq, dk, dv, qb, kb, vb, out, gb, lse, a), what)
		AssertClose(t, Download(out, nq*a.VDim), ref.out, ref.outScale, what+" out")
		assertLSE(t, Download(lse, nq), ref.lse, ref.lseScale, what+" lse")
		AssertClose(t, Download(dq, nq*a.HeadDim), ref.dq, ref.dqScale, what+" dq")
		AssertClose(t, Download(dk, nk*a.HeadDim), ref.dk, ref.dkScale, what+" dk")
		AssertClose(t, Download(dv, nk*a.VDim), ref.dv, ref.dvScale, what+" dv")
		release(qb, kb, vb, gb, out, lse, dq, dk, dv)
		if a.Layout == metal.LayoutBSHD && a.VDim == a.HeadDim {
			flashKV(t, d, a, q, k, v, ref, what)
		}
	}
	require.NoError(t, d.Synchronize())
}

// flashKV checks metal.RunFlashAttentionKV: the keys and values of a in the
// storage of a KV cache (a capacity of KLen+3 rows per batch row, from element
// 5 on, the rest NaN) give the output of the packed ones.
func flashKV(t *testing.T, d metal.Compute, a metal.Attention, q, k, v []float32, ref attnRef, what string) {
	const off = 5
	row := a.KVHeads * a.HeadDim
	stride := (a.KLen + 3) * row
	ck, cv := nans(off+a.Batch*stride), nans(off+a.Batch*stride)
	for b := range a.Batch {
		copy(ck[off+b*stride:], k[b*a.KLen*row:(b+1)*a.KLen*row])
		copy(cv[off+b*stride:], v[b*a.KLen*row:(b+1)*a.KLen*row])
	}
	nq := a.Batch * a.QLen * a.QHeads
	qb, kb, vb := Upload(t, d, q), Upload(t, d, ck), Upload(t, d, cv)
	out, lse := Empty(t, d, nq*a.VDim), Empty(t, d, nq)
	require.NoError(t, metal.RunFlashAttentionKV(d, out, lse, qb, kb, vb, a, off, stride), what)
	AssertClose(t, Download(out, nq*a.VDim), ref.out, ref.outScale, what+" out from a cache's storage")
	assert.Error(t, metal.RunFlashAttentionKV(d, out, lse, qb, kb, vb, a, off, a.KLen*row-1), what+" rows overlapping")
	release(qb, kb, vb, out, lse)
}

func nans(n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(math.NaN())
	}
	return s
}

// checkAgainstSDPA asserts that the test's reference follows the conventions of
// the CPU package attention (positions, masks, GQA, layouts, empty rows).
func checkAgainstSDPA(t *testing.T, a metal.Attention, ref attnRef, q, k, v, dout []float64) {
	t.Helper()
	dims := attention.Dims{Batch: a.Batch, QLen: a.QLen, KLen: a.KLen, QHeads: a.QHeads, KVHeads: a.KVHeads, HeadDim: a.HeadDim, VDim: a.VDim}
	opt := attention.Options{Scale: float64(a.Scale), Causal: a.Causal, Window: a.Window, Layout: attention.BSHD}
	if a.Layout == metal.LayoutBHSD {
		opt.Layout = attention.BHSD
	}
	out := make([]float64, len(ref.out))
	attention.SDPAForward(out, q, k, v, dims, opt)
	dq, dk, dv := make([]float64, len(ref.dq)), make([]float64, len(ref.dk)), make([]float64, len(ref.dv))
	attention.SDPABackward(dq, dk, dv, q, k, v, dout, dims, opt)
	for _, c := range []struct {
		name      string
		got, want []float64
	}{{"out", ref.out, out}, {"dq", ref.dq, dq}, {"dk", ref.dk, dk}, {"dv", ref.dv, dv}} {
		for i := range c.want {
			if !assert.InDelta(t, c.want[i], c.got[i], 1e-9, "reference %s[%d] against SDPA for %+v", c.name, i, a) {
				break
			}
		}
	}
}

// assertLSE compares log-sum-exps, of which rows that see no key have −Inf.
func assertLSE(t *testing.T, got []float32, want, scale []float64, what string) {
	t.Helper()
	require.Len(t, got, len(want))
	g, w := make([]float32, 0, len(got)), make([]float64, 0, len(want))
	s := make([]float64, 0, len(want))
	for i := range want {
		if math.IsInf(want[i], -1) {
			assert.True(t, math.IsInf(float64(got[i]), -1), "%s: [%d] = %v, want -Inf", what, i, got[i])
			continue
		}
		g, w, s = append(g, got[i]), append(w, want[i]), append(s, scale[i])
	}
	AssertClose(t, g, w, s, what)
}
