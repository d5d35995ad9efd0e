package optim_test

import (
	"fmt"
	"math"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/optim"
)

// Train a parameter vector from Go: minimise ‖x − target‖² with AdamW, a tape
// for the gradients and a warmup-then-cosine schedule.
func Example() {
	x := autodiff.FromFloat64([]float64{0, 0, 0}, 3)
	target := autodiff.FromFloat64([]float64{3, -1, 0.5}, 3)
	params := []optim.Param{{Name: "x", Value: x}}

	lr, err := optim.Join([]optim.Schedule{
		optim.LinearWarmup{Init: 0, Peak: 0.1, Steps: 20},
		optim.CosineDecay{Init: 0.1, Final: 0.001, Steps: 480},
	}, []int{20})
	if err != nil {
		panic(err)
	}
	opt, err := optim.NewAdamW(params, optim.AdamConfig{LR: lr, WeightDecay: 0.01})
	if err != nil {
		panic(err)
	}
	for range 500 {
		tp := autodiff.NewTape()
		d := autodiff.Sub(tp.Watch(x), target)
		sq := autodiff.Mul(d, d)                                   // the loss is the sum of sq:
		tp.BackwardWith(sq, autodiff.Full(autodiff.Float64, 1, 3)) // seed it with ones
		opt.Step(optim.Grads(tp, params))
		tp.Release()
	}
	fmt.Printf("x = %.3f after %d steps\n", x.Float64s(), opt.Steps())
	// Output: x = [3.000 -1.000 0.500] after 500 steps
}

// quadratic returns the gradient of ‖x − target‖², 2(x − target), computed on a
// tape; the caller releases it.
func quadratic(x *autodiff.Tensor, target []float64) *autodiff.Tensor {
	tp := autodiff.NewTape()
	defer tp.Release()
	t := autodiff.FromFloat64(target, len(target))
	defer t.Release()
	d := autodiff.Sub(tp.Watch(x), t)
	tp.BackwardWith(autodiff.Mul(d, d), autodiff.Full(autodiff.Float64, 1, len(target)))
	return tp.Grad(x).Clone()
}

// minimise runs steps of opt on ‖x − target‖² for its single parameter.
func minimise(opt *optim.Optimizer, target []float64, steps int) {
	for range steps {
		g := quadratic(opt.Params()[0].Value, target)
		opt.Step([]*autodiff.Tensor{g})
		g.Release()
	}
}

func ExampleParam() {
	w := autodiff.Zeros(autodiff.Float32, 4, 4)
	b := autodiff.Zeros(autodiff.Float32, 4)
	params := []optim.Param{
		{Name: "model.layers.0.mlp.up_proj.weight", Value: w},
		{Name: "model.layers.0.mlp.up_proj.bias", Value: b},
	}
	opt, _ := optim.NewAdamW(params, optim.AdamConfig{LR: optim.Constant(1e-3), WeightDecay: 0.1})
	for i, p := range opt.Params() {
		fmt.Println(p.Name, "decays:", opt.Decays(i))
	}
	// Output:
	// model.layers.0.mlp.up_proj.weight decays: true
	// model.layers.0.mlp.up_proj.bias decays: false
}

func ExampleOptimizer() {
	x := autodiff.FromFloat64([]float64{5}, 1)
	opt, _ := optim.NewSGD([]optim.Param{{Name: "x", Value: x}}, optim.SGDConfig{LR: optim.Constant(0.25)})
	minimise(opt, []float64{1}, 1) // x − lr·2(x − 1) = 5 − 0.25·8
	fmt.Println(x.Float64s(), opt.Kind(), opt.Steps())
	// Output: [3] sgd 1
}

func ExampleNewSGD() {
	x := autodiff.FromFloat64([]float64{4, -2}, 2)
	opt, err := optim.NewSGD([]optim.Param{{Name: "x", Value: x}}, optim.SGDConfig{
		LR: optim.Constant(0.05), Momentum: 0.9, Nesterov: true,
	})
	if err != nil {
		panic(err)
	}
	minimise(opt, []float64{1, 1}, 200)
	fmt.Printf("%.4f\n", x.Float64s())
	// Output: [1.0000 1.0000]
}

func ExampleNewAdam() {
	x := autodiff.FromFloat64([]float64{0}, 1)
	opt, _ := optim.NewAdam([]optim.Param{{Name: "x", Value: x}}, optim.AdamConfig{LR: optim.Constant(0.01)})
	minimise(opt, []float64{2}, 1)
	// Adam's first step moves every coordinate by about lr, whatever the gradient's size.
	fmt.Printf("%.6f\n", x.Float64s())
	// Output: [0.010000]
}

func ExampleAdamConfig() {
	// Zero Beta1, Beta2 and Eps take the defaults 0.9, 0.999 and 1e-8.
	x := autodiff.FromFloat64([]float64{1, 2}, 1, 2)
	opt, _ := optim.NewAdamW([]optim.Param{{Name: "w", Value: x}}, optim.AdamConfig{
		LR:          optim.Constant(0.1),
		WeightDecay: 0.5,
		DecayMask:   optim.DecayAll,
	})
	zero := autodiff.Zeros(autodiff.Float64, 1, 2)
	opt.Step([]*autodiff.Tensor{zero}) // no gradient signal: only the decay p·(1 − lr·wd)
	fmt.Println(x.Float64s())
	// Output: [0.95 1.9]
}

func ExampleNewAdamW() {
	w := autodiff.FromFloat32([]float32{1, -1, 2, -2}, 2, 2)
	opt, _ := optim.NewAdamW([]optim.Param{{Name: "proj.weight", Value: w}}, optim.AdamConfig{
		LR: optim.Constant(0.1), Beta1: 0.9, Beta2: 0.95, WeightDecay: 0.1,
	})
	g := autodiff.FromFloat32([]float32{1, 1, -1, -1}, 2, 2)
	opt.Step([]*autodiff.Tensor{g})
	// p·(1 − 0.01) − 0.1·sign(g) on the first step.
	fmt.Printf("%.2f\n", w.Float32s())
	// Output: [0.89 -1.09 2.08 -1.88]
}

func ExampleNewLion() {
	x := autodiff.FromFloat64([]float64{0, 0}, 2)
	// Every step moves each coordinate by exactly lr: decay it to settle.
	lr := optim.CosineDecay{Init: 0.02, Final: 0, Steps: 300}
	opt, _ := optim.NewLion([]optim.Param{{Name: "x", Value: x}}, optim.LionConfig{LR: lr})
	minimise(opt, []float64{0.5, -0.25}, 300)
	fmt.Printf("%.2f\n", x.Float64s())
	// Output: [0.50 -0.25]
}

func ExampleOptimizer_StepLR() {
	x := autodiff.FromFloat64([]float64{1}, 1)
	opt, _ := optim.NewSGD([]optim.Param{{Name: "x", Value: x}}, optim.SGDConfig{LR: optim.Constant(1)})
	g := autodiff.FromFloat64([]float64{1}, 1)
	opt.StepLR([]*autodiff.Tensor{g}, 0.125) // the rate comes from the caller, not the schedule
	fmt.Println(x.Float64s(), opt.Steps())
	// Output: [0.875] 1
}

func ExampleOptimizer_State() {
	w := autodiff.FromFloat32([]float32{1, 2, 3, 4}, 2, 2)
	opt, _ := optim.NewAdamW([]optim.Param{{Name: "model.lm_head.weight", Value: w}}, optim.AdamConfig{LR: optim.Constant(1e-3)})
	for _, s := range opt.State() {
		fmt.Println(s.Name, s.Value.DType(), s.Value.Shape())
	}
	// Output:
	// step int32 []
	// model.lm_head.weight.step int32 []
	// model.lm_head.weight.exp_avg float32 [2 2]
	// model.lm_head.weight.exp_avg_sq float32 [2 2]
}

func ExampleOptimizer_LoadState() {
	newRun := func() (*autodiff.Tensor, *optim.Optimizer) {
		x := autodiff.FromFloat64([]float64{0}, 1)
		opt, _ := optim.NewAdam([]optim.Param{{Name: "x", Value: x}}, optim.AdamConfig{LR: optim.Constant(0.1)})
		return x, opt
	}
	// One run of 20 steps, and one that stops after 10, saves, and resumes.
	x1, a := newRun()
	minimise(a, []float64{1}, 20)

	x2, b := newRun()
	minimise(b, []float64{1}, 10)
	var saved []optim.Param // what a checkpoint holds: copies
	for _, s := range b.State() {
		saved = append(saved, optim.Param{Name: s.Name, Value: s.Value.Clone()})
	}
	savedX := x2.Clone()

	x3, c := newRun()
	x3.CopyFrom(savedX)
	if err := c.LoadState(saved); err != nil {
		panic(err)
	}
	minimise(c, []float64{1}, 10)
	fmt.Println(c.Steps(), x3.Float64s()[0] == x1.Float64s()[0])

	err := c.LoadState(saved[1:])
	fmt.Println(err)
	// Output:
	// 20 true
	// optim: adam: LoadState: "step" is missing
}

func ExampleAdamWKernel() {
	p := []float32{1, 1}
	g := []float32{0.5, -2}
	m := make([]float32, 2)
	v := make([]float32, 2)
	const lr, beta1, beta2, t = 0.1, 0.9, 0.999, 1
	bc1 := float32(1 - math.Pow(beta1, t))
	bc2 := float32(1 - math.Pow(beta2, t))
	optim.AdamWKernel(p, g, m, v, lr, beta1, beta2, 1e-8, 0, bc1, bc2)
	fmt.Printf("p %.3f m %.2f v %.5f\n", p, m, v)
	// Output: p [0.900 1.100] m [0.05 -0.20] v [0.00025 0.00400]
}

func ExampleDefaultDecayMask() {
	mat := autodiff.Zeros(autodiff.Float32, 8, 8)
	vec := autodiff.Zeros(autodiff.Float32, 8)
	for _, p := range []optim.Param{
		{Name: "model.layers.0.self_attn.q_proj.weight", Value: mat},
		{Name: "model.layers.0.self_attn.q_proj.bias", Value: vec},
		{Name: "model.layers.0.input_layernorm.weight", Value: vec},
		{Name: "model.embed_tokens.weight", Value: mat},
		{Name: "model.router.gain", Value: vec},
	} {
		fmt.Println(optim.DefaultDecayMask(p), p.Name)
	}
	// Output:
	// true model.layers.0.self_attn.q_proj.weight
	// false model.layers.0.self_attn.q_proj.bias
	// false model.layers.0.input_layernorm.weight
	// false model.embed_tokens.weight
	// false model.router.gain
}

func ExampleDecayAll() {
	b := autodiff.FromFloat64([]float64{1}, 1)
	opt, _ := optim.NewSGD([]optim.Param{{Name: "bias", Value: b}}, optim.SGDConfig{
		LR: optim.Constant(0.1), WeightDecay: 1, DecayMask: optim.DecayAll,
	})
	opt.Step([]*autodiff.Tensor{autodiff.Zeros(autodiff.Float64, 1)})
	fmt.Println(b.Float64s())
	// Output: [0.9]
}

func ExampleGrads() {
	w := autodiff.FromFloat64([]float64{1, 2}, 2)
	frozen := autodiff.FromFloat64([]float64{3}, 1)
	params := []optim.Param{{Name: "w", Value: w}, {Name: "frozen", Value: frozen}}
	tp := autodiff.NewTape()
	defer tp.Release()
	y := autodiff.Mul(tp.Watch(w), tp.Watch(w))
	tp.BackwardWith(y, autodiff.Full(autodiff.Float64, 1, 2))
	grads := optim.Grads(tp, params)
	fmt.Println(grads[0].Float64s(), grads[1] == nil)
	// Output: [2 4] true
}

func ExampleSchedule() {
	var s optim.Schedule = optim.StepDecay{Init: 0.1, Gamma: 0.5, Every: 2}
	for step := range 5 {
		fmt.Printf("%d:%g ", step, s.LR(step))
	}
	fmt.Println()
	// Output: 0:0.1 1:0.1 2:0.05 3:0.05 4:0.025
}

func ExampleScheduleFunc() {
	inverseSqrt := optim.ScheduleFunc(func(step int) float64 { return 1e-2 / math.Sqrt(float64(step+1)) })
	fmt.Printf("%.4f %.4f\n", inverseSqrt.LR(0), inverseSqrt.LR(3))
	// Output: 0.0100 0.0050
}

func ExampleConstant() {
	fmt.Println(optim.Constant(3e-4).LR(0), optim.Constant(3e-4).LR(1000))
	// Output: 0.0003 0.0003
}

func ExampleLinearWarmup() {
	s := optim.LinearWarmup{Init: 0, Peak: 1e-3, Steps: 4}
	fmt.Println(s.LR(0), s.LR(2), s.LR(4), s.LR(100))
	// Output: 0 0.0005 0.001 0.001
}

func ExampleLinearDecay() {
	s := optim.LinearDecay{Init: 1e-3, Final: 0, Steps: 4}
	fmt.Println(s.LR(0), s.LR(2), s.LR(4), s.LR(100))
	// Output: 0.001 0.0005 0 0
}

func ExampleCosineDecay() {
	s := optim.CosineDecay{Init: 1e-3, Final: 1e-4, Steps: 100}
	fmt.Printf("%.2e %.2e %.2e %.2e\n", s.LR(0), s.LR(50), s.LR(100), s.LR(200))
	// Output: 1.00e-03 5.50e-04 1.00e-04 1.00e-04
}

func ExampleStepDecay() {
	s := optim.StepDecay{Init: 1, Gamma: 0.1, Every: 10}
	fmt.Println(s.LR(9), s.LR(10), s.LR(25))
	// Output: 1 0.1 0.010000000000000002
}

func ExampleJoin() {
	s, err := optim.Join([]optim.Schedule{
		optim.LinearWarmup{Init: 0, Peak: 1e-3, Steps: 10},
		optim.CosineDecay{Init: 1e-3, Final: 1e-4, Steps: 90},
	}, []int{10})
	if err != nil {
		panic(err)
	}
	fmt.Printf("%.2e %.2e %.2e %.2e\n", s.LR(5), s.LR(10), s.LR(55), s.LR(100))
	// Output: 5.00e-04 1.00e-03 5.50e-04 1.00e-04
}

func ExampleGlobalNorm() {
	a := autodiff.FromFloat32([]float32{3, 4}, 2)
	b := autodiff.FromFloat64([]float64{12}, 1)
	fmt.Println(optim.GlobalNorm([]*autodiff.Tensor{a, nil, b}))
	// Output: 13
}

func ExampleClipGradNorm() {
	a := autodiff.FromFloat64([]float64{3, 4}, 2)
	b := autodiff.FromFloat64([]float64{12}, 1)
	grads := []*autodiff.Tensor{a, b}
	before := optim.ClipGradNorm(grads, 1)
	fmt.Printf("%.0f → %.4f: %.4f %.4f\n", before, optim.GlobalNorm(grads), a.Float64s(), b.Float64s())
	// Output: 13 → 1.0000: [0.2308 0.3077] [0.9231]
}

func ExampleAccumulator() {
	x := autodiff.FromFloat64([]float64{0}, 1)
	params := []optim.Param{{Name: "x", Value: x}}
	opt, _ := optim.NewSGD(params, optim.SGDConfig{LR: optim.Constant(0.25)})
	acc := optim.NewAccumulator(params)
	defer acc.Release()
	// One step on a batch of two targets, as two micro-batches of one.
	for _, target := range []float64{1, 3} {
		g := quadratic(x, []float64{target})
		acc.Add([]*autodiff.Tensor{g})
		g.Release()
	}
	mean := acc.Mean() // (2·(0−1) + 2·(0−3)) / 2 = −4
	fmt.Println(acc.Count(), mean[0].Float64s())
	opt.Step(mean)
	acc.Reset()
	fmt.Println(x.Float64s())
	// Output:
	// 2 [-4]
	// [1]
}

func ExampleNewAccumulator() {
	w := autodiff.Zeros(autodiff.Float32, 2, 3)
	acc := optim.NewAccumulator([]optim.Param{{Name: "w", Value: w}})
	defer acc.Release()
	fmt.Println(acc.Count(), acc.Mean()[0] == nil)
	// Output: 0 true
}

func ExampleSGDConfig() {
	x := autodiff.FromFloat64([]float64{0}, 1)
	opt, _ := optim.NewSGD([]optim.Param{{Name: "x", Value: x}}, optim.SGDConfig{
		LR: optim.Constant(1), Momentum: 0.5, Dampening: 0.5,
	})
	g := autodiff.FromFloat64([]float64{1}, 1)
	for range 3 {
		opt.Step([]*autodiff.Tensor{g})
		fmt.Print(x.Float64s(), " ")
	}
	fmt.Println()
	// The buffer starts as the gradient (1), then 0.5·b + 0.5·g stays 1.
	// Output: [-1] [-2] [-3]
}

func ExampleLionConfig() {
	w := autodiff.FromFloat64([]float64{2, 2, 2, 2}, 2, 2)
	opt, _ := optim.NewLion([]optim.Param{{Name: "w", Value: w}}, optim.LionConfig{
		LR: optim.Constant(0.1), WeightDecay: 1,
	})
	g := autodiff.FromFloat64([]float64{3, -0.001, 0, -7}, 2, 2)
	opt.Step([]*autodiff.Tensor{g})
	// 2·(1 − 0.1) − 0.1·sign(g): the size of g does not matter, only its sign.
	fmt.Printf("%.1f\n", w.Float64s())
	// Output: [1.7 1.9 1.8 1.9]
}
