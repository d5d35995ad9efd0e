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
