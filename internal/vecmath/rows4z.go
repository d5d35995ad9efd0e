package vecmath

// SoftmaxRows4Z is SoftmaxRows4 on AVX-512 vectors where the CPU has them (16
// lanes a step; each row's sum still adds 8-lane vectors in column order), with
// the same results bit for bit.
func SoftmaxRows4Z(s []float32, lds, n int, m, sum *[4]float32) {
	if !rows4Z(n) {
		SoftmaxRows4(s, lds, n, m, sum)
		return
	}
	_ = s[3*lds+n-1]
	softmaxRows4AVX512(&s[0], lds, n, m, sum)
}

// SoftmaxGradPDeltaRows4Z is SoftmaxGradPDeltaRows4 on AVX-512 vectors where the
// CPU has them (the deltas summed as there), with the same results bit for bit.
func SoftmaxGradPDeltaRows4Z(p, ds []float32, lds, n int, delta *[4]float32, scale float32) {
	if !rows4Z(n) {
		SoftmaxGradPDeltaRows4(p, ds, lds, n, delta, scale)
		return
	}
	_ = p[3*lds+n-1]
	_ = ds[3*lds+n-1]
	gradPDeltaRows4AVX512(&p[0], &ds[0], lds, n, delta, scale)
}

// ScaleRows4Z is ScaleRows4 on AVX-512 vectors where the CPU has them.
func ScaleRows4Z(dst []float32, ldd int, src []float32, lds, n int, a *[4]float32) {
	if !rows4Z(n) {
		ScaleRows4(dst, ldd, src, lds, n, a)
		return
	}
	_ = dst[3*ldd+n-1]
	_ = src[3*lds+n-1]
	scaleRows4AVX512(&dst[0], ldd, &src[0], lds, n, a)
}
