//go:build !amd64

package gemm

func asmAvailable() bool { return false }

// asmKernel is never called where asmAvailable is false.
func asmKernel(k int, a, b, c []float32, ldc int, alpha, beta float32) {
	panic("gemm: no assembly micro-kernel on this architecture")
}

func asmKernelStrided(k int, a, b []float32, ldb int, c []float32, ldc int, alpha, beta float32) {
	panic("gemm: no assembly micro-kernel on this architecture")
}

// Without the assembly the packing routines are the Go loops (only the Go
// blocking's packers run here, but packA6 and packB16 still compile).
func packA6NFast(d, a []float32, lda, kc int) { packA6NGo(d, a, lda, 0, kc) }

func packA6TFast(d, a []float32, lda, kc int) { packA6TGo(d, a, lda, kc) }

func packB16NFast(d, b []float32, ldb, kc int) { packB16NGo(d, b, ldb, kc) }

func packA6TPanels(d, a []float32, lda, kc, panels int) {
	for r := range panels {
		packA6TGo(d[6*kc*r:], a[6*r:], lda, kc)
	}
}

func packB16NPanels(d, b []float32, ldb, kc, panels int) {
	for r := range panels {
		packB16NGo(d[16*kc*r:], b[16*r:], ldb, kc)
	}
}

func packB16TFast(d, b []float32, ldb, kc int) { packB16TGo(d, b, ldb, 0, kc) }

func asmKernelA(k int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32) {
	panic("gemm: no assembly micro-kernel on this architecture")
}

func addRow(dst, src []float32) {
	src = src[:len(dst)]
	for i := range dst {
		dst[i] += src[i]
	}
}

func asmPanelsA(k int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32, panels int) {
	panic("gemm: no assembly micro-kernel on this architecture")
}

func asmPanels(k int, a, b, c []float32, ldc int, alpha, beta float32, panels int) {
	panic("gemm: no assembly micro-kernel on this architecture")
}

func avx512Available() bool { return false }

func useAVX512(bool) {}
