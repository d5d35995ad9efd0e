package vecmath

// SoftmaxRows4 is SoftmaxRow on four rows at once: rows r < 4 of s, lds apart,
// each n long (the first 4·… elements from s[0]), with m[r] the old maximum of
// row r on entry and its new one on return, and sum[r] set to the row's sum.
// Each row gets exactly what SoftmaxRow computes for it; on AVX2 the four rows
// are interleaved, so their latencies overlap (a row of a causal tile is short).
func SoftmaxRows4(s []float32, lds, n int, m, sum *[4]float32) {
	if n <= 0 {
		*sum = [4]float32{}
		return
	}
	_ = s[3*lds+n-1]
	if n%8 == 0 && AVX2FMA {
		softmaxRows4Body(s, lds, n, m, sum)
		return
	}
	for r := range 4 {
		m[r], sum[r] = SoftmaxRow(s[r*lds:r*lds+n], m[r])
	}
}

// SoftmaxGradRows4 is SoftmaxGradRow on four rows at once: rows r < 4 of p and
// ds, lds apart, each n long, with their log-sum-exps lse[r] and deltas
// delta[r]. Each row gets exactly what SoftmaxGradRow computes for it.
func SoftmaxGradRows4(p, ds []float32, lds, n int, lse, delta *[4]float32, scale float32) {
	if n <= 0 {
		return
	}
	_ = p[3*lds+n-1]
	_ = ds[3*lds+n-1]
	if n%8 == 0 && AVX2FMA {
		softmaxGradRows4Body(p, ds, lds, n, lse, delta, scale)
		return
	}
	for r := range 4 {
		SoftmaxGradRow(p[r*lds:r*lds+n], ds[r*lds:r*lds+n], lse[r], delta[r], scale)
	}
}

// SoftmaxGradPRows4 is SoftmaxGradRows4 for rows whose probabilities p are
// already known: ds[j] = p[j]·scale·(ds[j] − delta[r]) on rows r < 4 of p and
// ds, lds apart, each n long (p is only read). It rounds as SoftmaxGradRow does
// after its exponential.
func SoftmaxGradPRows4(p, ds []float32, lds, n int, delta *[4]float32, scale float32) {
	if n <= 0 {
		return
	}
	_ = p[3*lds+n-1]
	_ = ds[3*lds+n-1]
	k := 0
	if AVX2FMA {
		k = gradPRows4Body(p, ds, lds, n, delta, scale)
	}
	for r := range 4 {
		pr, dr := p[r*lds+k:r*lds+n], ds[r*lds+k:r*lds+n]
		for j, x := range pr {
			dr[j] = x * scale * (dr[j] - delta[r])
		}
	}
}

// ScaleRows4 sets row r of dst to a[r] times row r of src, for rows r < 4 each
// n long, ldd apart in dst and lds apart in src.
func ScaleRows4(dst []float32, ldd int, src []float32, lds, n int, a *[4]float32) {
	if n <= 0 {
		return
	}
	_ = dst[3*ldd+n-1]
	_ = src[3*lds+n-1]
	k := 0
	if AVX2FMA {
		k = scaleRows4Body(dst, ldd, src, lds, n, a)
	}
	for r := range 4 {
		d, s := dst[r*ldd+k:r*ldd+n], src[r*lds+k:r*lds+n]
		for j, x := range s {
			d[j] = a[r] * x
		}
	}
}

// SoftmaxGradPDeltaRows4 is SoftmaxGradPRows4 with each row's delta computed
// here from the row itself, delta[r] = Σ_j p[j]·ds[j] (the gradient of the
// probabilities on entry; for attention this equals dO·O of the row), and
// returned in delta.
func SoftmaxGradPDeltaRows4(p, ds []float32, lds, n int, delta *[4]float32, scale float32) {
	if n <= 0 {
		*delta = [4]float32{}
		return
	}
	_ = p[3*lds+n-1]
	_ = ds[3*lds+n-1]
	if n%8 == 0 && AVX2FMA {
		gradPDeltaRows4AVX2(&p[0], &ds[0], lds, n, delta, scale)
		return
	}
	for r := range 4 {
		delta[r] = dotGo(p[r*lds:r*lds+n], ds[r*lds:r*lds+n])
	}
	SoftmaxGradPRows4(p, ds, lds, n, delta, scale)
}

// dotGo is Σ x[i]·y[i].
func dotGo(x, y []float32) float32 {
	s := float32(0)
	for i, v := range x {
		s += v * y[i]
	}
	return s
}
