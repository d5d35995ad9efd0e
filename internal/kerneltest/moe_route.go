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

// routerLogits returns rows × E logits with ties: values on a coarse grid, so
// that the tie-breaking of the top-k is exercised.
func routerLogits(r *rand.Rand, rows, E int) []float32 {
	xs := make([]float32, rows*E)
	for i := range xs {
		xs[i] = float32(r.IntN(7)-3) * 0.75
	}
	return xs
}

var routerModes = []struct {
	score advanced.RouterScore
	norm  advanced.GateNorm
	mode  metal.RouterMode
}{
	{advanced.ScoreSoftmax, advanced.GateSoftmaxTopK, 0},
	{advanced.ScoreSoftmax, advanced.GateRenormalize, metal.RouterRenormalize},
	{advanced.ScoreSoftmax, advanced.GateScores, metal.RouterScores},
	{advanced.ScoreSigmoid, advanced.GateSoftmaxTopK, metal.RouterSigmoid},
	{advanced.ScoreSigmoid, advanced.GateRenormalize, metal.RouterSigmoid | metal.RouterRenormalize},
	{advanced.ScoreSigmoid, advanced.GateScores, metal.RouterSigmoid | metal.RouterScores},
}

// MoERouting checks the routing kernels against package advanced's Go kernels
// on odd shapes (tokens 0, 1, 7, 33, 127; experts 1, 3, 8; k 1, 2; every score
// and gate norm; with and without capacity drops): the top-k, the gates and
// their gradient, the auxiliary losses' sums and gradients, the counting sort.
func MoERouting(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(73, 74))
	for _, rows := range []int{0, 1, 7, 33, 127} {
		for _, E := range []int{1, 3, 8} {
			for _, k := range []int{1, 2} {
				if k > E {
					continue
				}
				for _, m := range routerModes {
					routerCase(t, d, r, rows, E, k, m.score, m.norm, m.mode)
				}
				for _, capacity := range []int{0, 1, max(1, rows*k/E), rows * k} {
					sortCase(t, d, r, rows, E, k, capacity)
				}
			}
		}
	}
	b := Empty(t, d, 4)
	assert.Error(t, metal.RunRouterGates(d, b, b, b, 1, 2, 3, 0), "k > experts")
	assert.Error(t, metal.RunRouteSort(d, b, b, b, b, 1, 1, metal.RouteSortMaxExperts+1, 0), "too many experts")
	release(b)
	require.NoError(t, d.Synchronize())
}

func routerCase(t *testing.T, d metal.Compute, r *rand.Rand, rows, E, k int, score advanced.RouterScore, norm advanced.GateNorm, mode metal.RouterMode) {
	what := fmt.Sprintf("router rows=%d E=%d k=%d %s/%s", rows, E, k, score, norm)
	logits, dg := routerLogits(r, rows, E), Random(r, rows*k, -1, 1)
	lb, dgb := Upload(t, d, append(logits, 0)), Upload(t, d, append(dg, 0))
	gates, experts, dl := Empty(t, d, rows*k+1), Empty(t, d, rows*k+1), Empty(t, d, rows*E+1)
	require.NoError(t, metal.RunRouterGates(d, gates, experts, lb, rows, E, k, mode), what)
	require.NoError(t, metal.RunRouterGatesBackward(d, dl, dgb, gates, experts, lb, rows, E, k, mode), what)

	wantG, wantE, wantDL := make([]float64, rows*k), make([]int32, rows*k), make([]float64, rows*E)
	advanced.RouterGatesForward(wantG, wantE, f64(logits), rows, E, k, score, norm)
	advanced.RouterGatesBackward(wantDL, f64(dg), wantG, wantE, f64(logits), rows, E, k, score, norm)
	assert.Equal(t, wantE, download[int32](experts, rows*k), what+" experts")
	AssertClose(t, Download(gates, rows*k), wantG, constant(rows*k, 1), what+" gates")
	AssertClose(t, Download(dl, rows*E), wantDL, constant(rows*E, float64(k)), what+" dlogits")

	// The auxiliary losses: the sums, then each gradient for g = 0.7.
	sums, lse, probs := Empty(t, d, 2*E+1), Empty(t, d, rows+1), Empty(t, d, rows*E+1)
	g := Upload(t, d, []float32{0.7})
	dlb, dlz := Empty(t, d, rows*E+1), Empty(t, d, rows*E+1)
	require.NoError(t, metal.RunRouterStats(d, sums, lse, probs, lb, experts, rows, E, k, mode), what)
	require.NoError(t, metal.RunLoadBalanceBackward(d, dlb, g, lb, sums, rows, E, mode), what)
	require.NoError(t, metal.RunRouterZBackward(d, dlz, g, lb, lse, rows, E), what)
	frac, prob := make([]float64, E), make([]float64, E)
	wantLse := make([]float64, rows)
	if rows > 0 {
		advanced.LoadBalanceForward(f64(logits), wantE, rows, E, k, score, frac, prob)
		advanced.RouterZForward(f64(logits), rows, E, wantLse)
	}
	got := Download(sums, 2*E+1)
	for e := range E {
		assert.InDelta(t, prob[e]*float64(rows), got[e], 1e-5*float64(rows+1), what+" Σp")
		assert.InDelta(t, frac[e]*float64(rows), got[E+e], 0, what+" routed")
	}
	var z float64
	for _, v := range wantLse {
		z += v * v
	}
	assert.InDelta(t, z, got[2*E], 1e-5*(z+1), what+" Σlse²")
	AssertClose(t, Download(lse, rows), wantLse, constant(rows, 1), what+" lse")
	wantLB, wantZ := make([]float64, rows*E), make([]float64, rows*E)
	if rows > 0 {
		advanced.LoadBalanceBackward(wantLB, 0.7, f64(logits), frac, rows, E, score)
		advanced.RouterZBackward(wantZ, 0.7, f64(logits), wantLse, rows, E)
	}
	AssertClose(t, Download(dlb, rows*E), wantLB, constant(rows*E, 1), what+" load-balance gradient")
	AssertClose(t, Download(dlz, rows*E), wantZ, constant(rows*E, 1), what+" z-loss gradient")
	release(lb, dgb, gates, experts, dl, sums, lse, probs, g, dlb, dlz)
}

func sortCase(t *testing.T, d metal.Compute, r *rand.Rand, tokens, E, k, capacity int) {
	what := fmt.Sprintf("sort tokens=%d E=%d k=%d capacity=%d", tokens, E, k, capacity)
	ids := make([]int32, tokens*k)
	for n := range tokens { // k distinct experts per token, skewed towards expert 0
		for j := range k {
			for {
				e := int32(min(r.IntN(E+2), E-1))
				if r.IntN(2) == 0 {
					e = int32(r.IntN(E))
				}
				dup := false
				for _, o := range ids[n*k : n*k+j] {
					dup = dup || o == e
				}
				if !dup {
					ids[n*k+j] = e
					break
				}
			}
		}
	}
	eb := UploadInt32(t, d, append(ids, 0))
	pos, token, info := Empty(t, d, tokens*k+1), Empty(t, d, tokens*k+1), Empty(t, d, 2*E+2)
	require.NoError(t, metal.RunRouteSort(d, pos, token, info, eb, tokens, k, E, capacity), what)
	want := advanced.NewRouting(ids, tokens, k, E, capacity)
	gotInfo := download[int32](info, 2*E+2)
	offsets := make([]int, E+1)
	routed := make([]int, E)
	for e := range E + 1 {
		offsets[e] = int(gotInfo[e])
	}
	for e := range E {
		routed[e] = int(gotInfo[E+1+e])
	}
	assert.Equal(t, want.Offsets, offsets, what+" offsets")
	assert.Equal(t, want.Routed, routed, what+" routed")
	assert.Equal(t, want.Dropped, int(gotInfo[2*E+1]), what+" dropped")
	assert.Equal(t, want.Pos, download[int32](pos, tokens*k), what+" pos")
	assert.Equal(t, want.Token, download[int32](token, want.Rows()), what+" token")
	release(eb, pos, token, info)
}
