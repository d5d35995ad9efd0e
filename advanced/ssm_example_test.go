package advanced_test

import (
	"fmt"
	"math"

	"github.com/mlxtrain/mlxtrain/advanced"
	"github.com/mlxtrain/mlxtrain/autodiff"
)

// One channel with a one-dimensional state: with Δ = ln 2 and A = −1 the state
// halves each step before taking in Δ·B·x, and y reads it through C (here 1) plus
// the skip D·x (here 0).
func ExampleSelectiveScan() {
	dt := math.Ln2
	x := autodiff.FromFloat64([]float64{1 / dt, 0, 0, 2 / dt}, 1, 4, 1) // (batch, length, inner)
	delta := autodiff.Full(autodiff.Float64, dt, 1, 4, 1)
	A := autodiff.FromFloat64([]float64{-1}, 1, 1) // (inner, state)
	B := autodiff.Full(autodiff.Float64, 1, 1, 4, 1)
	C := autodiff.Full(autodiff.Float64, 1, 1, 4, 1)
	D := autodiff.Zeros(autodiff.Float64, 1)

	tp := autodiff.NewTape()
	defer tp.Release()
	y := advanced.SelectiveScan(tp.Watch(x), delta, tp.Watch(A), B, C, D, advanced.SSMOptions{Chunk: 2})
	fmt.Printf("%.4g\n", y.Float64s())
	// Gradients flow back through the fused backward, which recomputes each chunk
	// of two steps from the state kept at its start.
	tp.BackwardWith(y, autodiff.FromFloat64([]float64{0, 0, 0, 1}, 1, 4, 1))
	fmt.Printf("dy3/dA = %.4f\n", tp.Grad(A).Float64s()[0])
	// Output:
	// [1 0.5 0.25 2.125]
	// dy3/dA = 0.2599
}

// The kernels work on plain slices: a step at a time for generation.
func ExampleSelectiveScanStep() {
	h := []float32{0, 0}   // (batch 1, inner 1, state 2)
	A := []float32{-1, -2} // (inner, state)
	b := []float32{1, 1}   // (batch, state)
	c := []float32{1, -1}  // (batch, state)
	y := make([]float32, 1)
	for _, x := range []float32{1, 1} {
		advanced.SelectiveScanStep(y, h, []float32{x}, []float32{0.5}, A, b, c, nil, 1, 1, 2)
		fmt.Printf("y %.4f h %.4f\n", y[0], h)
	}
	// Output:
	// y 0.0000 h [0.5000 0.5000]
	// y 0.1193 h [0.8033 0.6839]
}
