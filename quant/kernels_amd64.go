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
