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
