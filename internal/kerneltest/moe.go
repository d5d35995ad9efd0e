package kerneltest

import (
	"fmt"
	"math"
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
	for _, tokens := range []int{1, 7, 33, 127} {
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
	kernels := []metal.MatMulKernel{metal.MatMulTiled}
	if d.Facts().SimdgroupMatrix() {
		kernels = append(kernels, metal.MatMulSimdgroup)
	}
	for _, kern := range kernels {
		for _, offsets := range [][]int{{0, 1}, {0, 5, 5, 12, 40}, {0, 0, 33}, {0, 0, 0, 0}, {0, 7, 7, 134}, {0, 127, 127, 127}} {
			groupedCase(t, d, kern, r, offsets, 37, 21)
		}
		groupedCase(t, d, kern, r, []int{0, 3, 20, 20, 33}, 1, 17)
		groupedCase(t, d, kern, r, []int{0, 16, 33}, 16, 1)
		groupedCase(t, d, kern, r, []int{0, 40, 71}, 33, 64)
	}
	b := Empty(t, d, 4)
	assert.Error(t, metal.RunMoECombine(d, b, b, b, b, 1, 0, 1, 1), "k = 0")
	assert.Error(t, metal.RunMoEDispatch(d, b, b, b, 1, 2, 4), "xs too small")
	release(b)
	require.NoError(t, d.Synchronize())
}

// groupedCase checks the experts' grouped products, bias, GELU and their
// gradients on groups of rows (some empty) against float64 references.
func groupedCase(t *testing.T, d metal.Compute, kern metal.MatMulKernel, r *rand.Rand, offsets []int, in, out int) {
	E, rows := len(offsets)-1, offsets[len(offsets)-1]
	what := fmt.Sprintf("grouped %s offsets=%v in=%d out=%d", kern, offsets, in, out)
	x, w, bias, g := Random(r, rows*in+1, -1, 1), Random(r, E*out*in, -1, 1), Random(r, E*out, -1, 1), Random(r, rows*out+1, -1, 1)
	expert := make([]int32, rows+1)
	off32 := make([]int32, E+1)
	for e := range E {
		for i := offsets[e]; i < offsets[e+1]; i++ {
			expert[i] = int32(e)
		}
		off32[e+1] = int32(offsets[e+1])
	}
	xb, wb, bb, gb := Upload(t, d, x), Upload(t, d, w), Upload(t, d, bias), Upload(t, d, g)
	eb, ob := UploadInt32(t, d, expert), UploadInt32(t, d, off32)
	y, deriv := Empty(t, d, rows*out+1), Empty(t, d, rows*out+1)
	dx, dw, db := Empty(t, d, rows*in+1), Empty(t, d, E*out*in), Empty(t, d, E*out)
	require.NoError(t, metal.RunGatherMMWith(d, kern, y, xb, wb, ob, bb, deriv, rows, in, out, E, true), what)
	require.NoError(t, metal.RunGatherMMBackwardWith(d, kern, dx, dw, gb, xb, wb, ob, rows, in, out, E), what)
	require.NoError(t, metal.RunMoEGroupColSum(d, db, gb, ob, rows, out, E), what)

	pre := make([]float64, rows*out)
	advanced.GroupedMatMulForward(pre, f64(x[:rows*in]), f64(w), offsets, in, out)
	wantY, wantD := make([]float64, rows*out), make([]float64, rows*out)
	for i := range rows {
		for c := range out {
			v := pre[i*out+c] + float64(bias[int(expert[i])*out+c])
			phi := 0.5 * math.Erfc(-v/math.Sqrt2)
			wantY[i*out+c] = v * phi
			wantD[i*out+c] = phi + v*math.Exp(-0.5*v*v)/math.Sqrt(2*math.Pi)
		}
	}
	wantDX, wantDW, wantDB := make([]float64, rows*in), make([]float64, E*out*in), make([]float64, E*out)
	advanced.GroupedMatMulBackward(wantDX, wantDW, f64(g[:rows*out]), f64(x[:rows*in]), f64(w), offsets, in, out)
	for i := range rows {
		for c := range out {
			wantDB[int(expert[i])*out+c] += float64(g[i*out+c])
		}
	}
	AssertClose(t, Download(y, rows*out), wantY, constant(rows*out, float64(in)), what+" y")
	AssertClose(t, Download(deriv, rows*out), wantD, constant(rows*out, float64(in)), what+" GELU'")
	AssertClose(t, Download(dx, rows*in), wantDX, constant(rows*in, float64(out)), what+" dx")
	AssertClose(t, Download(dw, E*out*in), wantDW, constant(E*out*in, float64(rows)), what+" dw")
	AssertClose(t, Download(db, E*out), wantDB, constant(E*out, float64(rows)), what+" db")
	release(xb, wb, bb, gb, eb, ob, y, deriv, dx, dw, db)
}
