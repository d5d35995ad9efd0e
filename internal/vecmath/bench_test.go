package vecmath

import "testing"

// BenchmarkGELU is the GELU with its derivative over a row of 512 (an MLP row of
// the tiny GPT) in L1.
func BenchmarkGELU(b *testing.B) {
	x := make([]float32, 512)
	for i := range x {
		x[i] = float32(i%97)*0.1 - 4.8
	}
	y, d := make([]float32, len(x)), make([]float32, len(x))
	b.SetBytes(int64(4 * len(x)))
	for b.Loop() {
		GELU(y, d, x, nil)
	}
}

// BenchmarkSoftmaxRow is one online-softmax step over a row of 64 scores (a tile
// row of the attention kernels) in L1.
func BenchmarkSoftmaxRow(b *testing.B) {
	x := make([]float32, 64)
	for i := range x {
		x[i] = float32(i%13)*0.3 - 2
	}
	s := make([]float32, len(x))
	for b.Loop() {
		copy(s, x)
		SoftmaxRow(s, 0)
	}
}

// BenchmarkGELUPaths is BenchmarkGELU on each path: avx512 (where the CPU has
// it), avx2 and go; nod keeps no derivative.
func BenchmarkGELUPaths(b *testing.B) {
	x := make([]float32, 512)
	for i := range x {
		x[i] = float32(i%97)*0.1 - 4.8
	}
	y, d := make([]float32, len(x)), make([]float32, len(x))
	avx512, avx2 := AVX512, AVX2FMA
	defer func() { AVX512, AVX2FMA = avx512, avx2 }()
	for _, p := range []struct {
		name         string
		avx512, avx2 bool
	}{{"avx512", true, true}, {"avx2", false, true}, {"go", false, false}} {
		if p.avx2 && !avx2 || p.avx512 && !avx512 {
			continue
		}
		AVX512, AVX2FMA = p.avx512, p.avx2
		for _, keep := range []bool{true, false} {
			dd, name := d, p.name
			if !keep {
				dd, name = nil, name+"/nod"
			}
			b.Run(name, func(b *testing.B) {
				b.SetBytes(int64(4 * len(x)))
				for b.Loop() {
					GELU(y, dd, x, nil)
				}
			})
		}
	}
	AVX512, AVX2FMA = avx512, avx2
}

// BenchmarkMulSum is the GELU MLP's backward epilogue over a row of 512 in L1:
// dst = a·d, sum += dst.
func BenchmarkMulSum(b *testing.B) {
	a, d, dst, sum := make([]float32, 512), make([]float32, 512), make([]float32, 512), make([]float32, 512)
	for i := range a {
		a[i], d[i] = float32(i%7)*0.1, float32(i%5)*0.2
	}
	b.SetBytes(int64(4 * len(a)))
	for b.Loop() {
		MulSum(dst, sum, a, d)
	}
}
