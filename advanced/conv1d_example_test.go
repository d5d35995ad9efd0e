package advanced_test

import (
	"fmt"

	"github.com/mlxtrain/mlxtrain/advanced"
	"github.com/mlxtrain/mlxtrain/autodiff"
)

// A width-3 causal filter on one channel: each output sees the input at its own
// time and the two before (zeros before the start). The gradients come from the
// fused backward.
func ExampleCausalConv1d() {
	x := autodiff.FromFloat64([]float64{1, 2, 3, 4}, 1, 4, 1) // (batch, length, channels)
	w := autodiff.FromFloat64([]float64{0.25, 0.5, 1}, 1, 3)  // (channels, k): oldest tap first
	tp := autodiff.NewTape()
	defer tp.Release()
	y := advanced.CausalConv1d(tp.Watch(x), tp.Watch(w), nil)
	fmt.Println(y.Float64s())
	tp.BackwardWith(y, autodiff.Full(autodiff.Float64, 1, 1, 4, 1))
	fmt.Println(tp.Grad(x).Float64s(), tp.Grad(w).Float64s())
	// Output:
	// [1 2.5 4.25 6]
	// [1.75 1.75 1.5 1] [3 6 10]
}

// Decoding keeps the last k−1 inputs per channel; each step filters the new input
// against them.
func ExampleCausalConv1dStep() {
	w := []float64{0.25, 0.5, 1}
	state := make([]float64, 2) // (batch 1, k−1 = 2, channels 1)
	y := make([]float64, 1)
	for _, x := range []float64{1, 2, 3, 4} {
		advanced.CausalConv1dStep(y, state, []float64{x}, w, nil, 1, 1, 3)
		fmt.Print(y[0], " ")
	}
	fmt.Println(state)
	// Output: 1 2.5 4.25 6 [3 4]
}
