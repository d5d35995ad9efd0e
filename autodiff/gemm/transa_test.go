package gemm

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/mlxtrain/mlxtrain/metal"
	"github.com/stretchr/testify/require"
)

// TestGemmTransposedAInPlace checks the AVX-512 kernels reading a transposed A in
// place (rows2AT), and B too (rows2ATB): the same bits as with A and B packed
// (directA off), and the reference's values, on weight-gradient shapes (several
// depth slices, m with 0 to 11 rows past the last full 12-row tile, column
// counts that pair up or not, padded leading dimensions, α ≠ 1, β ≠ 0) on 1, 2
// and 3 workers.
func TestGemmTransposedAInPlace(t *testing.T) {
	if !avx512Available() {
		t.Skip("no AVX-512 on this CPU")
	}
	withAVX512(t, true)
	var cases []gemmCase
	for _, s := range [][3]int{{1, 32, 7}, {7, 64, 33}, {33, 32, 127}, {127, 96, 600}, {144, 64, 514},
		{150, 128, 1030}, {6, 32, 1}, {128, 48, 40}, {0, 32, 9}, {12, 32, 0}, {293, 160, 300},
		{2, 32, 5}, {14, 64, 9}, {15, 32, 20}, {16, 32, 6}, {22, 32, 17}, {23, 64, 3}, {11, 32, 2}, {36, 32, 11},
		{13, 64, 7}, {20, 32, 13}, {128, 64, 30}} {
		for v := range 3 {
			cases = append(cases, gemmCase{m: s[0], n: s[1], k: s[2], transA: true, transB: v == 2, alpha: []float32{1, 0.5, 1}[v], beta: float32(v), padA: v, padB: 1, padC: 2 * v})
		}
	}
	for _, threads := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("threads%d", threads), func(t *testing.T) {
			withThreads(t, threads)
			rng := rand.New(rand.NewPCG(23, uint64(threads)))
			for _, c := range cases {
				o := makeOperands(rng, c)
				run := func(inPlaceA, inPlaceB bool) []float32 {
					oldA, oldB := directA, directB
					directA, directB = inPlaceA, inPlaceB
					defer func() { directA, directB = oldA, oldB }()
					cc := append([]float32(nil), o.c...)
					SgemmPath(metal.PathAsm, c.transA, c.transB, c.m, c.n, c.k, c.alpha, o.a, o.lda, o.b, o.ldb, c.beta, cc, o.ldc)
					return cc
				}
				packed := run(false, false)
				require.Equal(t, packed, run(true, false), "A in place: %+v", c)
				require.Equal(t, packed, run(true, true), "A and B in place: %+v", c)
				checkAgainstReference(t, rng, c, func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, cc []float32, ldc int) {
					SgemmPath(metal.PathAsm, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, cc, ldc)
				})
			}
		})
	}
}
