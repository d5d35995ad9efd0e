//go:build !amd64

package quant

func asmAvailable() bool { return false }

func asmRowDot(bits int, x, scales, biases, xsums []float32, w []uint32, groups, groupSize int, last bool) float32 {
	panic("quant: no assembly kernels on this architecture")
}

func dequantizeRowFast(dst []float32, m *Matrix, r int) bool { return false }

func asmRowDot4(bits int, x []float32, xstride int, scales, biases, xsums4 []float32, w []uint32, out *[4]float32, groups, groupSize int) {
	panic("quant: no assembly kernels on this architecture")
}
