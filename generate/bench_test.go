package generate

import (
	"fmt"
	"testing"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/models"
)

// benchModels are the decode benchmarks' models (float32, random weights): the
// tiny GPT of the training benchmark (vocab 65, d_model 128, 4 layers, 4
// heads; learned positions, here 4096 of them), and a llama-style model of
// about 54M parameters (vocab 32000 tied, d_model 512, 12 layers, 8 heads of 64
// with 4 key/value heads, SwiGLU of 1376, RoPE).
func benchModels() map[string]models.Config {
	tiny := models.GPT2Config(65, 128, 4, 4, 4096)
	mid := models.LlamaConfig(32000, 512, 12, 8, 4, 1376, 4096)
	mid.TieWordEmbeddings = true
	return map[string]models.Config{"tiny_gpt": tiny, "llama_54M": mid}
}

// prefilled keeps each benchmark's model and prefilled cache across the
// benchmark's calls (the prefill is not what is measured).
var prefilled = map[string]struct {
	m     *models.Model
	cache *models.Cache
}{}

// BenchmarkDecode measures one decoding step (one token through the model with
// a growing KV cache, logits included) after a context of 1, 512 or 2048
// tokens, with the cache in float32 or (kvf16) float16. The cache is trimmed back after each step, so every step runs at the
// stated context. ns/op is the wall time of a token; tokens/s its inverse;
// cpu-ms/token the process CPU time per token (all threads), which a busy
// machine disturbs less.
//
//	MLXTRAIN_THREADS=1 go test ./generate -run '^$' -bench Decode -benchtime 50x
func BenchmarkDecode(b *testing.B) {
	for _, name := range []string{"tiny_gpt", "llama_54M"} {
		cfg := benchModels()[name]
		for _, run := range []struct {
			ctx  int
			half bool
		}{{1, false}, {512, false}, {2048, false}, {512, true}, {2048, true}} {
			ctx, kv := run.ctx, "f32"
			if run.half {
				kv = "f16"
			}
			b.Run(fmt.Sprintf("%s/ctx%d/kv%s", name, ctx, kv), func(b *testing.B) {
				key := fmt.Sprintf("%s/%d/%s", name, ctx, kv)
				pf, ok := prefilled[key]
				if !ok {
					m, err := models.New(cfg, autodiff.NewRNG(1))
					if err != nil {
						b.Fatal(err)
					}
					if len(prefilled) > 0 { // one model in memory at a time
						for k, v := range prefilled {
							v.cache.Release()
							delete(prefilled, k)
						}
					}
					cache := models.NewCacheWith(m, models.CacheOptions{Float16: run.half})
					prompt := make([]int32, ctx)
					for i := range prompt {
						prompt[i] = int32((i*7 + 3) % cfg.VocabSize)
					}
					feed(m, prompt, cache, DefaultPrefillStepSize)
					pf.m, pf.cache = m, cache
					prefilled[key] = pf
				}
				tok := []int32{5}
				step(pf.m, tok, pf.cache) // warm the pools
				pf.cache.TrimTo(ctx)
				b.ResetTimer()
				cpu := cpuSeconds()
				for range b.N {
					step(pf.m, tok, pf.cache)
					pf.cache.TrimTo(ctx)
				}
				cpu = cpuSeconds() - cpu
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
				if cpu >= 0 {
					b.ReportMetric(cpu*1e3/float64(b.N), "cpu-ms/token")
				}
			})
		}
	}
}

// BenchmarkDecodeBatch measures batched decoding of the 54M model: B
// sequences, each after a prompt of 128 tokens, one token per sequence per
// step (GenerateBatch's inner loop). tokens/s counts every sequence's token;
// the weights are read once per step for the whole batch.
//
//	MLXTRAIN_THREADS=1 go test ./generate -run '^$' -bench DecodeBatch -benchtime 10x
func BenchmarkDecodeBatch(b *testing.B) {
	cfg := benchModels()["llama_54M"]
	m, err := models.New(cfg, autodiff.NewRNG(1))
	if err != nil {
		b.Fatal(err)
	}
	const ctx = 128
	for _, batch := range []int{1, 4, 8} {
		b.Run(fmt.Sprintf("batch%d", batch), func(b *testing.B) {
			var caches []*models.Cache
			for s := range batch {
				c := models.NewCache(m)
				prompt := make([]int32, ctx+s) // ragged lengths
				for i := range prompt {
					prompt[i] = int32((i*7 + s) % cfg.VocabSize)
				}
				feed(m, prompt, c, DefaultPrefillStepSize)
				caches = append(caches, c)
			}
			cache := models.StackCaches(caches...)
			defer cache.Release()
			toks := make([]int32, batch)
			step(m, toks, cache)
			b.ResetTimer()
			cpu := cpuSeconds()
			for range b.N {
				step(m, toks, cache)
			}
			cpu = cpuSeconds() - cpu
			b.StopTimer()
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "tokens/s")
			if cpu >= 0 {
				b.ReportMetric(cpu*1e3/float64(b.N*batch), "cpu-ms/token")
			}
		})
	}
}
