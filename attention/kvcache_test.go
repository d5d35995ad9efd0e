package attention

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/autodiff"
)

// feedPieces runs x (batch, seq, dim) through b in pieces of the given sizes on
// cache and returns the outputs concatenated along the sequence.
func feedPieces(t *testing.T, b *Block, x *autodiff.Tensor, cache KVCache, pieces []int) *autodiff.Tensor {
	t.Helper()
	var got []*autodiff.Tensor
	at := 0
	for _, n := range pieces {
		require.Equal(t, at, cache.Offset())
		got = append(got, b.Forward(nil, autodiff.Slice(x, 1, at, at+n), cache))
		at += n
	}
	require.Equal(t, x.Dim(1), at)
	return autodiff.Concat(1, got...)
}

// TestSpanCachesEqualRecompute: for every cache kind and block configuration
// (GQA, RoPE, window), in float64 and float32 (whose chunks of 16 and more take
// the tiled kernels), cached piecewise outputs equal one pass over the sequence.
func TestSpanCachesEqualRecompute(t *testing.T) {
	pieces := []int{5, 1, 1, 20, 1, 3, 1}
	seq := 32
	for _, dt := range []autodiff.DType{autodiff.Float64, autodiff.Float32} {
		for _, bc := range blockConfigs {
			caches := map[string]func() KVCache{
				"growing": func() KVCache { return &GrowingCache{} },
				"paged4":  func() KVCache { return NewPagedCache(NewBlockPool(4)) },
				"paged7":  func() KVCache { return NewPagedCache(NewBlockPool(7)) },
			}
			if bc.cfg.Window > 0 {
				caches["rotating"] = func() KVCache { return NewRotatingCache(bc.cfg.Window, 0) }
			}
			if dt == autodiff.Float32 { // float16 storage
				caches["growing_half"] = func() KVCache { return &GrowingCache{Half: true} }
				caches["paged4_half"] = func() KVCache {
					p := NewBlockPool(4)
					p.Half = true
					return NewPagedCache(p)
				}
				if bc.cfg.Window > 0 {
					caches["rotating_half"] = func() KVCache {
						r := NewRotatingCache(bc.cfg.Window, 0)
						r.Half = true
						return r
					}
				}
			}
			for name, mk := range caches {
				t.Run(fmt.Sprintf("%s/%s/%s", dt, bc.name, name), func(t *testing.T) {
					b := NewBlock(autodiff.NewRNG(9), dt, bc.cfg)
					x := blockInput(10, dt, 2, seq, bc.cfg.Dim)
					want := b.Forward(nil, x, nil).Float64Values()
					var got []float64
					if !strings.HasPrefix(name, "paged") {
						got = feedPieces(t, b, x, mk(), pieces).Float64Values()
					} else { // one sequence per cache: the rows side by side
						rows := &RowsCache{Seqs: []SpanCache{mk().(SpanCache), mk().(SpanCache)}}
						got = feedPieces(t, b, x, rows, pieces).Float64Values()
					}
					switch {
					case dt == autodiff.Float64:
						assert.InDeltaSlice(t, want, got, 1e-12)
					case strings.HasSuffix(name, "_half"):
						// Keys and values rounded to float16 (relative 2^−11).
						scale, worst := 1.0, 0.0
						for i := range want {
							scale = max(scale, math.Abs(want[i]))
							worst = max(worst, math.Abs(want[i]-got[i]))
						}
						assert.LessOrEqual(t, worst, 3e-3*scale)
						assert.Greater(t, worst, 0.0, "the storage is float16")
					default:
						near32(t, want, got, "float32")
					}
				})
			}
		}
	}
}

// TestGrowingCacheAmortises: capacity doubles, so appends one at a time copy
// few times, and Update still returns the contiguous whole.
func TestGrowingCacheAmortises(t *testing.T) {
	c := &GrowingCache{}
	grows := 0
	last := 0
	for i := range 1000 {
		k := autodiff.Full(autodiff.Float32, float64(i), 2, 1, 1, 3)
		c.Append(k, k)
		if c.Capacity() != last {
			grows++
			last = c.Capacity()
		}
	}
	assert.Equal(t, 3, grows, "256, 512, 1024")
	keys, _ := c.Update(autodiff.Full(autodiff.Float32, 1000, 2, 1, 1, 3), autodiff.Full(autodiff.Float32, 1000, 2, 1, 1, 3))
	require.Equal(t, []int{2, 1001, 1, 3}, keys.Shape())
	for _, b := range []int{0, 1} {
		for _, p := range []int{0, 255, 256, 999, 1000} {
			assert.Equal(t, float64(p), keys.At(((b*1001+p)*1+0)*3+2))
		}
	}
}

// TestRotatingCacheSpans checks the ring's bookkeeping: the sinks, then the
// most recent positions oldest first, then the last Append's, each row holding
// what was written for it.
func TestRotatingCacheSpans(t *testing.T) {
	c := NewRotatingCache(6, 2)
	put := func(from, n int) {
		k := autodiff.Empty(autodiff.Float64, 2, n, 1, 1)
		for b := range 2 {
			for i := range n {
				k.Float64s()[b*n+i] = float64(100*b + from + i)
			}
		}
		c.Append(k, k)
	}
	positions := func(b int) []float64 {
		var out []float64
		for _, s := range c.Spans(b) {
			for r := range s.Rows {
				v := s.K.Float64s()[s.Off+r]
				assert.Equal(t, float64(100*b+s.Pos+r), v, "position %d", s.Pos+r)
				out = append(out, v-float64(100*b))
			}
		}
		return out
	}
	put(0, 3)
	assert.Equal(t, []float64{0, 1, 2}, positions(0))
	put(3, 5) // ring had 0…2; the chunk 3…7 is pending
	assert.Equal(t, []float64{0, 1, 2, 3, 4, 5, 6, 7}, positions(1))
	put(8, 1) // committed 3…7: sinks 0, 1 and the last four 4…7
	assert.Equal(t, []float64{0, 1, 4, 5, 6, 7, 8}, positions(0))
	for p := 9; p < 20; p++ {
		put(p, 1)
	}
	assert.Equal(t, []float64{0, 1, 15, 16, 17, 18, 19}, positions(1))
	assert.Equal(t, 20, c.Offset())
	assert.Equal(t, 6, c.Held())
}

// TestRotatingCacheBoundsFullAttention: a full-attention block decoding one
// token at a time over a ring of Max positions (no sinks) attends the Max
// positions before each token and the token itself: a causal window of Max+1.
func TestRotatingCacheBoundsFullAttention(t *testing.T) {
	cfg := BlockConfig{Dim: 16, Heads: 4, KVHeads: 2, RoPE: &RoPEOptions{}, Causal: true}
	b := NewBlock(autodiff.NewRNG(3), autodiff.Float64, cfg)
	x := blockInput(4, autodiff.Float64, 1, 20, 16)
	pieces := make([]int, 20)
	for i := range pieces {
		pieces[i] = 1
	}
	got := feedPieces(t, b, x, NewRotatingCache(5, 0), pieces)
	w := *b
	w.Window = 6
	assert.InDeltaSlice(t, w.Forward(nil, x, nil).Float64s(), got.Float64s(), 1e-12)
}

// TestPagedCacheSharesPrefixes: a prefix computed once and forked into two
// sequences gives what two independent caches give, while the full blocks of
// the prefix are stored once.
func TestPagedCacheSharesPrefixes(t *testing.T) {
	cfg := BlockConfig{Dim: 16, Heads: 4, KVHeads: 2, RoPE: &RoPEOptions{}, Causal: true}
	b := NewBlock(autodiff.NewRNG(5), autodiff.Float64, cfg)
	prefix := blockInput(6, autodiff.Float64, 1, 10, 16)
	s1, s2 := blockInput(7, autodiff.Float64, 1, 5, 16), blockInput(8, autodiff.Float64, 1, 3, 16)

	pool := NewBlockPool(4)
	a := NewPagedCache(pool)
	b.Forward(nil, prefix, a)
	require.Equal(t, 3, pool.InUse())
	c := a.Fork().(*PagedCache)
	assert.Equal(t, a.Table(), c.Table())
	assert.Equal(t, 2, pool.Refs(a.Table()[0]))
	gotA := b.Forward(nil, s1, a)
	gotC := b.Forward(nil, s2, c)
	// The partial third block was copied on write; the first two stay shared.
	assert.Equal(t, a.Table()[:2], c.Table()[:2])
	assert.NotEqual(t, a.Table()[2], c.Table()[2])
	assert.Equal(t, 2, pool.Refs(a.Table()[0]))

	for _, tc := range []struct {
		suffix, got *autodiff.Tensor
	}{{s1, gotA}, {s2, gotC}} {
		ref := &GrowingCache{}
		b.Forward(nil, prefix, ref)
		want := b.Forward(nil, tc.suffix, ref)
		assert.InDeltaSlice(t, want.Float64s(), tc.got.Float64s(), 1e-12)
	}
	a.Release()
	c.Release()
	assert.Equal(t, 0, pool.InUse())
	pool.Release()
}

// TestRowsCacheRaggedBatch: two sequences of different lengths decode one
// token each in one batched call, as each would alone (RoPE at each row's own
// position).
func TestRowsCacheRaggedBatch(t *testing.T) {
	for _, bc := range blockConfigs {
		t.Run(bc.name, func(t *testing.T) {
			b := NewBlock(autodiff.NewRNG(11), autodiff.Float64, bc.cfg)
			p1, p2 := blockInput(12, autodiff.Float64, 1, 7, bc.cfg.Dim), blockInput(13, autodiff.Float64, 1, 3, bc.cfg.Dim)
			step := blockInput(14, autodiff.Float64, 2, 1, bc.cfg.Dim)
			c1, c2 := &GrowingCache{}, &GrowingCache{}
			b.Forward(nil, p1, c1)
			b.Forward(nil, p2, c2)
			rows := &RowsCache{Seqs: []SpanCache{c1.Fork().(SpanCache), c2.Fork().(SpanCache)}}
			got := b.Forward(nil, step, rows)
			want1 := b.Forward(nil, autodiff.Slice(step, 0, 0, 1), c1)
			want2 := b.Forward(nil, autodiff.Slice(step, 0, 1, 2), c2)
			assert.InDeltaSlice(t, autodiff.Concat(0, want1, want2).Float64s(), got.Float64s(), 1e-12)
			assert.Equal(t, 8, rows.RowOffset(0))
			assert.Equal(t, 4, rows.RowOffset(1))
		})
	}
}

// TestCachesTrim: trimming forgets the last positions; a ring refuses once it
// has overwritten them; a trimmed paged sequence that shares a partial block
// copies it on its next write and leaves the other sequence intact.
func TestCachesTrim(t *testing.T) {
	rows := func(from, n int) *autodiff.Tensor {
		k := autodiff.Empty(autodiff.Float64, 1, n, 1, 1)
		for i := range n {
			k.Float64s()[i] = float64(from + i)
		}
		return k
	}
	positions := func(c SpanCache) []float64 {
		var out []float64
		for _, s := range c.Spans(0) {
			out = append(out, s.K.Float64s()[s.Off:s.Off+s.Rows]...)
		}
		return out
	}
	g := &GrowingCache{}
	g.Append(rows(0, 5), rows(0, 5))
	require.True(t, g.TrimTo(3))
	g.Append(rows(10, 1), rows(10, 1))
	assert.Equal(t, []float64{0, 1, 2, 10}, positions(g))
	assert.False(t, g.TrimTo(9))

	r := NewRotatingCache(4, 0)
	r.Append(rows(0, 3), rows(0, 3))
	r.Append(rows(3, 3), rows(3, 3)) // 3…5 pending; the ring holds 0…2
	require.True(t, r.TrimTo(4), "within the last Append")
	assert.Equal(t, []float64{0, 1, 2, 3}, positions(r))
	r.Append(rows(4, 1), rows(4, 1)) // commits 3: positions 0…3 fill the ring
	require.True(t, r.TrimTo(2), "before the ring wraps")
	assert.Equal(t, []float64{0, 1}, positions(r))
	for p := 2; p < 9; p++ {
		r.Append(rows(p, 1), rows(p, 1))
	}
	assert.False(t, r.CanTrimTo(5), "position 5 was overwritten")
	assert.False(t, r.TrimTo(5))
	assert.Equal(t, 9, r.Offset())
	assert.Equal(t, []float64{4, 5, 6, 7, 8}, positions(r))

	pool := NewBlockPool(4)
	a := NewPagedCache(pool)
	a.Append(rows(0, 7), rows(0, 7))
	b := a.Fork().(*PagedCache)
	require.True(t, b.TrimTo(5))
	assert.Equal(t, 2, len(b.Table()))
	b.Append(rows(20, 2), rows(20, 2))
	assert.Equal(t, []float64{0, 1, 2, 3, 4, 5, 6}, positions(a))
	assert.Equal(t, []float64{0, 1, 2, 3, 4, 20, 21}, positions(b))
	assert.Equal(t, a.Table()[0], b.Table()[0])
	assert.NotEqual(t, a.Table()[1], b.Table()[1])
}
