package vecmath

//go:noescape
func softmaxRows4AVX2(s *float32, lds, n int, m, sum *[4]float32)

//go:noescape
func softmaxGradRows4AVX2(p, ds *float32, lds, n int, lse, delta *[4]float32, scale float32)

// softmaxRows4Body runs softmaxRows4AVX2; n is a nonzero multiple of 8 and the
// four rows are inside s (checked by the caller).
func softmaxRows4Body(s []float32, lds, n int, m, sum *[4]float32) {
	softmaxRows4AVX2(&s[0], lds, n, m, sum)
}

func softmaxGradRows4Body(p, ds []float32, lds, n int, lse, delta *[4]float32, scale float32) {
	softmaxGradRows4AVX2(&p[0], &ds[0], lds, n, lse, delta, scale)
}

//go:noescape
func gradPRows4AVX2(p, ds *float32, lds, n int, delta *[4]float32, scale float32)

//go:noescape
func scaleRows4AVX2(dst *float32, ldd int, src *float32, lds, n int, a *[4]float32)

// gradPRows4Body runs gradPRows4AVX2 on the whole vectors of the rows and
// returns how many columns it did (the rows are inside p and ds: checked by the
// caller).
func gradPRows4Body(p, ds []float32, lds, n int, delta *[4]float32, scale float32) int {
	k := n &^ 7
	if k > 0 {
		gradPRows4AVX2(&p[0], &ds[0], lds, k, delta, scale)
	}
	return k
}

func scaleRows4Body(dst []float32, ldd int, src []float32, lds, n int, a *[4]float32) int {
	k := n &^ 7
	if k > 0 {
		scaleRows4AVX2(&dst[0], ldd, &src[0], lds, k, a)
	}
	return k
}

//go:noescape
func gradPDeltaRows4AVX2(p, ds *float32, lds, n int, delta *[4]float32, scale float32)
