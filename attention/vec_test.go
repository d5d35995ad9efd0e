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
	assert.Less(t, worst, 7e-8, "within float32 rounding (2^-24 ≈ 6e-8)")
	assert.Equal(t, float32(0), expf(float32(math.Inf(-1))))
	assert.Equal(t, float32(0), expf(-200))
	assert.True(t, math.IsInf(float64(expf(89)), 1))
	assert.True(t, math.IsNaN(float64(expf(float32(math.NaN())))))
	assert.Equal(t, float32(1), expf(0))

	// expShift: the float32 and float64 paths agree, and the sum is returned.
	s64 := []float64{-3, 0.5, 2, -1e9}
	s32 := []float32{-3, 0.5, 2, -1e9}
	sum64, sum32 := expShift(s64, 2), expShift(s32, 2)
	want := []float64{math.Exp(-5), math.Exp(-1.5), 1, 0}
	assert.InDeltaSlice(t, want, s64, 1e-15)
	assert.InDeltaSlice(t, want, to64(s32), 1e-7)
	assert.InDelta(t, want[0]+want[1]+want[2], sum64, 1e-15)
	assert.InDelta(t, sum64, float64(sum32), 1e-6)
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
