package models

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/attention"
	"github.com/mlxtrain/mlxtrain/autodiff"
)

// cacheFamilies are tiny float64 models of every family: GPT-2 (learned
// positions, MHA), llama (GQA and RoPE), llama with sliding-window layers,
// Mamba only, MoE feed-forwards, and the two hybrids.
func cacheFamilies() map[string]Config {
	f := hybridConfigs()
	f["gpt2"] = GPT2Config(11, 16, 2, 2, 40)
	f["llama_gqa"] = LlamaConfig(11, 16, 2, 4, 2, 24, 40)
	w := LlamaConfig(11, 16, 3, 4, 2, 24, 40)
	w.LayerTypes = []string{MixerSlidingAttention, MixerFullAttention, MixerSlidingAttention}
	w.SlidingWindow = 3
	f["llama_window"] = w
	mb := LlamaConfig(11, 16, 2, 4, 2, 24, 40)
	mb.LayerTypes = []string{MixerMamba, MixerMamba}
	mb.StateSize, mb.ConvKernel, mb.Expand, mb.TimeStepRank = 3, 3, 2, 2
	f["mamba"] = mb
	moe := LlamaConfig(11, 16, 2, 4, 2, 24, 40)
	moe.FeedForwardTypes = []string{FeedForwardMoE, FeedForwardMoE}
	moe.NumLocalExperts, moe.NumExpertsPerTok, moe.MoEIntermediateSize = 4, 2, 8
	f["moe"] = moe
	for k, c := range f {
		c.TorchDType = "float64"
		f[k] = c
	}
	return f
}

// TestCachesEqualRecompute: for every family and cache kind, logits from
// prefill chunks and single steps through the cache equal the full forward.
func TestCachesEqualRecompute(t *testing.T) {
	kinds := map[string]CacheOptions{
		"growing":           {},
		"paged3":            {BlockSize: 3},
		"rotating_nonevict": {MaxKVSize: 64, Keep: 2}, // larger than the sequence: nothing leaves
	}
	cuts := []int{4, 1, 1, 5, 1, 1, 1} // 14 tokens
	for fam, cfg := range cacheFamilies() {
		m, err := New(cfg, autodiff.NewRNG(4))
		require.NoError(t, err)
		batch := 2
		ids := tokens(batch, 14, cfg.VocabSize, func(b, t int) int { return b*3 + t*t + 1 })
		want := m.Forward(nil, ids)
		for kind, o := range kinds {
			t.Run(fam+"/"+kind, func(t *testing.T) {
				var parts []*autodiff.Tensor
				at := 0
				if o.BlockSize > 0 { // a paged cache is one sequence: a batch stacks them
					var rows []*Cache
					for range batch {
						rows = append(rows, NewCacheWith(m, o))
					}
					cache := StackCaches(rows...)
					defer cache.Release()
					for _, n := range cuts {
						parts = append(parts, m.ForwardCache(nil, autodiff.Slice(ids, 1, at, at+n), cache))
						at += n
					}
				} else {
					cache := NewCacheWith(m, o)
					defer cache.Release()
					for _, n := range cuts {
						require.Equal(t, at, cache.Offset())
						parts = append(parts, m.ForwardCache(nil, autodiff.Slice(ids, 1, at, at+n), cache))
						at += n
					}
				}
				assert.InDeltaSlice(t, want.Float64s(), autodiff.Concat(1, parts...).Float64s(), 1e-10)
			})
		}
	}
}

// TestStackedCachesDecodeRaggedRows: prompts of different lengths prefilled
// on their own, stacked, then decoded one token per row per call, give each
// row's logits alone; Select drops a row and the others go on unchanged.
func TestStackedCachesDecodeRaggedRows(t *testing.T) {
	for fam, cfg := range cacheFamilies() {
		t.Run(fam, func(t *testing.T) {
			m, err := New(cfg, autodiff.NewRNG(8))
			require.NoError(t, err)
			prompts := [][]int32{{1, 2, 3, 4, 5, 6, 0}, {3, 1}, {4, 4, 4, 4}}
			steps := [][]int32{{1, 2, 3}, {5, 6, 0}, {2, 4, 6}} // steps[s][row]; vocab ≥ 7
			alone := make([][]float64, len(prompts))
			for r, p := range prompts {
				seq := append([]int32(nil), p...)
				for s := range steps {
					seq = append(seq, steps[s][r])
				}
				full := m.Forward(nil, autodiff.FromInt32(seq, 1, len(seq)))
				v := cfg.VocabSize
				alone[r] = full.Float64s()[len(p)*v:] // logits after each step token
			}
			var caches []*Cache
			for _, p := range prompts {
				c := NewCache(m)
				m.ForwardCache(nil, autodiff.FromInt32(p, 1, len(p)), c)
				caches = append(caches, c)
			}
			cache := StackCaches(caches...)
			defer cache.Release()
			live := []int{0, 1, 2}
			v := cfg.VocabSize
			for s := range steps {
				ids := make([]int32, len(live))
				for i, r := range live {
					ids[i] = steps[s][r]
				}
				got := m.ForwardCache(nil, autodiff.FromInt32(ids, len(ids), 1), cache).Float64s()
				for i, r := range live {
					assert.InDeltaSlice(t, alone[r][s*v:(s+1)*v], got[i*v:(i+1)*v], 1e-10, fmt.Sprintf("step %d row %d", s, r))
				}
				if s == 0 { // row 1 finishes
					cache.Select([]int{0, 2})
					live = []int{0, 2}
				}
			}
		})
	}
}

// TestPagedForkSharesPrefix: a prompt prefix prefilled once in a paged cache
// and forked continues like two independent caches, with its full blocks
// stored once.
func TestPagedForkSharesPrefix(t *testing.T) {
	for _, fam := range []string{"llama_gqa", "sigmoid_shared_swiglu"} {
		cfg := cacheFamilies()[fam]
		m, err := New(cfg, autodiff.NewRNG(9))
		require.NoError(t, err)
		prefix := []int32{1, 2, 3, 4, 5, 6, 7}
		a := NewCacheWith(m, CacheOptions{BlockSize: 2})
		m.ForwardCache(nil, autodiff.FromInt32(prefix, 1, len(prefix)), a)
		b := a.Fork()
		var pool *attention.BlockPool
		for _, l := range a.Layers {
			if pc, ok := l.KV.(*attention.PagedCache); ok {
				pool = pc.Pool
				break
			}
		}
		require.NotNil(t, pool)
		for _, tc := range []struct {
			cache  *Cache
			suffix []int32
		}{{a, []int32{8, 9, 10}}, {b, []int32{3, 3}}} {
			got := m.ForwardCache(nil, autodiff.FromInt32(tc.suffix, 1, len(tc.suffix)), tc.cache)
			ref := NewCache(m)
			m.ForwardCache(nil, autodiff.FromInt32(prefix, 1, len(prefix)), ref)
			want := m.ForwardCache(nil, autodiff.FromInt32(tc.suffix, 1, len(tc.suffix)), ref)
			assert.InDeltaSlice(t, want.Float64s(), got.Float64s(), 1e-10, fam)
			ref.Release()
		}
		// 7 prefix positions: 3 full blocks shared, the partial 4th copied; a
		// holds 10 positions (5 blocks), b 9 (5 blocks): 3 + 2 + 2 in use.
		assert.Equal(t, 7, pool.InUse(), fam)
		a.Release()
		b.Release()
		assert.Equal(t, 0, pool.InUse(), fam)
	}
}

// TestCacheMarkRewind: after a mark, tokens fed and then rewound leave the
// cache as it was: what follows matches a cache that never saw them (Mamba
// states and wrapped rings restored from the mark, KV caches trimmed).
func TestCacheMarkRewind(t *testing.T) {
	for fam, cfg := range cacheFamilies() {
		t.Run(fam, func(t *testing.T) {
			m, err := New(cfg, autodiff.NewRNG(12))
			require.NoError(t, err)
			prefix := tokens(1, 6, cfg.VocabSize, func(_, t int) int { return t + 1 })
			detour := tokens(1, 5, cfg.VocabSize, func(_, t int) int { return 2*t + 1 })
			next := tokens(1, 2, cfg.VocabSize, func(_, t int) int { return t + 3 })
			c := NewCache(m)
			defer c.Release()
			m.Prefill(prefix, c)
			mk := c.Mark()
			m.Prefill(detour, c)
			c.Rewind(mk)
			assert.Equal(t, 6, c.Offset())
			got := m.ForwardCache(nil, next, c)
			ref := NewCache(m)
			defer ref.Release()
			m.Prefill(prefix, ref)
			assert.InDeltaSlice(t, m.ForwardCache(nil, next, ref).Float64s(), got.Float64s(), 1e-12)
		})
	}
}

// TestFloat16KVCaches: a float32 model with float16 KV storage (growing,
// rotating for its window layers, paged) gives logits within float16 rounding
// of the full forward.
func TestFloat16KVCaches(t *testing.T) {
	for _, fam := range []string{"llama_window", "sigmoid_shared_swiglu", "gpt2"} {
		cfg := cacheFamilies()[fam]
		cfg.TorchDType = "float32"
		m, err := New(cfg, autodiff.NewRNG(13))
		require.NoError(t, err)
		ids := tokens(1, 12, cfg.VocabSize, func(_, t int) int { return 3*t + 1 })
		want := m.Forward(nil, ids).Float32s()
		for _, o := range []CacheOptions{{Float16: true}, {Float16: true, BlockSize: 4}} {
			c := NewCacheWith(m, o)
			var parts []*autodiff.Tensor
			for _, cut := range [][2]int{{0, 5}, {5, 6}, {6, 7}, {7, 12}} {
				parts = append(parts, m.ForwardCache(nil, autodiff.Slice(ids, 1, cut[0], cut[1]), c))
			}
			got := autodiff.Concat(1, parts...).Float32s()
			worst, scale := 0.0, 1.0
			for i := range want {
				scale = max(scale, math.Abs(float64(want[i])))
				worst = max(worst, math.Abs(float64(want[i]-got[i])))
			}
			assert.LessOrEqual(t, worst, 3e-3*scale, "%s %+v", fam, o)
			c.Release()
		}
	}
}
