package advanced

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	ad "github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/layers"
	"github.com/mlxtrain/mlxtrain/metal"
)

// BenchmarkMoEFeedForward is forward + backward of the top-2-of-8 MoE
// feed-forward of the tiny GPT: d_model 128, each expert a GELU MLP of 4× width
// with biases, softmax over the two chosen router logits, no capacity limit, no
// auxiliary loss, on a batch of 16 × 128 tokens in float32, with gradients for
// the input and every parameter. tokens/s is measured on the median call,
// GFLOP/s counts the GEMMs' multiply-adds on the median call, cpu-s/op is the
// process CPU time per call (steadier on a shared machine);
// "threads=1" pins the workers (and BLAS) to one. With MLXTRAIN_PROFILE=1 it
// prints the time per op.
//
//	go test ./advanced -run '^$' -bench MoEFeedForward -benchtime 20x
func BenchmarkMoEFeedForward(b *testing.B) {
	const batch, ctx = 16, 128
	cfg := MoEConfig{Dim: 128, Hidden: 512, Experts: 8, TopK: 2, Bias: true, Init: layers.Init{Std: 0.02}, OutInit: layers.Init{Std: 0.02}}
	m, err := NewMoE(ad.NewRNG(1), ad.Float32, cfg)
	if err != nil {
		b.Fatal(err)
	}
	rng := ad.NewRNG(2)
	x := ad.RandNormal(rng, ad.Float32, 0, 1, batch, ctx, cfg.Dim)
	seed := ad.RandNormal(rng, ad.Float32, 0, 1, batch, ctx, cfg.Dim)
	step := func() {
		tp := ad.NewTape()
		y := m.Forward(&layers.Ctx{Tape: tp, Train: true}, tp.Watch(x))
		tp.BackwardWith(y, seed.Clone())
		tp.Release()
	}
	for _, threads := range []int{1, metal.Threads()} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			old := metal.Threads()
			defer metal.SetThreads(old)
			metal.SetThreads(threads)
			for range 3 { // warm the pools up
				step()
			}
			metal.ResetProfile()
			b.ReportAllocs()
			cpu := cpuSeconds()
			var times []time.Duration
			for b.Loop() {
				start := time.Now()
				step()
				times = append(times, time.Since(start))
			}
			slices.Sort(times)
			med := times[len(times)/2].Seconds()
			b.ReportMetric(float64(batch*ctx)/med, "tokens/s")
			// the experts' six GEMMs (two forward, four backward) and the router's three
			flops := 2 * float64(batch*ctx) * (6*float64(cfg.TopK*cfg.Dim*cfg.Hidden) + 3*float64(cfg.Dim*cfg.Experts))
			b.ReportMetric(flops/med/1e9, "GFLOP/s")
			if cpu >= 0 {
				b.ReportMetric((cpuSeconds()-cpu)/float64(b.N), "cpu-s/op")
			}
			if metal.Profiling() {
				b.StopTimer()
				fmt.Fprintf(os.Stderr, "threads=%d, %d calls:\n", threads, b.N)
				metal.WriteProfile(os.Stderr)
			}
		})
	}
}
