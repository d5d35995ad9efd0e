// Package optim holds optimizers (SGD, Adam, AdamW, Lion), learning-rate schedules,
// gradient clipping and accumulation. Optimizer state is exposed as named tensors so
// checkpoints save and restore it exactly.
//
// A training step from Go, without a recipe:
//
//	params := model.Params()                       // []optim.Param, named
//	lr, _ := optim.Join([]optim.Schedule{
//		optim.LinearWarmup{Init: 0, Peak: 3e-4, Steps: 100},
//		optim.CosineDecay{Init: 3e-4, Final: 3e-5, Steps: 900},
//	}, []int{100})
//	opt, err := optim.NewAdamW(params, optim.AdamConfig{LR: lr, WeightDecay: 0.1})
//	...
//	for range 1000 {
//		tp := autodiff.NewTape()
//		loss := model.Loss(tp, batch)
//		tp.Backward(loss)
//		grads := optim.Grads(tp, params)           // lined up with params; nil = skip
//		if norm := optim.ClipGradNorm(grads, 1.0); math.IsInf(norm, 0) || math.IsNaN(norm) {
//			tp.Release()
//			continue                               // a bad batch: skip the step
//		}
//		opt.Step(grads)                            // in place, lr = schedule at opt.Steps()
//		tp.Release()
//	}
//
// Optimizers update float32 and float64 parameters in place and keep their state in
// the parameter's dtype. [Optimizer.State] names it after the parameters
// ("model.layers.0.mlp.up_proj.weight.exp_avg") and [Optimizer.LoadState] checks
// and restores it bit for bit. Weight decay applies to the parameters a mask
// selects; [DefaultDecayMask] spares biases, norms, embeddings and vectors.
//
// The update kernels are element-wise and split across metal.ParallelFor workers,
// so results do not depend on the thread count; the float32 AdamW kernel has an
// AVX path on amd64 that gives the same bits as the Go loop.
package optim
