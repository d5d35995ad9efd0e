//go:build !amd64

package models

// geluRow32 is geluRows32 on one row: y = gelu(y + b), d = gelu'(y + b).
func geluRow32(y, d, b []float32) { geluRowGo(y, d, b) }

func hasAVX2FMA() bool { return false }

func mulSum32(dst, sum, a, b []float32) { mulSumGo(dst, sum, a, b) }

// addTo32 adds src to dst elementwise.
func addTo32(dst, src []float32) {
	src = src[:len(dst)]
	for i := range src {
		dst[i] += src[i]
	}
}
