package quant

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// The AVX2 + FMA row kernels of kernels_amd64.s; rowDot4 and rowDot8 check the
// lengths they hand over.

//go:noescape
func q4DotAVX(x, scales, biases, xsums *float32, w *uint32, groups, groupSize int) float32

//go:noescape
func q8DotAVX(x, scales, biases, xsums *float32, w *uint32, groups, groupSize int) float32

var hasAVX2FMA = cpu.X86.HasAVX2 && cpu.X86.HasFMA

func asmAvailable() bool { return hasAVX2FMA }

//go:noescape
func qnDotAVX(x, scales, biases, xsums *float32, w *byte, shifts *uint32, groups, groupSize, bits, hiOff, mask int) float32

//go:noescape
func qnDequantAVX(dst *float32, w *byte, scales, biases *float32, shifts *uint32, groups, groupSize, bits, hiOff, mask int)

// runLayout is how the any-width kernels find eight values in a run of `bits`
// bytes: values 0–3 in the dword at the run's start, 4–7 in the dword at byte
// hiOff, shifted right by shifts[i].
type runLayout struct {
	shifts [8]uint32
	hiOff  int
}

var runLayouts = func() (l [9]runLayout) {
	for bits := 2; bits <= 8; bits++ {
		hi := 4 * bits / 8
		base := 4*bits - 8*hi
		for i := range 4 {
			l[bits].shifts[i] = uint32(i * bits)
			l[bits].shifts[4+i] = uint32(base + i*bits)
		}
		l[bits].hiOff = hi
	}
	return l
}()

// asmRowDot is the dot product of x with row words w of a quantized matrix
// (see kernels_amd64.s). x is permuted for 4 bits (see q4DotAVX). For widths
// other than 4 and 8, last says w is the matrix's final row, whose last run the
// any-width kernel may not read past: it goes through Go.
func asmRowDot(bits int, x, scales, biases, xsums []float32, w []uint32, groups, groupSize int, last bool) float32 {
	switch bits {
	case 4:
		return q4DotAVX(&x[0], &scales[0], &biases[0], &xsums[0], &w[0], groups, groupSize)
	case 8:
		return q8DotAVX(&x[0], &scales[0], &biases[0], &xsums[0], &w[0], groups, groupSize)
	}
	l := &runLayouts[bits]
	if !last {
		return qnDotAVX(&x[0], &scales[0], &biases[0], &xsums[0], (*byte)(unsafe.Pointer(&w[0])), &l.shifts[0], groups, groupSize, bits, l.hiOff, 1<<bits-1)
	}
	// The final row: all groups but the last in assembly, the last in Go.
	var acc float32
	if groups > 1 {
		acc = qnDotAVX(&x[0], &scales[0], &biases[0], &xsums[0], (*byte)(unsafe.Pointer(&w[0])), &l.shifts[0], groups-1, groupSize, bits, l.hiOff, 1<<bits-1)
	}
	g := groups - 1
	q := make([]uint8, groupSize)
	Unpack(q, w[g*groupSize*bits/32:], bits)
	var d float32
	for j, v := range q {
		d += x[g*groupSize+j] * float32(v)
	}
	return acc + scales[g]*d + biases[g]*xsums[g]
}

//go:noescape
func q4Dot4AVX(x, scales, biases, xsums4 *float32, w *uint32, out *float32, xstride, groups, groupSize int)

//go:noescape
func q8Dot4AVX(x, scales, biases, xsums4 *float32, w *uint32, out *float32, xstride, groups, groupSize int)

// asmRowDot4 computes the dot products of four rows of x (4 bits: permuted)
// with row words w into out, for 4- and 8-bit weights.
func asmRowDot4(bits int, x []float32, xstride int, scales, biases, xsums4 []float32, w []uint32, out *[4]float32, groups, groupSize int) {
	_ = x[3*xstride+groups*groupSize-1]
	_ = xsums4[4*groups-1]
	if bits == 4 {
		q4Dot4AVX(&x[0], &scales[0], &biases[0], &xsums4[0], &w[0], &out[0], 4*xstride, groups, groupSize)
		return
	}
	q8Dot4AVX(&x[0], &scales[0], &biases[0], &xsums4[0], &w[0], &out[0], 4*xstride, groups, groupSize)
}

//go:noescape
func q4DequantAVX(dst *float32, w *uint32, scales, biases *float32, groups, groupSize int)

//go:noescape
func q8DequantAVX(dst *float32, w *uint32, scales, biases *float32, groups, groupSize int)

// dequantizeRowFast writes row r of m into dst with the AVX2 kernels (4 and 8
// bits; scale·q + bias in one FMA rounding) and reports whether it could.
func dequantizeRowFast(dst []float32, m *Matrix, r int) bool {
	if !hasAVX2FMA {
		return false
	}
	stride, ng := m.Stride(), m.Groups()
	_ = dst[m.Cols-1]
	if m.Bits != 4 && m.Bits != 8 {
		if r == m.Rows-1 {
			return false // the any-width kernel reads past a run: not at the very end
		}
		l := &runLayouts[m.Bits]
		qnDequantAVX(&dst[0], (*byte)(unsafe.Pointer(&m.Packed[r*stride])), &m.Scales[r*ng], &m.Biases[r*ng], &l.shifts[0], ng, m.GroupSize, m.Bits, l.hiOff, 1<<m.Bits-1)
		return true
	}
	q8DequantOrQ4 := q4DequantAVX
	if m.Bits == 8 {
		q8DequantOrQ4 = q8DequantAVX
	}
	q8DequantOrQ4(&dst[0], &m.Packed[r*stride], &m.Scales[r*ng], &m.Biases[r*ng], ng, m.GroupSize)
	return true
}
