package advanced_test

import (
	"fmt"

	"github.com/mlxtrain/mlxtrain/advanced"
	"github.com/mlxtrain/mlxtrain/autodiff"
)

// Running sums, and the running products of 2×2 matrices: the operator only has
// to be associative, not commutative.
func ExampleParallelScan() {
	xs := []int{3, 1, 4, 1, 5, 9, 2, 6}
	sums := make([]int, len(xs))
	advanced.ParallelScan(sums, xs, func(a, b int) int { return a + b })
	fmt.Println(sums)

	type mat [4]int
	mul := func(x, y mat) mat {
		return mat{x[0]*y[0] + x[1]*y[2], x[0]*y[1] + x[1]*y[3], x[2]*y[0] + x[3]*y[2], x[2]*y[1] + x[3]*y[3]}
	}
	fib := []mat{{1, 1, 1, 0}, {1, 1, 1, 0}, {1, 1, 1, 0}, {1, 1, 1, 0}, {1, 1, 1, 0}}
	powers := make([]mat, len(fib))
	advanced.ParallelScan(powers, fib, mul)
	for _, p := range powers {
		fmt.Print(p[0], " ") // Fibonacci numbers
	}
	fmt.Println()
	// Output:
	// [3 4 8 9 14 23 25 31]
	// 1 2 3 5 8
}

// The exclusive scan starts from the identity and also returns the total.
func ExampleScanExclusive() {
	xs := []float64{1, 2, 3, 4}
	offsets := make([]float64, len(xs))
	total := advanced.ScanExclusive(offsets, xs, 0, func(a, b float64) float64 { return a + b })
	fmt.Println(offsets, total)
	// Output: [0 1 3 6] 10
}

// The steps of a linear recurrence h_t = a_t·h_{t−1} + b_t compose as affine maps;
// scanning them gives every h_t.
func ExampleAffine() {
	steps := []advanced.Affine[float64]{{A: 0.5, B: 1}, {A: 0.5, B: 1}, {A: 2, B: 0}, {A: 1, B: -3}}
	prefix := make([]advanced.Affine[float64], len(steps))
	advanced.Scan(prefix, steps, advanced.Affine[float64].Then)
	for _, f := range prefix {
		fmt.Print(f.Apply(0), " ")
	}
	fmt.Println()
	// Output: 1 1.5 3 0
}

// Two channels of h_t = a_t·h_{t−1} + b_t over three steps, laid out (steps,
// channels), the first channel starting from h = 10.
func ExampleLinearScan() {
	a := []float32{0.5, 1, 0.5, 1, 0.5, 1}
	b := []float32{0, 1, 0, 1, 0, 1}
	h := make([]float32, 6)
	advanced.LinearScan(h, a, b, []float32{10, 0}, 3, 2)
	fmt.Println(h)
	// Output: [5 1 2.5 2 1.25 3]
}

// A decaying running sum h_t = 0.5·h_{t−1} + b_t, and the gradient of its last
// value with respect to each input: 0.5 to the power of the steps left.
func ExampleLinearRecurrence() {
	tp := autodiff.NewTape()
	defer tp.Release()
	a := autodiff.Full(autodiff.Float64, 0.5, 4)
	b := tp.Watch(autodiff.FromFloat64([]float64{1, 2, 3, 4}, 4))
	h := tp.Keep(advanced.LinearRecurrence(a, b, nil, 0))
	fmt.Println(h.Float64s())
	tp.BackwardWith(h, autodiff.FromFloat64([]float64{0, 0, 0, 1}, 4))
	fmt.Println(tp.Grad(b).Float64s())
	// Output:
	// [1 2.5 4.25 6.125]
	// [0.125 0.25 0.5 1]
}
