package advanced

import (
	"math"

	"github.com/mlxtrain/mlxtrain/autodiff"
)

// GELU (the exact erf form) with its derivative, for the experts' hidden layer:
// gelu(x) = x·Φ(x), gelu′(x) = Φ(x) + x·φ(x). Float64 uses math.Erfc; float32
// uses erfc(a) ≈ t·P(t)·e^(−a²), t = 1/(1+p·a) (Abramowitz and Stegun 7.1.26,
// |error| < 1.5e-7), so that one exponential e^(−x²/2) serves Φ and φ.

const (
	invSqrt2   = 0.7071067811865476
	invSqrt2Pi = 0.3989422804014327
	erfP       = 0.3275911
	erfA1      = 0.254829592
	erfA2      = -0.284496736
	erfA3      = 1.421413741
	erfA4      = -1.453152027
	erfA5      = 1.061405429
)

// geluBiasRow sets y = gelu(y+b) and, when d is not nil, d = gelu′(y+b); b may be
// nil.
func geluBiasRow[T autodiff.Float](y, d, b []T) {
	switch y := any(y).(type) {
	case []float32:
		geluRow32(y, any(d).([]float32), any(b).([]float32))
	case []float64:
		geluRow64(y, any(d).([]float64), any(b).([]float64))
	}
}

func geluRow64(y, d, b []float64) {
	for i, x := range y {
		if b != nil {
			x += b[i]
		}
		phi := 0.5 * math.Erfc(-x*invSqrt2)
		y[i] = x * phi
		if d != nil {
			d[i] = phi + x*invSqrt2Pi*math.Exp(-0.5*x*x)
		}
	}
}

// geluRowGo32 is the float32 kernel in Go (every CPU; the tail of the SIMD one).
func geluRowGo32(y, d, b []float32) {
	for i, x := range y {
		if b != nil {
			x += b[i]
		}
		a := abs32(x) * invSqrt2
		t := 1 / (1 + erfP*a)
		poly := t * (erfA1 + t*(erfA2+t*(erfA3+t*(erfA4+t*erfA5))))
		e := expNeg32(-0.5 * x * x)
		q := 0.5 * poly * e // Φ(−|x|)
		phi := q
		if x > 0 {
			phi = 1 - q
		}
		y[i] = x * phi
		if d != nil {
			d[i] = phi + x*invSqrt2Pi*e
		}
	}
}

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

// expNeg32 is e^v for v ≤ 0 (NaN stays NaN), to about 2 ulp: v = n·ln2 + r with
// |r| ≤ ln2/2, e^r by its Taylor polynomial to r⁷, times 2ⁿ built in the
// exponent bits. Below −87.3 it returns e^−87.3 (about 1e-38).
func expNeg32(v float32) float32 {
	if v < -87.3 {
		v = -87.3
	}
	if v != v {
		return v
	}
	const log2e, ln2hi, ln2lo = 1.4426950408889634, 0.693145751953125, 1.428606765330187e-06
	n := -float32(int32(-v*log2e + 0.5))
	r := v - n*ln2hi - n*ln2lo
	p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720+r*(1.0/5040)))))))
	return p * math.Float32frombits(uint32(int32(n)+127)<<23)
}
