package gemm

import "github.com/mlxtrain/mlxtrain/internal/vecmath"

// sgemmKernel6x16 is the AVX2/FMA micro-kernel (kernel_amd64.s): the 6×16 tile at c
// becomes alpha·(packed A panel)·(packed B panel) + beta·tile over k steps.
//
//go:noescape
func sgemmKernel6x16(k int, a, b, c *float32, ldc int, alpha, beta float32)

func asmAvailable() bool { return vecmath.AVX2FMA }

// asmKernel runs the assembly micro-kernel on a full tile.
func asmKernel(k int, a, b, c []float32, ldc int, alpha, beta float32) {
	sgemmKernel6x16(k, &a[0], &b[0], &c[0], ldc, alpha, beta)
}

// sgemmKernel6x16Strided is sgemmKernel6x16 reading B in place, rows ldb apart.
//
//go:noescape
func sgemmKernel6x16Strided(k int, a, b, c *float32, ldb, ldc int, alpha, beta float32)

// asmKernelStrided runs the strided micro-kernel on a full tile.
func asmKernelStrided(k int, a, b []float32, ldb int, c []float32, ldc int, alpha, beta float32) {
	sgemmKernel6x16Strided(k, &a[0], &b[0], &c[0], ldb, ldc, alpha, beta)
}

// sgemmKernel6x16A is sgemmKernel6x16 reading six rows of A in place, lda apart.
//
//go:noescape
func sgemmKernel6x16A(k int, a *float32, lda int, b, c *float32, ldc int, alpha, beta float32)

// asmKernelA runs the in-place micro-kernel on a full tile: a holds six rows of
// k values, lda apart.
func asmKernelA(k int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32) {
	_ = a[5*lda+k-1]
	_ = b[16*k-1]
	_ = c[5*ldc+15]
	sgemmKernel6x16A(k, &a[0], lda, &b[0], &c[0], ldc, alpha, beta)
}

// sgemmPanels6x16A is sgemmKernel6x16A on panels tiles down a column of C.
//
//go:noescape
func sgemmPanels6x16A(k int, a *float32, lda int, b, c *float32, ldc int, alpha, beta float32, panels int)

// asmPanelsA runs the in-place micro-kernel on panels full tiles down a column
// of C: tile t reads rows 6t..6t+5 of a (lda apart) and writes rows 6t..6t+5 of
// c (ldc apart), all against the packed B panel b.
func asmPanelsA(k int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32, panels int) {
	if panels == 0 {
		return
	}
	_ = a[(6*panels-1)*lda+k-1]
	_ = b[16*k-1]
	_ = c[(6*panels-1)*ldc+15]
	sgemmPanels6x16A(k, &a[0], lda, &b[0], &c[0], ldc, alpha, beta, panels)
}

// sgemmPanels6x16 is sgemmKernel6x16 on panels tiles down a column of C.
//
//go:noescape
func sgemmPanels6x16(k int, a, b, c *float32, ldc int, alpha, beta float32, panels int)

// asmPanels runs the micro-kernel on panels full tiles down a column of C: tile
// t reads the packed A panel a[6·k·t:] and writes rows 6t..6t+5 of c, all
// against the packed B panel b.
func asmPanels(k int, a, b, c []float32, ldc int, alpha, beta float32, panels int) {
	if panels == 0 {
		return
	}
	_ = a[6*k*panels-1]
	_ = b[16*k-1]
	_ = c[(6*panels-1)*ldc+15]
	sgemmPanels6x16(k, &a[0], &b[0], &c[0], ldc, alpha, beta, panels)
}
