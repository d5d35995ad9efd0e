package layers_test

import (
	"fmt"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/layers"
)

// A LoRA fine-tune: the base weight is frozen (Ctx.Frozen), so backward
// computes gradients for the adapter's A and B only.
func ExampleLoRAOp() {
	rng := autodiff.NewRNG(1)
	q := layers.NewLinear(rng, autodiff.Float32, 4, 4, false, layers.Init{})
	names, err := layers.AttachLoRA(rng, []layers.NamedLinear{{Name: "model.layers.0.self_attn.q_proj", Linear: q}},
		layers.LoRAConfig{Rank: 2, Scale: 2, Keys: []string{"q_proj"}})
	if err != nil {
		panic(err)
	}
	fmt.Println(names)

	tp := autodiff.NewTape()
	defer tp.Release()
	c := &layers.Ctx{Tape: tp, Frozen: map[*autodiff.Tensor]bool{q.Weight: true}}
	x := autodiff.FromFloat32([]float32{1, 2, 3, 4, 5, 6, 7, 8}, 2, 4)
	y := q.Forward(c, x) // x·Wᵀ + 2·(x·A)·B, through LoRAOp
	tp.Backward(autodiff.Sum(y, nil, false))
	fmt.Println("grad W:", tp.Grad(q.Weight) != nil, "grad A:", tp.Grad(q.LoRA.A) != nil, "grad B:", tp.Grad(q.LoRA.B) != nil)
	// Output:
	// [model.layers.0.self_attn.q_proj]
	// grad W: false grad A: true grad B: true
}
