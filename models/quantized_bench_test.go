package models_test

import (
	"testing"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
	"github.com/mlxtrain/mlxtrain/models"
	"github.com/mlxtrain/mlxtrain/quant"
)

// BenchmarkDecode is one greedy decoding step (one token after a 32-token
// prompt) of a 76M-parameter llama (hidden 1024, 6 layers, SwiGLU 2816,
// vocab 8192, tied) on one thread, float32 against 4-bit (group 64). Decode reads
// every weight once per token, so it is memory-bound: cpu-ns/op compares.
//
//	go test ./models -run '^$' -bench Decode -benchtime 20x
func BenchmarkDecode(b *testing.B) {
	for _, bits := range []int{0, 4, 8} {
		name := "float32"
		if bits > 0 {
			name = "q" + string(rune('0'+bits))
		}
		b.Run(name, func(b *testing.B) {
			prev := metal.Threads()
			metal.SetThreads(1)
			defer metal.SetThreads(prev)
			cfg := models.LlamaConfig(8192, 1024, 6, 16, 4, 2816, 256)
			cfg.TieWordEmbeddings = true
			m, err := models.New(cfg, autodiff.NewRNG(1))
			if err != nil {
				b.Fatal(err)
			}
			if bits > 0 {
				if _, err := m.Quantize(quant.Config{Params: quant.Params{GroupSize: 64, Bits: bits}}, nil); err != nil {
					b.Fatal(err)
				}
			}
			prompt := make([]int32, 32)
			for i := range prompt {
				prompt[i] = int32(i * 7)
			}
			cache := models.NewCache(m)
			defer cache.Release()
			m.ForwardCache(nil, autodiff.FromInt32(prompt, 1, 32), cache).Release()
			tok := autodiff.FromInt32([]int32{5}, 1, 1)
			start := cpuSeconds()
			b.ResetTimer()
			for b.Loop() {
				if cache.Offset() >= 250 {
					b.StopTimer()
					cache.Release()
					cache = models.NewCache(m)
					m.ForwardCache(nil, autodiff.FromInt32(prompt, 1, 32), cache).Release()
					b.StartTimer()
				}
				m.ForwardCache(nil, tok, cache).Release()
			}
			b.ReportMetric((cpuSeconds()-start)*1e9/float64(b.N), "cpu-ns/op")
		})
	}
}
