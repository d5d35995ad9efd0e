package autodiff_test

import (
	"fmt"

	"github.com/mlxtrain/mlxtrain/autodiff"
)

func ExampleReshape() {
	x := autodiff.FromFloat32([]float32{1, 2, 3, 4, 5, 6}, 2, 3)
	y := autodiff.Reshape(x, 3, -1) // shares x's storage
	fmt.Println(y.Shape(), y.Float32s())
	// Output: [3 2] [1 2 3 4 5 6]
}

func ExampleTranspose() {
	x := autodiff.FromFloat32([]float32{1, 2, 3, 4, 5, 6}, 2, 3)
	fmt.Println(autodiff.Transpose(x).Float32s())
	// BSHD → BHSD: swap the sequence and head axes
	q := autodiff.Zeros(autodiff.Float32, 2, 16, 4, 8)
	fmt.Println(autodiff.Permute(q, 0, 2, 1, 3).Shape())
	// Output:
	// [1 4 2 5 3 6]
	// [2 4 16 8]
}

func ExampleSplit() {
	tp := autodiff.NewTape()
	defer tp.Release()
	w := autodiff.FromFloat64([]float64{1, 2, 3, 4, 5}, 5)
	parts := autodiff.Split(tp.Watch(w), 0, 2, 3)
	tp.BackwardWith(parts[1], autodiff.Full(autodiff.Float64, 1, 3)) // the first piece gets no gradient
	fmt.Println(parts[0].Float64s(), parts[1].Float64s(), tp.Grad(w).Float64s())
	// Output: [1 2] [3 4 5] [0 0 1 1 1]
}

func ExampleConcat() {
	a := autodiff.FromFloat32([]float32{1, 2}, 2, 1)
	b := autodiff.FromFloat32([]float32{3, 4, 5, 6}, 2, 2)
	fmt.Println(autodiff.Concat(-1, a, b).Float32s())
	fmt.Println(autodiff.Stack(0, a, a).Shape())
	// Output:
	// [1 3 4 2 5 6]
	// [2 2 1]
}

func ExampleEmbedding() {
	table := autodiff.FromFloat32([]float32{0, 0, 1, 1, 2, 2}, 3, 2)
	ids := autodiff.FromInt32([]int32{2, 0, 2}, 1, 3)
	y := autodiff.Embedding(table, ids)
	fmt.Println(y.Shape(), y.Float32s())
	// Output: [1 3 2] [2 2 0 0 2 2]
}

func ExampleGather() {
	x := autodiff.FromFloat32([]float32{10, 11, 12, 20, 21, 22}, 2, 3)
	fmt.Println(autodiff.Gather(x, 1, autodiff.FromInt32([]int32{2, -3}, 2)).Float32s())
	// per-row picks, as for the label logits of a cross-entropy
	fmt.Println(autodiff.TakeAlongAxis(x, autodiff.FromInt32([]int32{1, 2}, 2, 1), 1).Float32s())
	// Output:
	// [12 10 22 20]
	// [11 22]
}

func ExampleWhere() {
	cond := autodiff.FromInt32([]int32{1, 0, 1}, 3)
	a := autodiff.FromFloat32([]float32{1, 2, 3}, 3)
	b := autodiff.Scalar(autodiff.Float32, -1)
	fmt.Println(autodiff.Where(cond, a, b).Float32s())
	fmt.Println(autodiff.MaskedFill(a, cond, 0).Float32s())
	fmt.Println(autodiff.OneHot(autodiff.FromInt32([]int32{2}, 1), 4, autodiff.Float32).Float32s())
	// Output:
	// [1 -1 3]
	// [0 2 0]
	// [0 0 1 0]
}

func ExampleRNG() {
	rng := autodiff.NewRNG(42)
	w := autodiff.RandNormal(rng, autodiff.Float32, 0, 0.02, 4, 4)
	fmt.Println(w.Shape(), rng.Offset)
	// The state is two numbers: restoring it replays the same draws.
	saved := *rng
	a := autodiff.RandUniform(rng, autodiff.Float32, 0, 1, 3)
	b := autodiff.RandUniform(&saved, autodiff.Float32, 0, 1, 3)
	fmt.Println(a.Float32s()[0] == b.Float32s()[0], rng.Offset)
	// Output:
	// [4 4] 16
	// true 19
}

func ExampleDropout() {
	x := autodiff.Full(autodiff.Float32, 1, 8)
	// survivors are scaled by 1/(1-p); the same seed and offset give the same mask
	fmt.Println(autodiff.Dropout(x, 0.5, autodiff.NewRNG(3), true).Float32s())
	fmt.Println(autodiff.Dropout(x, 0.5, nil, false).Float32s()) // evaluation: identity
	// Output:
	// [2 0 2 2 0 2 0 2]
	// [1 1 1 1 1 1 1 1]
}

func ExamplePermuteKernel() {
	// kernels work on plain slices of any element type, without tensors or tapes
	src := []int32{1, 2, 3, 4, 5, 6}
	dst := make([]int32, 6)
	autodiff.PermuteKernel(dst, src, []int{2, 3}, []int{1, 0})
	fmt.Println(dst)
	// Output: [1 4 2 5 3 6]
}

func ExampleScatterAddKernel() {
	// the embedding gradient: rows of src added into the rows idx names
	dst := make([]float32, 3*2)
	src := []float32{1, 1, 2, 2, 3, 3}
	autodiff.ScatterAddKernel(dst, src, []int32{2, 0, 2}, 1, 3, 2)
	fmt.Println(dst)
	// Output: [2 2 0 0 4 4]
}

func ExamplePhilox4x32() {
	fmt.Printf("%08x\n", autodiff.Philox4x32([4]uint32{}, [2]uint32{}))
	// Output: [6627e8d5 e169c58d bc57ac4c 9b00dbd8]
}
