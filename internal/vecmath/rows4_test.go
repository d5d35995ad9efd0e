package vecmath

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var rows4Sizes = []int{0, 1, 7, 8, 16, 33, 64, 120, 127, 128}

// TestSoftmaxRows4 checks the four-row softmax against SoftmaxRow on each row
// (exactly: the same lanes, the same order of sums) and against float64
// exponentials, with masked entries, a row of old maximum −Inf and one whose
// old maximum is above every score; the gaps between rows stay untouched.
func TestSoftmaxRows4(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(41, 42))
		for _, n := range rows4Sizes {
			lds := n + 5
			s := normals(rng, 3*lds+n+2, 4)
			for r := range 4 {
				if n > 3 {
					s[r*lds+r] = float32(math.Inf(-1))
				}
			}
			ref := append([]float32(nil), s...)
			m0 := [4]float32{float32(math.Inf(-1)), -3, 20, 0.5}
			m, sum := m0, [4]float32{9, 9, 9, 9}
			SoftmaxRows4(s, lds, n, &m, &sum)
			want := append([]float32(nil), ref...)
			for r := range 4 {
				row := want[r*lds : r*lds+n]
				wm, ws := m0[r], float32(0)
				if n > 0 {
					wm, ws = SoftmaxRow(row, m0[r])
				}
				require.Equal(t, wm, m[r], "n=%d row %d max", n, r)
				require.Equal(t, ws, sum[r], "n=%d row %d sum", n, r)
				ws64 := 0.0
				for j, x := range ref[r*lds : r*lds+n] {
					e := math.Exp(float64(x - wm))
					ws64 += e
					assert.InEpsilon(t, e+1e-30, float64(s[r*lds+j])+1e-30, 2e-7, "n=%d row %d exp %d", n, r, j)
				}
				assert.InEpsilon(t, ws64+1e-30, float64(sum[r])+1e-30, 1e-6, "n=%d row %d sum", n, r)
			}
			require.Equal(t, want, s, "n=%d rows as SoftmaxRow, gaps untouched", n)
		}
	})
}

// TestSoftmaxGradRows4 checks the four-row softmax gradient against
// SoftmaxGradRow on each row (exactly) and against float64 formulas.
func TestSoftmaxGradRows4(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(43, 44))
		for _, n := range rows4Sizes {
			lds := n + 11
			p, ds := normals(rng, 3*lds+n+1, 1), normals(rng, 3*lds+n+1, 1)
			p0, ds0 := append([]float32(nil), p...), append([]float32(nil), ds...)
			lse, delta := [4]float32{1.5, 0.5, -1, 3}, [4]float32{0.25, -0.5, 0, 2}
			SoftmaxGradRows4(p, ds, lds, n, &lse, &delta, 0.3)
			wp, wds := append([]float32(nil), p0...), append([]float32(nil), ds0...)
			for r := range 4 {
				SoftmaxGradRow(wp[r*lds:r*lds+n], wds[r*lds:r*lds+n], lse[r], delta[r], 0.3)
				for j := range n {
					i := r*lds + j
					e := math.Exp(float64(p0[i] - lse[r]))
					assert.InEpsilon(t, e, float64(p[i]), 2e-7, "n=%d row %d p %d", n, r, j)
					assert.InDelta(t, e*(float64(ds0[i])-float64(delta[r]))*0.3, float64(ds[i]), 1e-5, "n=%d row %d ds %d", n, r, j)
				}
			}
			require.Equal(t, wp, p, "n=%d p as SoftmaxGradRow, gaps untouched", n)
			require.Equal(t, wds, ds, "n=%d ds as SoftmaxGradRow, gaps untouched", n)
		}
	})
}

// BenchmarkSoftmaxRows4 is BenchmarkSoftmaxRow on four rows of 64 at once.
func BenchmarkSoftmaxRows4(b *testing.B) {
	x := make([]float32, 4*64)
	for i := range x {
		x[i] = float32(i%13)*0.3 - 2
	}
	s := make([]float32, len(x))
	for b.Loop() {
		copy(s, x)
		m, sum := [4]float32{}, [4]float32{}
		SoftmaxRows4(s, 64, 64, &m, &sum)
	}
}

// TestSoftmaxGradPRows4 checks the gradient from known probabilities against
// SoftmaxGradRow's arithmetic after its exponential (exactly) and a float64
// formula; p is left as it was.
func TestSoftmaxGradPRows4(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(45, 46))
		for _, n := range rows4Sizes {
			lds := n + 3
			p, ds := normals(rng, 3*lds+n+1, 1), normals(rng, 3*lds+n+1, 1)
			p0, ds0 := append([]float32(nil), p...), append([]float32(nil), ds...)
			delta := [4]float32{0.25, -0.5, 0, 2}
			SoftmaxGradPRows4(p, ds, lds, n, &delta, 0.3)
			require.Equal(t, p0, p, "p is read only")
			for r := range 4 {
				for j := range n {
					i := r*lds + j
					require.Equal(t, p0[i]*0.3*(ds0[i]-delta[r]), ds[i], "n=%d row %d ds %d", n, r, j)
					assert.InDelta(t, float64(p0[i])*0.3*(float64(ds0[i])-float64(delta[r])), float64(ds[i]), 1e-6)
				}
			}
			for i := range ds {
				if r, j := i/lds, i%lds; r > 3 || j >= n {
					require.Equal(t, ds0[i], ds[i], "n=%d gap %d untouched", n, i)
				}
			}
		}
	})
}

// TestScaleRows4 checks the row scaling against a product per element.
func TestScaleRows4(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(47, 48))
		for _, n := range rows4Sizes {
			lds, ldd := n+7, n+1
			src := normals(rng, 3*lds+n, 1)
			dst := normals(rng, 3*ldd+n+2, 1)
			dst0 := append([]float32(nil), dst...)
			a := [4]float32{0.5, -2, 0, 1.0 / 3}
			ScaleRows4(dst, ldd, src, lds, n, &a)
			for i := range dst {
				r, j := i/ldd, i%ldd
				if r > 3 || j >= n {
					require.Equal(t, dst0[i], dst[i], "n=%d gap %d untouched", n, i)
					continue
				}
				require.Equal(t, a[r]*src[r*lds+j], dst[i], "n=%d row %d col %d", n, r, j)
			}
		}
	})
}

// TestSoftmaxGradPDeltaRows4 checks the gradient with each row's delta computed
// from the row against float64 sums and formulas, and against
// SoftmaxGradPRows4 given the delta it returned (exactly).
func TestSoftmaxGradPDeltaRows4(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(49, 50))
		for _, n := range rows4Sizes {
			lds := n + 9
			p, ds := normals(rng, 3*lds+n, 1), normals(rng, 3*lds+n, 1)
			p0, ds0 := append([]float32(nil), p...), append([]float32(nil), ds...)
			var delta [4]float32
			SoftmaxGradPDeltaRows4(p, ds, lds, n, &delta, 0.3)
			require.Equal(t, p0, p, "p is read only")
			want := append([]float32(nil), ds0...)
			SoftmaxGradPRows4(p0, want, lds, n, &delta, 0.3)
			require.Equal(t, want, ds, "n=%d as SoftmaxGradPRows4 with the same deltas", n)
			for r := range 4 {
				d64 := 0.0
				for j := range n {
					d64 += float64(p0[r*lds+j]) * float64(ds0[r*lds+j])
				}
				assert.InDelta(t, d64, float64(delta[r]), 1e-5*math.Sqrt(float64(n)+1), "n=%d row %d delta", n, r)
				for j := range n {
					i := r*lds + j
					assert.InDelta(t, float64(p0[i])*0.3*(float64(ds0[i])-d64), float64(ds[i]), 1e-5)
				}
			}
		}
	})
}
