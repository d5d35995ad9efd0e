//go:build !amd64

package attention

// avx512 selects AVX-512 kernels, which only amd64 has.
var avx512 = false

func tileMulAsm(c []float32, ldc int, a []float32, ars, acs int, b []float32, ldb, m, n, k int, alpha float32, acc bool, pf *prefetchQueue) bool {
	return false
}

func transposeBlocks8(dst []float32, ldd int, src []float32, lds, dim int) bool { return false }

func copyRowsAsm(dst []float32, doff, ldd int, src []float32, soff, lds, width, rows int) bool {
	return rows == 0
}

func prefetch(s []float32, off, stride, rows, width int) {}

func prefetchL2(s []float32, off, stride, rows, width int) {}

func stripsFast(n int) bool { return false }

func tileMulBounds(c []float32, ldc int, a []float32, ars, acs int, b []float32, ldb, m, n, k int) {}

func strip4(c *float32, ldc int, a *float32, ars, acs int, b *float32, ldb, n, k int, alpha float32, acc int) {
	panic("attention: no strip kernels off amd64")
}

func prefetchL2Addr(p uintptr, stride, rows, width int) {}
