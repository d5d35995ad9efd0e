package gemm

import "github.com/mlxtrain/mlxtrain/metal"

// directSgemm computes C = α·op(A)·op(B) + β·C without packing: rows of C are
// accumulated from rows of op(B) (axpy form) or, when B is stored transposed, as dot
// products of contiguous rows. For tiny products and for a few rows against a large
// B (a vector-matrix product reads B once, so packing it would double the traffic).
func directSgemm(workers int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if workers <= 1 || m*n*k < parallelMinWork {
		directBlock(transA, transB, 0, m, 0, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	if m >= 2*workers {
		metal.ParallelFor(m, 1, func(lo, hi int) {
			directBlock(transA, transB, lo, hi, 0, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		})
		return
	}
	metal.ParallelFor(n, 16, func(lo, hi int) {
		directBlock(transA, transB, 0, m, lo, hi, k, alpha, a, lda, b, ldb, beta, c, ldc)
	})
}

// directBlock computes C's rows [i0, i1) × columns [j0, j1).
func directBlock(transA, transB bool, i0, i1, j0, j1, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	for i := i0; i < i1; i++ {
		crow := c[i*ldc+j0 : i*ldc+j1]
		if transB {
			for j := range crow {
				brow := b[(j0+j)*ldb : (j0+j)*ldb+k]
				var s float32
				if !transA {
					arow := a[i*lda : i*lda+k]
					for p, bv := range brow {
						s += arow[p] * bv
					}
				} else {
					for p, bv := range brow {
						s += a[p*lda+i] * bv
					}
				}
				if beta == 0 {
					crow[j] = alpha * s
				} else {
					crow[j] = alpha*s + beta*crow[j]
				}
			}
			continue
		}
		if beta == 0 {
			clear(crow)
		} else if beta != 1 {
			for j := range crow {
				crow[j] *= beta
			}
		}
		for p := range k {
			ai := i*lda + p
			if transA {
				ai = p*lda + i
			}
			av := alpha * a[ai]
			brow := b[p*ldb+j0 : p*ldb+j1]
			for j, bv := range brow {
				crow[j] += av * bv
			}
		}
	}
}
