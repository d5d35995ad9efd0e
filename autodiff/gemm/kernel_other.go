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
