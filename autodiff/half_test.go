package autodiff

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestHalfRoundTripsEveryEncoding(t *testing.T) {
	for h := range 1 << 16 {
		f := HalfToFloat32(uint16(h))
		if math.IsNaN(float64(f)) {
			assert.True(t, math.IsNaN(float64(HalfToFloat32(Float32ToHalf(f)))))
			continue
		}
		assert.Equal(t, uint16(h), Float32ToHalf(f), "encoding %#04x (%g)", h, f)
	}
}

func TestHalfRoundsToNearestEven(t *testing.T) {
	// Between consecutive halves, values below the midpoint go down, above go up,
	// and the midpoint goes to the even encoding.
	for _, h := range []uint16{0x0001, 0x0200, 0x03ff, 0x3c00, 0x3c01, 0x7bfe, 0x8400, 0xbc01} {
		lo, hi := float64(HalfToFloat32(h)), float64(HalfToFloat32(h+1))
		mid := (lo + hi) / 2
		assert.Equal(t, h, Float32ToHalf(float32(lo+(mid-lo)/4)), "%#x below", h)
		assert.Equal(t, h+1, Float32ToHalf(float32(mid+(hi-mid)/4)), "%#x above", h)
		even := h
		if h&1 == 1 {
			even = h + 1
		}
		assert.Equal(t, even, Float32ToHalf(float32(mid)), "%#x midpoint", h)
	}
	assert.Equal(t, uint16(0x7c00), Float32ToHalf(65520), "65520 rounds to +Inf")
	assert.Equal(t, uint16(0x7bff), Float32ToHalf(65519))
	assert.Equal(t, uint16(0x8000), Float32ToHalf(-1e-10))
}

func TestBFloat16(t *testing.T) {
	for _, f := range []float32{0, 1, -1, 3.140625, 0x1p100, -0x1p-100} {
		assert.Equal(t, f, BFloat16ToFloat32(Float32ToBFloat16(f)), "%g is exact in bf16", f)
	}
	// 1 + 2^-8 is the midpoint between 1 and 1+2^-7: ties to even gives 1.
	assert.Equal(t, float32(1), BFloat16ToFloat32(Float32ToBFloat16(1+1.0/256)))
	assert.Equal(t, float32(1+1.0/128), BFloat16ToFloat32(Float32ToBFloat16(1+1.0/256+1.0/4096)))
	assert.True(t, math.IsNaN(float64(BFloat16ToFloat32(Float32ToBFloat16(float32(math.NaN()))))))
}
