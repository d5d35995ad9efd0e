package gemm

import "sync"

// sgemmKernel6x16 is the AVX2/FMA micro-kernel (kernel_amd64.s): the 6×16 tile at c
// becomes alpha·(packed A panel)·(packed B panel) + beta·tile over k steps.
//
//go:noescape
func sgemmKernel6x16(k int, a, b, c *float32, ldc int, alpha, beta float32)

//go:noescape
func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32)

func xgetbv0() (eax, edx uint32)

var hasAVX2FMA = sync.OnceValue(func() bool {
	maxLeaf, _, _, _ := cpuid(0, 0)
	if maxLeaf < 7 {
		return false
	}
	_, _, ecx1, _ := cpuid(1, 0)
	const (
		fma     = 1 << 12
		osxsave = 1 << 27
		avx     = 1 << 28
	)
	if ecx1&(fma|osxsave|avx) != fma|osxsave|avx {
		return false
	}
	// The OS must save the SSE and AVX register state across context switches.
	if xcr0, _ := xgetbv0(); xcr0&6 != 6 {
		return false
	}
	_, ebx7, _, _ := cpuid(7, 0)
	return ebx7&(1<<5) != 0 // AVX2
})

func asmAvailable() bool { return hasAVX2FMA() }

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
