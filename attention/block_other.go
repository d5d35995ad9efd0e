//go:build !amd64

package attention

func softmaxRow(s []float32, mOld float32) (m, sum float32) { return softmaxRowGo(s, mOld) }

func gradRow(p, ds []float32, lse, delta, scale float32) { gradRowGo(p, ds, lse, delta, scale) }

func tileMulAsm(c []float32, ldc int, a []float32, ars, acs int, b []float32, ldb, m, n, k int, alpha float32, acc bool) bool {
	return false
}

func transposeBlocks8(dst []float32, ldd int, src []float32, lds, dim int) bool { return false }

// addTo32 adds src to dst elementwise.
func addTo32(dst, src []float32) {
	src = src[:len(dst)]
	for i := range src {
		dst[i] += src[i]
	}
}
