package models_test

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/layers"
	"github.com/mlxtrain/mlxtrain/metal"
	"github.com/mlxtrain/mlxtrain/models"
	"github.com/mlxtrain/mlxtrain/optim"
)

// tinyGPT is the model of bench/torch_tiny_gpt.py: vocab 65, d_model 128, 4
// layers, 4 heads, context 128, pre-LayerNorm with biases, GELU MLP of 4× width,
// learned positions, biases on every linear as nn.Linear has by default, an
// untied head without bias.
func tinyGPT() models.Config { return models.GPT2Config(65, 128, 4, 4, 128) }

// BenchmarkTinyGPTStep is one AdamW training step of tinyGPT on a batch of 16
// random sequences of 128 tokens, cross-entropy over every position, after 3
// warm-up steps. tokens/s is measured on the median step, as the torch script
// does; cpu-ms/step is the median process CPU time of a step (all threads; with
// MLXTRAIN_THREADS=2 it counts both cores), which a busy machine disturbs less
// than wall time. With MLXTRAIN_PROFILE=1 it prints the time per op.
//
//	MLXTRAIN_THREADS=1 go test ./models -run '^$' -bench TinyGPTStep -benchtime 20x
func BenchmarkTinyGPTStep(b *testing.B) { benchTrainStep(b, tinyGPT()) }

// tinyMoE is tinyGPT with every feed-forward a top-2-of-8 mixture of GELU MLPs
// of 4× width: the weights of the two chosen experts a softmax over their router
// logits, no capacity limit, no auxiliary loss (bench/torch_tiny_gpt.py --moe).
func tinyMoE() models.Config {
	cfg := tinyGPT()
	cfg.FeedForwardTypes = slices.Repeat([]string{models.FeedForwardMoE}, cfg.NumHiddenLayers)
	cfg.NumLocalExperts, cfg.NumExpertsPerTok = 8, 2
	cfg.ScoringFunc = models.ScoringSoftmax
	return cfg
}

// BenchmarkTinyMoEStep is BenchmarkTinyGPTStep for tinyMoE.
//
//	MLXTRAIN_THREADS=1 go test ./models -run '^$' -bench TinyMoEStep -benchtime 20x
func BenchmarkTinyMoEStep(b *testing.B) { benchTrainStep(b, tinyMoE()) }

// benchTrainStep times AdamW training steps of the model cfg describes on
// batches of 16 random sequences of 128 tokens.
func benchTrainStep(b *testing.B, cfg models.Config) {
	const batch, ctx = 16, 128
	m, err := models.New(cfg, autodiff.NewRNG(1))
	if err != nil {
		b.Fatal(err)
	}
	params := m.Params()
	opt, err := optim.NewAdamW(params, optim.AdamConfig{LR: optim.Constant(3e-4), WeightDecay: 0.01, DecayMask: optim.DecayAll})
	if err != nil {
		b.Fatal(err)
	}
	defer opt.Release()
	rng := autodiff.NewRNG(2)
	const batches = 4
	var xs, ys [batches]*autodiff.Tensor
	for i := range batches {
		xs[i], ys[i] = randomTokens(rng, batch, ctx, cfg.VocabSize), randomTokens(rng, batch, ctx, cfg.VocabSize)
	}
	step := func(i int) {
		tp := autodiff.NewTape()
		c := &layers.Ctx{Tape: tp, Train: true}
		loss := m.Loss(c, xs[i%batches], ys[i%batches], nil)
		tp.Backward(loss)
		opt.Step(optim.Grads(tp, params))
		tp.Release()
	}
	for i := range 3 { // warm the pools up
		step(i)
	}
	metal.ResetProfile()
	b.ReportAllocs()
	var times []time.Duration
	var cpus []float64
	for b.Loop() {
		start, cpu := time.Now(), cpuSeconds()
		step(len(times))
		times = append(times, time.Since(start))
		cpus = append(cpus, cpuSeconds()-cpu)
	}
	slices.Sort(times)
	slices.Sort(cpus)
	b.ReportMetric(float64(batch*ctx)/times[len(times)/2].Seconds(), "tokens/s")
	if cpus[0] >= 0 {
		b.ReportMetric(cpus[len(cpus)/2]*1e3, "cpu-ms/step")
	}
	if metal.Profiling() { // MLXTRAIN_PROFILE=1: time per op over the timed steps
		b.StopTimer()
		fmt.Fprintf(os.Stderr, "%d steps:\n", b.N)
		metal.WriteProfile(os.Stderr)
	}
}

// randomTokens returns uniform token ids (batch, seq) in [0, vocab).
func randomTokens(rng *autodiff.RNG, batch, seq, vocab int) *autodiff.Tensor {
	u := make([]uint32, batch*seq)
	rng.Uint32s(u)
	ids := make([]int32, len(u))
	for i, w := range u {
		ids[i] = int32(w % uint32(vocab))
	}
	return autodiff.FromInt32(ids, batch, seq)
}
