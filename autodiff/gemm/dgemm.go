package gemm

import (
	"time"

	"github.com/mlxtrain/mlxtrain/metal"
)

// Dgemm is Sgemm for float64: C = α·op(A)·op(B) + β·C, row-major. It serves
// gradient checks and float64 models, so it is plain blocked Go split across the
// workers by rows, not a tuned kernel.
func Dgemm(transA, transB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	checkArgs("Dgemm", transA, transB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
	if trivial(m, n, k, alpha, beta, c, ldc) {
		return
	}
	var start time.Time
	if metal.Profiling() {
		start = time.Now()
	}
	// Transposed operands are copied once into the layout the loop streams: op(A)
	// by rows, op(B) by rows.
	if transA {
		a, lda = transposed(a, lda, k, m), k
	}
	if transB {
		b, ldb = transposed(b, ldb, n, k), n
	}
	const kb = 128 // a kb×n slab of B is reused by every row of a block
	grain := max(1, 32*32*32/(n*k+1))
	metal.ParallelFor(m, grain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			row := c[i*ldc : i*ldc+n]
			if beta == 0 {
				clear(row)
			} else if beta != 1 {
				for j := range row {
					row[j] *= beta
				}
			}
		}
		for p0 := 0; p0 < k; p0 += kb {
			p1 := min(p0+kb, k)
			for i := lo; i < hi; i++ {
				row := c[i*ldc : i*ldc+n]
				arow := a[i*lda+p0 : i*lda+p1]
				for p, av := range arow {
					av *= alpha
					brow := b[(p0+p)*ldb : (p0+p)*ldb+n]
					for j, bv := range brow {
						row[j] += av * bv
					}
				}
			}
		}
	})
	if !start.IsZero() {
		metal.RecordOp("matmul", metal.PathGo, time.Since(start), int64(8*(m*k+k*n+2*m*n)))
	}
}

// transposed returns the cols×rows transpose of the rows×cols matrix x (stride ld).
func transposed(x []float64, ld, rows, cols int) []float64 {
	t := make([]float64, rows*cols)
	for i := range rows {
		for j, v := range x[i*ld : i*ld+cols] {
			t[j*rows+i] = v
		}
	}
	return t
}
