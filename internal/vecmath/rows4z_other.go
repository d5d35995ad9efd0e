//go:build !amd64

package vecmath

func rows4Z(n int) bool { return false }

func softmaxRows4AVX512(s *float32, lds, n int, m, sum *[4]float32) {
	panic("vecmath: no AVX-512 kernels off amd64")
}

func gradPDeltaRows4AVX512(p, ds *float32, lds, n int, delta *[4]float32, scale float32) {
	panic("vecmath: no AVX-512 kernels off amd64")
}

func scaleRows4AVX512(dst *float32, ldd int, src *float32, lds, n int, a *[4]float32) {
	panic("vecmath: no AVX-512 kernels off amd64")
}
