package vecmath

// The assembly kernels (kernels_amd64.s) work on n elements, a multiple of 8;
// the Go wrappers below check the lengths and return how many they did.

//go:noescape
func geluAVX2(y, d, x, b *float32, n int)

//go:noescape
func geluAVX512(y, d, x, b *float32, n int)

//go:noescape
func softmaxRowAVX2(s *float32, n int, mOld float32) (m, sum float32)

//go:noescape
func softmaxGradRowAVX2(p, ds *float32, n int, lse, delta, scale float32)

//go:noescape
func mulSumAVX2(dst, sum, a, b *float32, n int)

//go:noescape
func addToAVX2(dst, src *float32, n int)

// first is &s[0], or nil for an empty s.
func first(s []float32) *float32 {
	if len(s) == 0 {
		return nil
	}
	return &s[0]
}

// geluBody runs geluAVX2 on the whole groups of 8 of y; d, x and b (d and b may
// be nil) are as long as y.
func geluBody(y, d, x, b []float32) int {
	n := len(y) &^ 7
	if n == 0 || !AVX2FMA {
		return 0
	}
	k := 0
	if AVX512 {
		if k = n &^ 15; k > 0 {
			geluAVX512(&y[0], first(d), &x[0], first(b), k)
		}
	}
	if k < n {
		geluAVX2(&y[k], tailFirst(d, k), &x[k], tailFirst(b, k), n-k)
	}
	return n
}

// tailFirst is &s[k], or nil for a nil s.
func tailFirst(s []float32, k int) *float32 {
	if s == nil {
		return nil
	}
	return &s[k]
}

// softmaxRowBody is softmaxRowAVX2 on s, whose length is a nonzero multiple of 8.
func softmaxRowBody(s []float32, mOld float32) (m, sum float32) {
	return softmaxRowAVX2(&s[0], len(s), mOld)
}

func softmaxGradRowBody(p, ds []float32, lse, delta, scale float32) int {
	n := len(p) &^ 7
	if n == 0 || !AVX2FMA {
		return 0
	}
	softmaxGradRowAVX2(&p[0], &ds[0], n, lse, delta, scale)
	return n
}

func mulSumBody(dst, sum, a, b []float32) int {
	n := len(dst) &^ 7
	if n == 0 || !AVX2FMA {
		return 0
	}
	mulSumAVX2(&dst[0], &sum[0], &a[0], &b[0], n)
	return n
}

func addToBody(dst, src []float32) int {
	n := len(dst) &^ 7
	if n == 0 || !AVX2FMA {
		return 0
	}
	addToAVX2(&dst[0], &src[0], n)
	return n
}

//go:noescape
func dotAVX2(x, y *float32, n int) float32

func dotBody(x, y []float32) (int, float32) {
	n := len(x) &^ 7
	if n == 0 || !AVX2FMA {
		return 0, 0
	}
	return n, dotAVX2(&x[0], &y[0], n)
}

//go:noescape
func scaleAVX2(dst, x *float32, n int, a float32)

//go:noescape
func addScaledAVX2(dst, x *float32, n int, a float32)

func scaleBody(dst []float32, a float32, x []float32) int {
	n := len(dst) &^ 7
	if n == 0 || !AVX2FMA {
		return 0
	}
	scaleAVX2(&dst[0], &x[0], n, a)
	return n
}

func addScaledBody(dst []float32, a float32, x []float32) int {
	n := len(dst) &^ 7
	if n == 0 || !AVX2FMA {
		return 0
	}
	addScaledAVX2(&dst[0], &x[0], n, a)
	return n
}

//go:noescape
func prefetchAVX(p *float32, n int)

// Prefetch asks the CPU to bring s into the cache ahead of its use: rows
// about to be read out of order.
func Prefetch(s []float32) {
	if len(s) > 0 {
		prefetchAVX(&s[0], len(s))
	}
}
