package quant

import "golang.org/x/sys/cpu"

// The AVX2 + FMA row kernels of kernels_amd64.s; rowDot4 and rowDot8 check the
// lengths they hand over.

//go:noescape
func q4DotAVX(x, scales, biases, xsums *float32, w *uint32, groups, groupSize int) float32

//go:noescape
func q8DotAVX(x, scales, biases, xsums *float32, w *uint32, groups, groupSize int) float32

var hasAVX2FMA = cpu.X86.HasAVX2 && cpu.X86.HasFMA

func asmAvailable() bool { return hasAVX2FMA }

func asmRowDot(bits int, x, scales, biases, xsums []float32, w []uint32, groups, groupSize int) float32 {
	if bits == 4 {
		return q4DotAVX(&x[0], &scales[0], &biases[0], &xsums[0], &w[0], groups, groupSize)
	}
	return q8DotAVX(&x[0], &scales[0], &biases[0], &xsums[0], &w[0], groups, groupSize)
}

//go:noescape
func q4DequantAVX(dst *float32, w *uint32, scales, biases *float32, groups, groupSize int)

//go:noescape
func q8DequantAVX(dst *float32, w *uint32, scales, biases *float32, groups, groupSize int)

// dequantizeRowFast writes row r of m into dst with the AVX2 kernels (4 and 8
// bits; scale·q + bias in one FMA rounding) and reports whether it could.
func dequantizeRowFast(dst []float32, m *Matrix, r int) bool {
	if !hasAVX2FMA || m.Bits != 4 && m.Bits != 8 {
		return false
	}
	stride, ng := m.Stride(), m.Groups()
	_ = dst[m.Cols-1]
	q8DequantOrQ4 := q4DequantAVX
	if m.Bits == 8 {
		q8DequantOrQ4 = q8DequantAVX
	}
	q8DequantOrQ4(&dst[0], &m.Packed[r*stride], &m.Scales[r*ng], &m.Biases[r*ng], ng, m.GroupSize)
	return true
}
