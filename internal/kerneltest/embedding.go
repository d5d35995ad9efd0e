package kerneltest

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// Embedding checks the gather and the scatter-add gradient against autodiff's
// kernels in float32, bit for bit: the gather copies, and the gradient adds each
// table row's tokens in token order, as the sequential scatter-add does. Ids
// repeat (few vocabulary rows, many tokens) and some rows get no token.
func Embedding(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(29, 30))
	for _, vocab := range Sizes {
		for _, tokens := range Sizes {
			for _, dim := range []int{1, 7, 33, 300} {
				table := Random(r, vocab*dim, -1, 1)
				ids := make([]int32, tokens)
				for i := range ids {
					ids[i] = int32(r.IntN(vocab))
				}
				dout := Random(r, tokens*dim, -1, 1)
				tb, ib, gb := Upload(t, d, table), UploadInt32(t, d, ids), Upload(t, d, dout)
				out := Empty(t, d, tokens*dim)
				require.NoError(t, metal.RunEmbedding(d, out, tb, ib, tokens, vocab, dim))
				want := make([]float32, tokens*dim)
				autodiff.GatherKernel(want, table, ids, 1, vocab, dim)
				what := fmt.Sprintf("embedding V=%d N=%d D=%d", vocab, tokens, dim)
				assert.Equal(t, want, Download(out, tokens*dim), what)

				for _, acc := range []bool{false, true} {
					init := Random(r, vocab*dim, -1, 1)
					grad := Upload(t, d, init)
					require.NoError(t, metal.RunEmbeddingBackward(d, grad, gb, ib, tokens, vocab, dim, acc))
					want := make([]float32, vocab*dim)
					if acc {
						copy(want, init)
					}
					autodiff.ScatterAddKernel(want, dout, ids, 1, vocab, dim)
					assert.Equal(t, want, Download(grad, vocab*dim), "%s backward accumulate=%v", what, acc)
					grad.Release()
				}
				release(tb, ib, gb, out)
			}
		}
	}
	require.NoError(t, d.Synchronize())
}
