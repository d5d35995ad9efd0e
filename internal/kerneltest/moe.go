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

// randomRouting returns, for tokens × k slots with about one pair in five
// dropped, the row of each kept pair (pos, −1 when dropped; rows in a shuffled,
// expert-like order) and each row's token.
func randomRouting(r *rand.Rand, tokens, k int) (pos, token []int32) {
	pos = make([]int32, tokens*k)
	var pairs []int
	for i := range pos {
		pos[i] = -1
		if r.IntN(5) != 0 {
			pairs = append(pairs, i)
		}
	}
	r.Shuffle(len(pairs), func(a, b int) { pairs[a], pairs[b] = pairs[b], pairs[a] })
	token = make([]int32, len(pairs))
	for row, i := range pairs {
		pos[i] = int32(row)
		token[row] = int32(i / k)
	}
	return pos, token
}

// MoE checks the dispatch and combine kernels, forward and backward, against
// package advanced's kernels: the gathers exactly, the sums within float32
// tolerance.
func MoE(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(71, 72))
	for _, tokens := range []int{1, 7, 33} {
		for _, k := range []int{1, 2, 3} {
			for _, dim := range []int{1, 7, 70} {
				what := fmt.Sprintf("moe tokens=%d k=%d dim=%d", tokens, k, dim)
				pos, token := randomRouting(r, tokens, k)
				rows := len(token)
				x, dxs := Random(r, tokens*dim, -1, 1), Random(r, rows*dim, -1, 1)
				ys, gates, dy := Random(r, rows*dim, -1, 1), Random(r, tokens*k, 0, 1), Random(r, tokens*dim, -1, 1)
				pb, tb := UploadInt32(t, d, pos), UploadInt32(t, d, append(token, 0)) // never an empty buffer
				xb, dxsb, ysb, gb, dyb := Upload(t, d, x), Upload(t, d, append(dxs, 0)), Upload(t, d, append(ys, 0)), Upload(t, d, gates), Upload(t, d, dy)
				xs, dx, y := Empty(t, d, rows*dim+1), Empty(t, d, tokens*dim), Empty(t, d, tokens*dim)
				dys, dg := Empty(t, d, rows*dim+1), Empty(t, d, tokens*k)
				require.NoError(t, metal.RunMoEDispatch(d, xs, xb, tb, tokens, rows, dim), what)
				require.NoError(t, metal.RunMoEDispatchBackward(d, dx, dxsb, pb, tokens, k, rows, dim), what)
				require.NoError(t, metal.RunMoECombine(d, y, ysb, gb, pb, tokens, k, rows, dim), what)
				require.NoError(t, metal.RunMoECombineBackward(d, dys, dg, dyb, ysb, gb, pb, tokens, k, rows, dim), what)

				wantXs, wantDX, wantY := make([]float64, rows*dim), make([]float64, tokens*dim), make([]float64, tokens*dim)
				wantDys, wantDG := make([]float64, rows*dim), make([]float64, tokens*k)
				advanced.DispatchForward(wantXs, f64(x), token, dim)
				advanced.DispatchBackward(wantDX, f64(dxs), pos, k, dim)
				advanced.CombineForward(wantY, f64(ys), f64(gates), pos, k, dim)
				advanced.CombineBackward(wantDys, wantDG, f64(dy), f64(ys), f64(gates), pos, k, dim)
				assert.Equal(t, wantXs, f64(Download(xs, rows*dim)), what+" dispatch")
				AssertClose(t, Download(dx, tokens*dim), wantDX, constant(tokens*dim, float64(k)), what+" dispatch backward")
				AssertClose(t, Download(y, tokens*dim), wantY, constant(tokens*dim, float64(k)), what+" combine")
				AssertClose(t, Download(dys, rows*dim), wantDys, nil, what+" combine dys")
				AssertClose(t, Download(dg, tokens*k), wantDG, constant(tokens*k, float64(dim)), what+" combine dgates")
				release(pb, tb, xb, dxsb, ysb, gb, dyb, xs, dx, y, dys, dg)
			}
		}
	}
	b := Empty(t, d, 4)
	assert.Error(t, metal.RunMoECombine(d, b, b, b, b, 1, 0, 1, 1), "k = 0")
	assert.Error(t, metal.RunMoEDispatch(d, b, b, b, 1, 2, 4), "xs too small")
	release(b)
	require.NoError(t, d.Synchronize())
}
