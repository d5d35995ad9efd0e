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
