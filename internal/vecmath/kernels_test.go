package vecmath

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sizes exercise the empty row, the tail alone and the 8-lane body with tails.
var sizes = []int{0, 1, 7, 8, 33, 127}

// withPaths runs f with the assembly kernels (where the CPU has them), again
// with AVX2 alone when the CPU has AVX-512, and again with the Go loops alone.
func withPaths(t *testing.T, f func(t *testing.T)) {
	t.Run("dispatch", f)
	if AVX512 {
		t.Run("avx2", func(t *testing.T) {
			AVX512 = false
			defer func() { AVX512 = true }()
			f(t)
		})
	}
	if AVX2FMA {
		t.Run("go", func(t *testing.T) {
			AVX2FMA = false
			defer func() { AVX2FMA = true }()
			f(t)
		})
	}
}

func normals(rng *rand.Rand, n int, scale float64) []float32 {
	xs := make([]float32, n)
	for i := range xs {
		xs[i] = float32(rng.NormFloat64() * scale)
	}
	return xs
}

func TestExp(t *testing.T) {
	for x := float32(-87.29); x <= 0; x += 0.0371 {
		assert.InEpsilon(t, math.Exp(float64(x)), float64(Exp(x)), 2e-7, "exp(%g)", x)
	}
	assert.Equal(t, float32(1), Exp(0))
	for _, x := range []float32{-87.31, -1000, float32(math.Inf(-1)), float32(math.NaN())} {
		assert.Equal(t, float32(0), Exp(x), "exp(%g)", x)
	}
}

// geluRef is gelu and its derivative in float64 from math.Erfc.
func geluRef(v float64) (y, dy float64) {
	phi := 0.5 * math.Erfc(-v/math.Sqrt2)
	return v * phi, phi + v*math.Exp(-v*v/2)/math.Sqrt(2*math.Pi)
}

func TestGELU(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		for _, n := range append(sizes, 512) {
			x, b := normals(rng, n, 4), normals(rng, n, 1)
			for i, v := range []float32{-30, 30, 0, -9, float32(math.Copysign(0, -1)), 13.5, -13.5} {
				if i < n {
					x[i] = v
				}
			}
			for _, bias := range [][]float32{nil, b} {
				for _, keepD := range []bool{true, false} {
					y := make([]float32, n)
					var d []float32
					if keepD {
						d = make([]float32, n)
					}
					GELU(y, d, x, bias)
					for i := range x {
						v := x[i]
						if bias != nil {
							v += bias[i]
						}
						wy, wd := geluRef(float64(v))
						assert.InDelta(t, wy, float64(y[i]), 3e-7*math.Max(1, math.Abs(wy)), "n=%d gelu(%g)", n, v)
						if keepD {
							assert.InDelta(t, wd, float64(d[i]), 3e-7, "n=%d gelu'(%g)", n, v)
						}
					}
				}
			}
			// In place: x is y.
			y := append([]float32(nil), x...)
			d := make([]float32, n)
			GELU(y, d, y, b)
			for i := range x {
				wy, _ := geluRef(float64(x[i] + b[i]))
				assert.InDelta(t, wy, float64(y[i]), 3e-7*math.Max(1, math.Abs(wy)), "n=%d in place", n)
			}
		}
		nan := []float32{float32(math.NaN()), 1, 2, 3, 4, 5, 6, 7, float32(math.NaN())}
		GELU(nan, nil, nan, nil)
		assert.True(t, math.IsNaN(float64(nan[0])) && math.IsNaN(float64(nan[8])), "NaN stays NaN")
	})
}

func TestGELU64(t *testing.T) {
	x := []float64{-3, -0.5, 0, 0.25, 2}
	b := []float64{0.5, 0, 1, -1, 0}
	y, d := make([]float64, len(x)), make([]float64, len(x))
	GELU64(y, d, x, b)
	for i := range x {
		// gelu from erf instead of erfc, and its derivative by central differences.
		v := x[i] + b[i]
		g := func(v float64) float64 { return v * 0.5 * (1 + math.Erf(v/math.Sqrt2)) }
		assert.InDelta(t, g(v), y[i], 1e-15)
		assert.InDelta(t, (g(v+1e-6)-g(v-1e-6))/2e-6, d[i], 1e-8)
	}
}

func TestSoftmaxRow(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(3, 4))
		for _, n := range sizes {
			s := normals(rng, n, 4)
			if n > 2 {
				s[1] = float32(math.Inf(-1))
			}
			ref := append([]float32(nil), s...)
			m, sum := SoftmaxRow(s, -3)
			wantM := float32(-3)
			for _, x := range ref {
				wantM = max(wantM, x)
			}
			assert.Equal(t, wantM, m, "n=%d max", n)
			wantSum := 0.0
			for i, x := range ref {
				// The difference is rounded to float32 first, as the kernels compute it.
				e := math.Exp(float64(x - wantM))
				wantSum += e
				assert.InEpsilon(t, e+1e-30, float64(s[i])+1e-30, 2e-7, "n=%d exp %d", n, i)
			}
			if n > 2 {
				assert.Equal(t, float32(0), s[1], "masked entry")
			}
			assert.InEpsilon(t, wantSum+1e-30, float64(sum)+1e-30, 1e-6, "n=%d sum", n)
		}
	})
}

func TestSoftmaxGradRow(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(5, 6))
		for _, n := range sizes {
			p, ds := normals(rng, n, 1), normals(rng, n, 1)
			p0, ds0 := append([]float32(nil), p...), append([]float32(nil), ds...)
			SoftmaxGradRow(p, ds, 1.5, 0.25, 0.3)
			for i := range p {
				e := math.Exp(float64(p0[i] - 1.5))
				assert.InEpsilon(t, e, float64(p[i]), 2e-7, "n=%d p %d", n, i)
				assert.InDelta(t, e*(float64(ds0[i])-0.25)*0.3, float64(ds[i]), 1e-6, "n=%d ds %d", n, i)
			}
		}
	})
}

func TestMulSumAddTo(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(7, 8))
		for _, n := range sizes {
			a, b, sum := normals(rng, n, 1), normals(rng, n, 1), normals(rng, n, 1)
			sum0 := append([]float32(nil), sum...)
			dst := make([]float32, n)
			MulSum(dst, sum, a, b)
			for i := range a {
				require.Equal(t, a[i]*b[i], dst[i], "n=%d product %d", n, i)
				require.Equal(t, sum0[i]+dst[i], sum[i], "n=%d sum %d", n, i)
			}
			// The sources may be longer than dst.
			src := normals(rng, n+3, 1)
			acc := append([]float32(nil), a...)
			AddTo(acc, src)
			for i := range a {
				require.Equal(t, a[i]+src[i], acc[i], "n=%d add %d", n, i)
			}
		}
	})
}

// The assembly and the Go loop agree to the rounding of their different
// operation orders (fused multiply-adds in one, not the other).
func TestGELUPathsAgree(t *testing.T) {
	if !AVX2FMA {
		t.Skip("no AVX2")
	}
	rng := rand.New(rand.NewPCG(9, 10))
	x := normals(rng, 4096, 3)
	gy, gd := make([]float32, len(x)), make([]float32, len(x))
	geluGo(gy, gd, x, nil)
	withPaths(t, func(t *testing.T) {
		y, d := make([]float32, len(x)), make([]float32, len(x))
		GELU(y, d, x, nil)
		for i := range x {
			assert.InDelta(t, gy[i], y[i], 3e-7*math.Max(1, math.Abs(float64(gy[i]))), "gelu(%g)", x[i])
			assert.InDelta(t, gd[i], d[i], 3e-7, "gelu'(%g)", x[i])
		}
	})
}

// GELU over a fine grid of arguments and extreme ones, against the erfc form.
func TestGELUGrid(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		var xs []float64
		for v := -12.0; v <= 12; v += 0.0137 {
			xs = append(xs, v)
		}
		xs = append(xs, 0, math.Copysign(0, -1), 1e-30, -1e-30, 40, -40, 1e10, -1e10)
		rng := rand.New(rand.NewPCG(3, 4))
		x, b := make([]float32, len(xs)), normals(rng, len(xs), 1)
		for i, v := range xs {
			x[i] = float32(v)
		}
		y, d := make([]float32, len(x)), make([]float32, len(x))
		GELU(y, d, x, b)
		for i := range x {
			wantY, wantD := geluRef(float64(x[i] + b[i]))
			if math.Abs(float64(y[i])-wantY) > 3e-7*math.Max(1, math.Abs(wantY)) || math.Abs(float64(d[i])-wantD) > 3e-7 {
				t.Fatalf("gelu(%g) = %g, %g; want %g, %g", x[i]+b[i], y[i], d[i], wantY, wantD)
			}
		}
	})
}

func TestDot(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(11, 12))
		for _, n := range append(sizes, 16, 24, 32) {
			x, y := normals(rng, n, 1), normals(rng, n+5, 1)
			want, scale := 0.0, 0.0
			for i := range x {
				want += float64(x[i]) * float64(y[i])
				scale += math.Abs(float64(x[i]) * float64(y[i]))
			}
			assert.InDelta(t, want, float64(Dot(x, y)), 1e-6*math.Max(scale, 1), "n=%d", n)
		}
	})
}

func TestScaleAddScaled(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(13, 14))
		for _, n := range append(sizes, 16, 128) {
			x, acc := normals(rng, n+3, 1), normals(rng, n, 1)
			a := float32(rng.NormFloat64())
			dst := make([]float32, n)
			Scale(dst, a, x)
			for i := range dst {
				require.Equal(t, a*x[i], dst[i], "n=%d scale %d", n, i)
			}
			want := make([]float64, n)
			for i := range want {
				want[i] = float64(acc[i]) + float64(a)*float64(x[i])
			}
			AddScaled(acc, a, x)
			for i := range acc {
				assert.InDelta(t, want[i], float64(acc[i]), 1e-6*(1+math.Abs(want[i])), "n=%d add scaled %d", n, i)
			}
		}
	})
}

// Prefetch is a hint: it changes nothing, on any length.
func TestPrefetch(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	for _, n := range append(sizes, 16, 128) {
		s := normals(rng, n, 1)
		want := append([]float32{}, s...)
		Prefetch(s)
		Prefetch(s[:n/2])
		assert.Equal(t, want, s, "n=%d", n)
	}
}

// TestGELUSweep holds every path to its stated accuracy on a dense sweep of
// arguments (every 1e-4 over [−14, 14], where φ underflows, and beyond) and to
// the float64 formulas' values at ±0, ±Inf and NaN; -v logs the largest errors.
func TestGELUSweep(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		var x []float32
		for i := -140000; i <= 140000; i++ {
			x = append(x, float32(float64(i)*1e-4))
		}
		x = append(x, 1e-30, -1e-30, 1e-40, -1e-40, 20, -20, 1e10, -1e10, 3e38, -3e38)
		y, d := make([]float32, len(x)), make([]float32, len(x))
		GELU(y, d, x, nil)
		var ey, ed, wy, wd float64
		for i, v := range x {
			ry, rd := geluRef(float64(v))
			if e := math.Abs(float64(y[i])-ry) / math.Max(1, math.Abs(ry)); e > ey {
				ey, wy = e, float64(v)
			}
			if e := math.Abs(float64(d[i]) - rd); e > ed {
				ed, wd = e, float64(v)
			}
		}
		t.Logf("max |Δgelu|/max(1,|gelu|) = %.3g at %g, max |Δgelu′| = %.3g at %g", ey, wy, ed, wd)
		assert.LessOrEqual(t, ey, 1.4e-7)
		assert.LessOrEqual(t, ed, 2e-7)

		inf, nan := float32(math.Inf(1)), float32(math.NaN())
		sx := []float32{0, float32(math.Copysign(0, -1)), inf, -inf, nan, 1, 2, 3, 4, 5, 6, 7, inf, -inf, nan, 0, 1}
		sy, sd := make([]float32, len(sx)), make([]float32, len(sx))
		GELU(sy, sd, sx, nil)
		for i, v := range sx {
			ry, rd := geluRef(float64(v))
			if math.IsNaN(ry) {
				assert.True(t, math.IsNaN(float64(sy[i])), "gelu(%g) = %g, want NaN", v, sy[i])
			} else {
				assert.InDelta(t, ry, float64(sy[i]), 3e-7*math.Max(1, math.Abs(ry)), "gelu(%g)", v)
				assert.Equal(t, math.Signbit(ry), math.Signbit(float64(sy[i])), "gelu(%g) sign", v)
			}
			if math.IsNaN(rd) {
				assert.True(t, math.IsNaN(float64(sd[i])), "gelu'(%g) = %g, want NaN", v, sd[i])
			} else {
				assert.InDelta(t, rd, float64(sd[i]), 3e-7, "gelu'(%g)", v)
			}
		}
	})
}
