package attention_test

import (
	"fmt"
	"math"

	"github.com/mlxtrain/mlxtrain/attention"
	"github.com/mlxtrain/mlxtrain/autodiff"
)

// ramp returns a tensor whose elements are small distinct values.
func ramp(shape ...int) *autodiff.Tensor {
	n := 1
	for _, s := range shape {
		n *= s
	}
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(math.Sin(float64(i)))
	}
	return autodiff.FromFloat32(x, shape...)
}

// Causal grouped-query attention on BSHD tensors: 4 query heads share 2 key/value
// heads, and the gradients flow back through the fused flash backward.
func ExampleFlashAttention() {
	q := ramp(1, 5, 4, 8) // (batch, seq, query heads, head dim)
	k := ramp(1, 5, 2, 8) // (batch, seq, key/value heads, head dim)
	v := ramp(1, 5, 2, 8)

	tp := autodiff.NewTape()
	defer tp.Release()
	out := attention.FlashAttention(tp.Watch(q), tp.Watch(k), tp.Watch(v), attention.Options{Causal: true})
	tp.BackwardWith(out, autodiff.Full(autodiff.Float32, 1, out.Shape()...))

	fmt.Println("out", out.Shape())
	fmt.Println("dq", tp.Grad(q).Shape(), "dk", tp.Grad(k).Shape(), "dv", tp.Grad(v).Shape())
	// The first query sees only the first key: its output is that key's value.
	fmt.Printf("%.4f\n%.4f\n", out.Float32s()[1:4], v.Float32s()[1:4])
	// Output:
	// out [1 5 4 8]
	// dq [1 5 4 8] dk [1 5 2 8] dv [1 5 2 8]
	// [0.8415 0.9093 0.1411]
	// [0.8415 0.9093 0.1411]
}

// Decoding with a cache: two new queries attend to the six keys so far, aligned
// to the end (the queries sit at positions 4 and 5), inside a sliding window of
// three keys. BHSD tensors run without a transpose.
func ExampleSDPA() {
	opt := attention.Options{Causal: true, Window: 3, Layout: attention.BHSD}
	q := ramp(1, 2, 2, 4) // (batch, heads, seq, head dim)
	k := ramp(1, 2, 6, 4)
	v := ramp(1, 2, 6, 4)
	ref := attention.SDPA(q, k, v, opt)
	flash := attention.FlashAttention(q, k, v, opt)
	diff := 0.0
	for i, x := range ref.Float32s() {
		diff = math.Max(diff, math.Abs(float64(x-flash.Float32s()[i])))
	}
	fmt.Println(ref.Shape(), diff < 1e-6)
	// Output: [1 2 2 4] true
}

// Rotary embeddings for queries at positions 10 and 11 of a sequence, rotating
// the first 4 of 8 dims in Llama's half-split convention.
func ExampleRoPE() {
	x := autodiff.FromFloat64([]float64{1, 0, 0, 0, 5, 6, 7, 8, 1, 0, 0, 0, 5, 6, 7, 8}, 1, 2, 1, 8)
	y := attention.RoPE(x, attention.RoPEOptions{Dims: 4, Offset: 10})
	row := y.Float64s()[:8]
	// Pair 0 is (x[0], x[2]), rotated by 10 radians; dims 4..7 pass through.
	fmt.Printf("%.4f %.4f %.4f\n", row[0], row[2], math.Hypot(row[0], row[2]))
	fmt.Println(row[4:])
	// Output:
	// -0.8391 -0.5440 1.0000
	// [5 6 7 8]
}
