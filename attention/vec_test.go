package attention

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestExpf(t *testing.T) {
	worst := 0.0
	for x := float32(-103.5); x < 88.7; x += 0.0037 {
		want := math.Exp(float64(x))
		if want < 0x1p-126 { // subnormal results: absolute error only
			assert.InDelta(t, want, float64(expf(x)), 0x1p-149, "x=%v", x)
			continue
		}
		worst = math.Max(worst, math.Abs(float64(expf(x))-want)/want)
	}
	t.Logf("worst relative error %.3g", worst)
	assert.Less(t, worst, 7e-8, "within float32 rounding (2^-24 ≈ 6e-8) plus the polynomial's 1e-8")
	assert.Equal(t, float32(0), expf(float32(math.Inf(-1))))
	assert.Equal(t, float32(0), expf(-200))
	assert.True(t, math.IsInf(float64(expf(89)), 1))
	assert.True(t, math.IsNaN(float64(expf(float32(math.NaN())))))
	assert.Equal(t, float32(1), expf(0))
}

func TestVectorKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	for _, n := range []int{0, 1, 3, 4, 7, 33, 127} {
		x := normals(rng, n)
		rows := normals(rng, 9*(n+2)) // 9 rows at stride n+2
		stride := n + 2
		s := make([]float64, 9)
		dots(s, x, rows, stride, 0.5)
		for j := range 9 {
			want := 0.0
			for i := range n {
				want += x[i] * rows[j*stride+i]
			}
			assert.InDelta(t, 0.5*want, s[j], 1e-12, "n=%d j=%d", n, j)
		}
		w := normals(rng, 9)
		w[4], w[5], w[6], w[7] = 0, 0, 0, 0 // a skipped group
		dst := normals(rng, n)
		want := append([]float64(nil), dst...)
		for j := range 9 {
			for i := range n {
				want[i] += w[j] * rows[j*stride+i]
			}
		}
		combine(dst, w, rows, stride)
		assert.InDeltaSlice(t, want, dst, 1e-12, "n=%d", n)
	}
}
