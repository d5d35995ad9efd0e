//go:build amd64

package attention

import (
	"sync"

	"github.com/mlxtrain/mlxtrain/internal/vecmath"
)

//go:noescape
func halfToFloat32F16C(dst *float32, src *uint16, n int)

//go:noescape
func float32ToHalfF16C(dst *uint16, src *float32, n int)

//go:noescape
func halfRowsToFloat32F16C(dst *float32, src *uint16, rows, d, stride int)

// halfRowsToFloat32 converts rows rows of d halves, stride apart in src, into
// dst (rows×d, contiguous).
func halfRowsToFloat32(dst []float32, src []uint16, rows, d, stride int) {
	if rows == 0 {
		return
	}
	if d%8 == 0 && hasF16C() {
		_ = dst[rows*d-1]
		_ = src[(rows-1)*stride+d-1]
		halfRowsToFloat32F16C(&dst[0], &src[0], rows, d, stride)
		return
	}
	for r := range rows {
		halvesToFloat32(dst[r*d:(r+1)*d], src[r*stride:])
	}
}

// cpuid1ECX returns ECX of CPUID leaf 1.
func cpuid1ECX() uint32

// hasF16C reports the half-precision conversions (with AVX, which they need and
// whose OS support vecmath.AVX includes).
var hasF16C = sync.OnceValue(func() bool {
	return vecmath.AVX && cpuid1ECX()&(1<<29) != 0
})

// halvesToFloat32 converts src to float32 into dst (same length).
func halvesToFloat32(dst []float32, src []uint16) {
	src = src[:len(dst)]
	n := len(dst) &^ 7
	if n > 0 && hasF16C() {
		halfToFloat32F16C(&dst[0], &src[0], n)
	} else {
		n = 0
	}
	halvesToFloat32Go(dst[n:], src[n:])
}

// float32ToHalves rounds src to float16 into dst (same length).
func float32ToHalves(dst []uint16, src []float32) {
	src = src[:len(dst)]
	n := len(dst) &^ 7
	if n > 0 && hasF16C() {
		float32ToHalfF16C(&dst[0], &src[0], n)
	} else {
		n = 0
	}
	float32ToHalvesGo(dst[n:], src[n:])
}
