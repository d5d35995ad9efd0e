package vecmath

import "math"

// The GELU's constants. Φ(−s) = φ(s)·M(s) for s = |v| ≥ 0, φ the normal
// density and M the Mills ratio, here a rational function of degree 3 over 3
// (geluR, geluQ): a fit for this package (iteratively reweighted least squares
// towards the minimax of the absolute error of φ·M over s in [0, 9]) whose
// error is 9.4e-9, below float32 rounding. φ(s) = e^(−s²/2)/√(2π) = 2^w/√(2π),
// w = −s²·log2(e)/2, is 2ⁿ·P(w − n) for n = round(w), P a degree-5 minimax fit
// of 2^r/√(2π) on [−½, ½] (relative error 1.7e-7; the AVX-512 kernel uses a
// table of 32 and degree 2 instead). So one exponential serves Φ and φ. s is
// clamped to 16, where φ is 0 in float32: ±Inf then make no NaN of their own.
const (
	geluR0, geluR1, geluR2, geluR3 = 1.2533141, 0.46240118, 0.08706721, -0.0003693561
	geluQ1, geluQ2, geluQ3         = 1.1668289, 0.50044364, 0.08165128
	geluP0, geluP1, geluP2         = 0.39894232, 0.27652565, 0.09583439
	geluP3, geluP4, geluP5         = 0.022144143, 0.0038599826, 0.0005296546
	geluNL2E                       = -0.5 * 1.4426950408889634 // w = geluNL2E·s²
	geluWLow                       = -124                      // φ is 0 below (2^−124 ≈ 5e-38)
	geluSMax                       = 16

	invSqrt2   = 0.7071067811865476
	invSqrt2Pi = 0.3989422804014327
)

// ExpLow is the argument below which Exp returns 0: e^ExpLow ≈ 1.2e-38 is
// near the smallest normal float32.
const ExpLow = -87.3

// Exp returns e^x in float32 for x ≤ 0, to a relative error below 2e-7, and 0
// for x below ExpLow (−Inf and NaN included): x = n·ln2 + r with n rounded to
// nearest and |r| ≤ ln2/2, e^r by its Taylor polynomial of degree 7, 2ⁿ put in
// the exponent bits. The assembly kernels compute the same, 8 lanes at a time.
func Exp(x float32) float32 {
	if !(x >= ExpLow) {
		return 0
	}
	const (
		log2e = 1.4426950408889634
		ln2hi = 0.693145751953125 // ln 2 = ln2hi + ln2lo; n·ln2hi is exact
		ln2lo = 1.428606765330187e-06
		round = 0x1.8p23 // adding it rounds a float32 below 2²² to an integer
	)
	n := float32(x*log2e+round) - round
	r := x - n*ln2hi - n*ln2lo
	p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720+r*(1.0/5040)))))))
	return p * math.Float32frombits(uint32(int32(n)+127)<<23)
}

// GELU sets y[i] = gelu(v) = v·Φ(v) and, when d is not nil, d[i] = gelu′(v) =
// Φ(v) + v·φ(v), for v = x[i] + b[i] (b may be nil; x may be y). This is the
// exact (erf) GELU, as PyTorch's nn.GELU computes it: Φ(−|v|) = φ(|v|)·M, M a
// rational function of |v|, and φ from one exponential that serves Φ and φ
// (see the constants). Against the float64 formulas, over every v and on every
// path, |Δgelu| ≤ 1.2e-7·max(1, |gelu|) and |Δgelu′| ≤ 1.6e-7 (the erf of
// Abramowitz and Stegun 7.1.26 that this replaced: 2.2e-7 and 3.2e-7).
// gelu(+Inf) = +Inf; gelu(−Inf), gelu′(±Inf) and NaN give NaN, as the float64
// formulas do.
func GELU(y, d, x, b []float32) {
	n := len(y)
	x = x[:n]
	if d != nil {
		d = d[:n]
	}
	if b != nil {
		b = b[:n]
	}
	k := geluBody(y, d, x, b)
	geluGo(y[k:], tail(d, k), x[k:], tail(b, k))
}

// geluGo is GELU in Go, the formulas of the assembly. It has no branches on
// the data but the rare underflow of φ.
func geluGo(y, d, x, b []float32) {
	for i, v := range x {
		if b != nil {
			v += b[i]
		}
		s := min(math.Float32frombits(math.Float32bits(v)&0x7fffffff), geluSMax) // NaN stays
		m := (geluR0 + s*(geluR1+s*(geluR2+s*geluR3))) / (1 + s*(geluQ1+s*(geluQ2+s*geluQ3)))
		w := s * geluNL2E * s
		var phi float32
		if w >= geluWLow {
			const round = 0x1.8p23 // adding it rounds a float32 below 2²² to an integer
			k := w + round
			r := w - (k - round)
			p := geluP0 + r*(geluP1+r*(geluP2+r*(geluP3+r*(geluP4+r*geluP5))))
			phi = math.Float32frombits(math.Float32bits(p) + math.Float32bits(k)<<23) // p·2ⁿ
		}
		q := m * phi // Φ(−|v|)
		bits := math.Float32bits(v)
		pos := float32(1 - bits>>31) // 1 when v ≥ 0
		cdf := q + pos*(1-2*q)       // Φ(v)
		y[i] = v * cdf
		if d != nil {
			d[i] = cdf + v*phi
		}
	}
}

// GELU64 is GELU in float64 with math.Erfc and math.Exp: the reference the
// float32 kernel is held to, and the float64 path of the GELU ops.
func GELU64(y, d, x, b []float64) {
	x = x[:len(y)]
	for i, v := range x {
		if b != nil {
			v += b[i]
		}
		phi := 0.5 * math.Erfc(-v*invSqrt2)
		y[i] = v * phi
		if d != nil {
			d[i] = phi + v*invSqrt2Pi*math.Exp(-0.5*v*v)
		}
	}
}

// SoftmaxRow is one step of an online softmax over a row: it sets m = max(mOld,
// max s) and s[j] = Exp(s[j] − m), and returns m and Σ s[j]. Entries of −Inf
// (masked) become exactly 0.
func SoftmaxRow(s []float32, mOld float32) (m, sum float32) {
	n := len(s) &^ 7
	if n == 0 || !AVX2FMA {
		return softmaxRowGo(s, mOld)
	}
	if n == len(s) {
		return softmaxRowBody(s, mOld)
	}
	m = mOld
	for _, x := range s[n:] {
		m = max(m, x)
	}
	m, sum = softmaxRowBody(s[:n], m)
	for j, x := range s[n:] {
		s[n+j] = Exp(x - m)
		sum += s[n+j]
	}
	return m, sum
}

func softmaxRowGo(s []float32, mOld float32) (m, sum float32) {
	m = mOld
	for _, x := range s {
		m = max(m, x)
	}
	for j, x := range s {
		s[j] = Exp(x - m)
		sum += s[j]
	}
	return m, sum
}

// SoftmaxGradRow turns a row of attention scores into probabilities and their
// gradient: p[j] = Exp(p[j] − lse) and ds[j] = p[j]·(ds[j] − delta)·scale, for
// lse the row's log-sum-exp, ds the gradient of the probabilities on entry and
// delta = Σ p·ds.
func SoftmaxGradRow(p, ds []float32, lse, delta, scale float32) {
	ds = ds[:len(p)]
	k := softmaxGradRowBody(p, ds, lse, delta, scale)
	softmaxGradRowGo(p[k:], ds[k:], lse, delta, scale)
}

func softmaxGradRowGo(p, ds []float32, lse, delta, scale float32) {
	ds = ds[:len(p)]
	for j, x := range p {
		p[j] = Exp(x - lse)
		ds[j] = p[j] * scale * (ds[j] - delta)
	}
}

// MulSum sets dst = a·b elementwise and adds dst to sum.
func MulSum(dst, sum, a, b []float32) {
	n := len(dst)
	sum, a, b = sum[:n], a[:n], b[:n]
	k := mulSumBody(dst, sum, a, b)
	for i := k; i < n; i++ {
		dst[i] = a[i] * b[i]
		sum[i] += dst[i]
	}
}

// AddTo adds src to dst elementwise.
func AddTo(dst, src []float32) {
	n := len(dst)
	src = src[:n]
	k := addToBody(dst, src)
	for i := k; i < n; i++ {
		dst[i] += src[i]
	}
}

// Scale sets dst = a·x elementwise over len(dst) (x at least as long).
func Scale(dst []float32, a float32, x []float32) {
	x = x[:len(dst)]
	k := scaleBody(dst, a, x)
	for i := k; i < len(dst); i++ {
		dst[i] = a * x[i]
	}
}

// AddScaled adds a·x to dst elementwise over len(dst) (x at least as long); the
// assembly fuses each multiply-add, so the two paths agree to rounding.
func AddScaled(dst []float32, a float32, x []float32) {
	x = x[:len(dst)]
	k := addScaledBody(dst, a, x)
	for i := k; i < len(dst); i++ {
		dst[i] += a * x[i]
	}
}

// tail returns s[n:], or nil when s is nil.
func tail(s []float32, n int) []float32 {
	if s == nil {
		return nil
	}
	return s[n:]
}

// Dot returns Σ x[i]·y[i] over len(x) (y at least as long).
func Dot(x, y []float32) float32 {
	y = y[:len(x)]
	k, s := dotBody(x, y)
	for i := k; i < len(x); i++ {
		s += x[i] * y[i]
	}
	return s
}
