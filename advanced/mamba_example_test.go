package advanced_test

import (
	"fmt"
	"math"

	"github.com/mlxtrain/mlxtrain/advanced"
	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/layers"
)

// Train-time forward and backward of a Mamba block, then generation: a prompt
// through Prefill and a token through Step give what Forward gives for the whole
// sequence.
func ExampleMamba() {
	m, err := advanced.NewMamba(autodiff.NewRNG(1), autodiff.Float32, advanced.MambaConfig{DModel: 32})
	if err != nil {
		panic(err)
	}
	fmt.Println("parameters:", layers.CountParams(m))
	x := autodiff.RandNormal(autodiff.NewRNG(2), autodiff.Float32, 0, 1, 2, 10, 32) // (batch, length, d_model)

	tp := autodiff.NewTape()
	out := m.Forward(&layers.Ctx{Tape: tp, Train: true}, x)
	tp.BackwardWith(out, autodiff.Full(autodiff.Float32, 1, out.Shape()...))
	fmt.Println("out", out.Shape(), "dA_log", tp.Grad(m.ALog).Shape())
	full := out.Float64Values()
	tp.Release()

	state := m.NewState(2)
	defer state.Release()
	m.Prefill(nil, autodiff.Slice(x, 1, 0, 9), state).Release()
	last := m.Step(nil, autodiff.Squeeze(autodiff.Slice(x, 1, 9, 10), 1), state)
	diff := 0.0
	for b := range 2 {
		for i := range 32 {
			diff = math.Max(diff, math.Abs(last.Float64Values()[b*32+i]-full[(b*10+9)*32+i]))
		}
	}
	fmt.Println("step matches forward:", diff < 1e-5)
	// Output:
	// parameters: 9920
	// out [2 10 32] dA_log [64 16]
	// step matches forward: true
}
