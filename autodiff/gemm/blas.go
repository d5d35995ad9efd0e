package gemm

import (
	"runtime"
	"sync"
)

// blasLib is a system BLAS opened at run time.
type blasLib struct {
	name string
	// sgemm is cblas_sgemm with the LP64 interface (32-bit ints).
	sgemm func(order, transA, transB, m, n, k int32, alpha float32, a *float32, lda int32, b *float32, ldb int32, beta float32, c *float32, ldc int32)
	// sgemv is cblas_sgemv, or nil: OpenBLAS (before 0.3.27) runs a product with one
	// row or column through the whole packed gemm, twice as slow as its gemv.
	sgemv func(order, trans, m, n int32, alpha float32, a *float32, lda int32, x *float32, incx int32, beta float32, y *float32, incy int32)
	// setThreads is openblas_set_num_threads, or nil in other libraries.
	setThreads func(n int32)
	// split says the library runs each call on the calling thread, so our workers
	// split a product among themselves. Accelerate schedules its own cores.
	split bool
}

// CBLAS enums.
const (
	cblasRowMajor = 101
	cblasNoTrans  = 111
	cblasTrans    = 112
)

// blasNames are the libraries tried, in order.
func blasNames() []string {
	switch runtime.GOOS {
	case "darwin":
		return []string{"/System/Library/Frameworks/Accelerate.framework/Accelerate"}
	case "linux":
		return []string{"libopenblas.so.0", "libopenblas.so", "libblas.so.3"}
	}
	return nil
}

var (
	blasOnce   sync.Once
	systemBLAS *blasLib
	blasErr    error
)

// loadBLAS opens the system BLAS once. OpenBLAS is told to use one thread: its own
// pool spins between calls and would fight our workers for the cores, so the
// workers own the cores and each calls it on a block of rows.
func loadBLAS() (*blasLib, error) {
	blasOnce.Do(func() {
		systemBLAS, blasErr = openBLAS(blasNames())
		if systemBLAS != nil && systemBLAS.setThreads != nil {
			systemBLAS.setThreads(1)
		}
	})
	return systemBLAS, blasErr
}

func blasAvailable() bool {
	lib, _ := loadBLAS()
	return lib != nil
}

// BLASLibrary names the system BLAS in use, or says why there is none.
func BLASLibrary() string {
	lib, err := loadBLAS()
	if lib == nil {
		return "none: " + err.Error()
	}
	return lib.name
}

func cblasTranspose(t bool) int32 {
	if t {
		return cblasTrans
	}
	return cblasNoTrans
}

func sgemmBLAS(workers int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	lib, _ := loadBLAS()
	if !lib.split || m*n*k < parallelMinWork {
		workers = 1
	}
	if lib.sgemv != nil && (m == 1 || n == 1) {
		gemvBLAS(lib, workers, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	call := func(m, n int, a []float32, b []float32, c []float32) {
		lib.sgemm(cblasRowMajor, cblasTranspose(transA), cblasTranspose(transB), int32(m), int32(n), int32(k),
			alpha, &a[0], int32(max(lda, 1)), &b[0], int32(max(ldb, 1)), beta, &c[0], int32(max(ldc, 1)))
	}
	// Split along the longer side of C, in blocks the library's own kernels tile
	// evenly (multiples of 16 rows or columns).
	if m >= n {
		splitCalls(workers, (m+15)/16, func(lo, hi int) {
			i0, i1 := lo*16, min(hi*16, m)
			aOff := i0 * lda
			if transA {
				aOff = i0
			}
			call(i1-i0, n, a[aOff:], b, c[i0*ldc:])
		})
		return
	}
	splitCalls(workers, (n+15)/16, func(lo, hi int) {
		j0, j1 := lo*16, min(hi*16, n)
		bOff := j0
		if transB {
			bOff = j0 * ldb
		}
		call(m, j1-j0, a, b[bOff:], c[j0:])
	})
}

// splitCalls runs fn over [0, blocks) split into one contiguous, non-empty range
// per worker. The workers meet before calling fn: a goroutine left queued behind a
// caller already inside C code can otherwise wait for that whole call to end.
func splitCalls(workers, blocks int, fn func(lo, hi int)) {
	workers = min(workers, blocks)
	if workers <= 1 {
		fn(0, blocks)
		return
	}
	bar := newBarrier(workers)
	runWorkers(workers, bar, func(w int) {
		bar.wait()
		fn(w*blocks/workers, (w+1)*blocks/workers)
	})
}

// gemvBLAS computes a product with one row (m = 1) or one column (n = 1) as a
// matrix-vector product y = op(M)·x, the workers splitting y.
func gemvBLAS(lib *blasLib, workers int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	// m = 1: cᵀ = op(B)ᵀ·aᵀ, B stored k×n (or n×k when transposed), x the row of A.
	mat, ldm, rows, cols, trans := b, ldb, k, n, true
	x, incx, incy := a, 1, 1
	if transB {
		rows, cols, trans = n, k, false
	}
	if transA {
		incx = lda // A is stored k×1
	}
	if m != 1 {
		// n = 1: c = op(A)·b, A stored m×k (or k×m), x the column of B.
		mat, ldm, rows, cols, trans = a, lda, m, k, false
		if transA {
			rows, cols, trans = k, m, true
		}
		x, incx, incy = b, ldb, ldc
		if transB {
			incx = 1 // B is stored 1×k
		}
	}
	outLen := cols // y's length: op(M) has shape outLen×k when trans is set
	if !trans {
		outLen = rows
	}
	splitCalls(workers, (outLen+63)/64, func(lo, hi int) {
		y0, y1 := lo*64, min(hi*64, outLen)
		off := y0 * ldm // rows [y0, y1) of M
		if trans {
			off = y0 // columns [y0, y1) of M
		}
		r, cl := y1-y0, cols
		if trans {
			r, cl = rows, y1-y0
		}
		lib.sgemv(cblasRowMajor, cblasTranspose(trans), int32(r), int32(cl), alpha, &mat[off], int32(max(ldm, 1)),
			&x[0], int32(incx), beta, &c[y0*incy], int32(incy))
	})
}
