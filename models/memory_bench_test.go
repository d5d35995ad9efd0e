package models_test

import (
	"slices"
	"testing"
	"time"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/layers"
	"github.com/mlxtrain/mlxtrain/metal"
	"github.com/mlxtrain/mlxtrain/models"
	"github.com/mlxtrain/mlxtrain/optim"
)

// BenchmarkTinyGPTStepOptions is BenchmarkTinyGPTStep under each precision and
// with gradient checkpointing: the median CPU time of a step (cpu-ms/step), the
// median tokens/s, and the tensor pool's high-water mark over the timed steps
// above what the model and optimizer hold (act-MiB: activations, gradients and
// scratch).
//
//	MLXTRAIN_THREADS=1 go test ./models -run '^$' -bench TinyGPTStepOptions -benchtime 10x
func BenchmarkTinyGPTStepOptions(b *testing.B) {
	const batch, ctx = 16, 128
	for _, tc := range []struct {
		name string
		opt  models.TrainOptions
	}{
		{"f32", models.TrainOptions{}},
		{"bf16", models.TrainOptions{Precision: models.PrecisionBF16}},
		{"f16", models.TrainOptions{Precision: models.PrecisionF16}},
		{"auto", models.TrainOptions{Precision: models.PrecisionAuto}},
		{"f32_ckpt", models.TrainOptions{GradCheckpoint: true}},
		{"bf16_ckpt", models.TrainOptions{GradCheckpoint: true, Precision: models.PrecisionBF16}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := tinyGPT()
			m, err := models.New(cfg, autodiff.NewRNG(1))
			if err != nil {
				b.Fatal(err)
			}
			m.Train = tc.opt
			params := m.Params()
			opt, err := optim.NewAdamW(params, optim.AdamConfig{LR: optim.Constant(3e-4), WeightDecay: 0.01, DecayMask: optim.DecayAll})
			if err != nil {
				b.Fatal(err)
			}
			defer opt.Release()
			rng := autodiff.NewRNG(2)
			xs, ys := randomTokens(rng, batch, ctx, cfg.VocabSize), randomTokens(rng, batch, ctx, cfg.VocabSize)
			step := func() {
				tp := autodiff.NewTape()
				loss := m.Loss(&layers.Ctx{Tape: tp, Train: true}, xs, ys, nil)
				tp.Backward(loss)
				opt.Step(optim.Grads(tp, params))
				tp.Release()
			}
			step() // the optimizer's state exists from here
			base := metal.HostPool.Live()
			metal.HostPool.ResetPeak()
			var cpus, walls []float64
			for b.Loop() {
				start, cpu := nowSeconds(), cpuSeconds()
				step()
				cpus = append(cpus, cpuSeconds()-cpu)
				walls = append(walls, nowSeconds()-start)
			}
			slices.Sort(cpus)
			slices.Sort(walls)
			b.ReportMetric(float64(batch*ctx)/walls[len(walls)/2], "tokens/s")
			if cpus[0] >= 0 {
				b.ReportMetric(cpus[len(cpus)/2]*1e3, "cpu-ms/step")
			}
			b.ReportMetric(float64(metal.HostPool.Peak()-base)/(1<<20), "act-MiB")
		})
	}
}

func nowSeconds() float64 { return float64(time.Now().UnixNano()) / 1e9 }
