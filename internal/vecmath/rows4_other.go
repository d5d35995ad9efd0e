//go:build !amd64

package vecmath

func softmaxRows4Body(s []float32, lds, n int, m, sum *[4]float32) {
	for r := range 4 {
		m[r], sum[r] = softmaxRowGo(s[r*lds:r*lds+n], m[r])
	}
}

func softmaxGradRows4Body(p, ds []float32, lds, n int, lse, delta *[4]float32, scale float32) {
	for r := range 4 {
		softmaxGradRowGo(p[r*lds:r*lds+n], ds[r*lds:r*lds+n], lse[r], delta[r], scale)
	}
}

func gradPRows4Body(p, ds []float32, lds, n int, delta *[4]float32, scale float32) int { return 0 }

func scaleRows4Body(dst []float32, ldd int, src []float32, lds, n int, a *[4]float32) int { return 0 }

func gradPDeltaRows4AVX2(p, ds *float32, lds, n int, delta *[4]float32, scale float32) {
	panic("vecmath: no AVX2 kernels off amd64")
}
