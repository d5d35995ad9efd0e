package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/metal"
)

// mapRef is a float64 reference of one map.metal function: its value and
// derivative, the inputs it is tried on and its parameters.
type mapRef struct {
	op     metal.MapOp
	p, q   float64
	lo, hi float64 // the random inputs' range
	f, df  func(x, p, q float64) float64
}

func sigmoid64(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

func mapRefs() []mapRef {
	return []mapRef{
		{op: metal.MapNeg, lo: -5, hi: 5, f: func(x, _, _ float64) float64 { return -x }, df: func(_, _, _ float64) float64 { return -1 }},
		{op: metal.MapExp, lo: -10, hi: 10, f: func(x, _, _ float64) float64 { return math.Exp(x) }, df: func(x, _, _ float64) float64 { return math.Exp(x) }},
		{op: metal.MapLog, lo: 0.01, hi: 50, f: func(x, _, _ float64) float64 { return math.Log(x) }, df: func(x, _, _ float64) float64 { return 1 / x }},
		{op: metal.MapSqrt, lo: 0.01, hi: 50, f: func(x, _, _ float64) float64 { return math.Sqrt(x) }, df: func(x, _, _ float64) float64 { return 0.5 / math.Sqrt(x) }},
		{op: metal.MapRsqrt, lo: 0.01, hi: 50, f: func(x, _, _ float64) float64 { return 1 / math.Sqrt(x) }, df: func(x, _, _ float64) float64 { return -0.5 / (x * math.Sqrt(x)) }},
		{op: metal.MapAbs, lo: -5, hi: 5, f: func(x, _, _ float64) float64 { return math.Abs(x) }, df: func(x, _, _ float64) float64 {
			switch {
			case x > 0:
				return 1
			case x < 0:
				return -1
			}
			return 0
		}},
		{op: metal.MapTanh, lo: -6, hi: 6, f: func(x, _, _ float64) float64 { return math.Tanh(x) }, df: func(x, _, _ float64) float64 { t := math.Tanh(x); return 1 - t*t }},
		{op: metal.MapSigmoid, lo: -20, hi: 20, f: func(x, _, _ float64) float64 { return sigmoid64(x) }, df: func(x, _, _ float64) float64 { s := sigmoid64(x); return s * (1 - s) }},
		{op: metal.MapReLU, lo: -5, hi: 5, f: func(x, _, _ float64) float64 { return math.Max(x, 0) }, df: func(x, _, _ float64) float64 {
			if x > 0 {
				return 1
			}
			return 0
		}},
		{op: metal.MapGELU, lo: -6, hi: 6, f: func(x, _, _ float64) float64 { return 0.5 * x * (1 + math.Erf(x/math.Sqrt2)) },
			df: func(x, _, _ float64) float64 {
				return 0.5*(1+math.Erf(x/math.Sqrt2)) + x*math.Exp(-0.5*x*x)/math.Sqrt(2*math.Pi)
			}},
		{op: metal.MapGELUTanh, lo: -6, hi: 6, f: func(x, _, _ float64) float64 {
			return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
		}, df: func(x, _, _ float64) float64 {
			k := math.Sqrt(2 / math.Pi)
			t := math.Tanh(k * (x + 0.044715*x*x*x))
			return 0.5*(1+t) + 0.5*x*(1-t*t)*k*(1+3*0.044715*x*x)
		}},
		{op: metal.MapSiLU, lo: -8, hi: 8, f: func(x, _, _ float64) float64 { return x * sigmoid64(x) },
			df: func(x, _, _ float64) float64 { s := sigmoid64(x); return s * (1 + x*(1-s)) }},
		{op: metal.MapSoftplus, p: 20, lo: -30, hi: 30, f: func(x, p, _ float64) float64 {
			if x > p {
				return x
			}
			return math.Log1p(math.Exp(x))
		}, df: func(x, p, _ float64) float64 {
			if x > p {
				return 1
			}
			return sigmoid64(x)
		}},
		{op: metal.MapClamp, p: -1.5, q: 2, lo: -4, hi: 4, f: func(x, p, q float64) float64 { return math.Min(math.Max(x, p), q) },
			df: func(x, p, q float64) float64 {
				if x > p && x < q {
					return 1
				}
				return 0
			}},
		{op: metal.MapPow, p: 3, lo: -3, hi: 3, f: func(x, p, _ float64) float64 { return math.Pow(x, p) },
			df: func(x, p, _ float64) float64 { return p * math.Pow(x, p-1) }},
		{op: metal.MapPow, p: 2.5, lo: 0.01, hi: 5, f: func(x, p, _ float64) float64 { return math.Pow(x, p) },
			df: func(x, p, _ float64) float64 { return p * math.Pow(x, p-1) }},
		{op: metal.MapPow, p: -2, lo: -4, hi: 4, f: func(x, p, _ float64) float64 { return math.Pow(x, p) },
			df: func(x, p, _ float64) float64 { return p * math.Pow(x, p-1) }},
		{op: metal.MapAddScalar, p: 0.75, lo: -5, hi: 5, f: func(x, p, _ float64) float64 { return x + p }, df: func(_, _, _ float64) float64 { return 1 }},
		{op: metal.MapMulScalar, p: -1.25, lo: -5, hi: 5, f: func(x, p, _ float64) float64 { return x * p }, df: func(_, p, _ float64) float64 { return p }},
	}
}

// Map checks map_f32 and map_bwd_f32, every function forward and backward,
// against float64 references on random odd lengths, with NaN passing through.
func Map(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(17, 18))
	for _, ref := range mapRefs() {
		for _, n := range append(Sizes, 1000) {
			x := Random(r, n, ref.lo, ref.hi)
			g := Random(r, n, -1, 1)
			x[0] = float32(math.NaN())
			xb, gb := Upload(t, d, x), Upload(t, d, g)
			y, dx := Empty(t, d, n), Empty(t, d, n)
			p, q := float32(ref.p), float32(ref.q)
			require.NoError(t, metal.RunMap(d, ref.op, y, xb, n, p, q))
			require.NoError(t, metal.RunMapBackward(d, ref.op, dx, gb, xb, y, n, p, q))
			want, wantD, scaleD := make([]float64, n), make([]float64, n), make([]float64, n)
			for i, v := range x {
				xv := float64(v)
				want[i] = ref.f(xv, float64(p), float64(q))
				wantD[i] = float64(g[i]) * ref.df(xv, float64(p), float64(q))
				// the derivative from the float32 output y carries y's rounding
				scaleD[i] = math.Abs(float64(g[i])) * 4 * math.Max(1, math.Abs(ref.df(xv, float64(p), float64(q))))
			}
			if ref.op == metal.MapNeg || ref.op == metal.MapAddScalar || ref.op == metal.MapMulScalar {
				wantD[0] = float64(g[0]) * ref.df(0, float64(p), float64(q)) // no NaN in their gradient
			}
			label := fmt.Sprintf("map %d n=%d", ref.op, n)
			AssertClose(t, Download(y, n), want, nil, label)
			AssertClose(t, Download(dx, n), wantD, scaleD, label+" backward")
			release(xb, gb, y, dx)
		}
	}
	// xᵖ's special cases, as Go's math.Pow has them
	inf := math.Inf(1)
	special := []float32{0, float32(math.Copysign(0, -1)), -2, 2, float32(inf), float32(-inf), 0.5, -0.5}
	xb, y := Upload(t, d, special), Empty(t, d, len(special))
	for _, p := range []float64{0, 1, 2, 3, -1, -2, 0.5, -1.5} {
		require.NoError(t, metal.RunMap(d, metal.MapPow, y, xb, len(special), float32(p), 0))
		got := Download(y, len(special))
		for i, v := range special {
			want := math.Pow(float64(v), p)
			ok := float64(got[i]) == want || Close(got[i], want, 0)
			require.True(t, ok && (math.IsNaN(want) || math.Signbit(float64(got[i])) == math.Signbit(want)),
				"pow(%v, %v) = %v, want %v", v, p, got[i], want)
		}
	}
	release(xb, y)
	for _, op := range []metal.MapOp{metal.MapMulScalar + 1} {
		b := Empty(t, d, 4)
		require.Error(t, metal.RunMap(d, op, b, b, 4, 2, 0), "no kernel for %d", op)
		b.Release()
	}
	require.NoError(t, d.Synchronize())
}
