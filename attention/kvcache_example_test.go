package attention_test

import (
	"fmt"

	"github.com/mlxtrain/mlxtrain/attention"
	"github.com/mlxtrain/mlxtrain/autodiff"
)

// A growing cache doubles its capacity, so appending a token copies only that
// token; the block reads the cache in place.
func ExampleGrowingCache() {
	b := attention.NewBlock(autodiff.NewRNG(1), autodiff.Float32, attention.BlockConfig{
		Dim: 32, Heads: 4, KVHeads: 2, RoPE: &attention.RoPEOptions{}, Causal: true,
	})
	cache := &attention.GrowingCache{}
	b.Forward(nil, autodiff.RandNormal(autodiff.NewRNG(2), autodiff.Float32, 0, 1, 1, 10, 32), cache)
	for range 300 {
		b.Forward(nil, autodiff.RandNormal(autodiff.NewRNG(3), autodiff.Float32, 0, 1, 1, 1, 32), cache)
	}
	fmt.Println(cache.Len(), cache.Capacity())
	// Output: 310 512
}

// A rotating cache keeps the attention sinks and the most recent positions;
// positions (and so RoPE) stay absolute. The spans list the sinks, the ring
// oldest first (in two runs where it wraps) and the last Append.
func ExampleRotatingCache() {
	cache := attention.NewRotatingCache(6, 2)
	for range 10 {
		k := autodiff.Zeros(autodiff.Float32, 1, 1, 1, 4)
		cache.Append(k, k)
	}
	for _, s := range cache.Spans(0) {
		fmt.Print(s.Pos, "…", s.Pos+s.Rows-1, " ")
	}
	fmt.Println("offset", cache.Offset())
	// Output: 0…1 5…5 6…8 9…9 offset 10
}

// Two sequences share a prompt's blocks; the second's first write into the
// shared partial block copies it.
func ExamplePagedCache() {
	pool := attention.NewBlockPool(4)
	a := attention.NewPagedCache(pool)
	k := autodiff.Zeros(autodiff.Float32, 1, 6, 2, 8)
	a.Append(k, k)
	b := a.Fork().(*attention.PagedCache)
	fmt.Println(a.Table(), b.Table(), pool.InUse())
	one := autodiff.Zeros(autodiff.Float32, 1, 1, 2, 8)
	b.Append(one, one)
	fmt.Println(a.Table(), b.Table(), pool.InUse())
	// Output:
	// [0 1] [0 1] 2
	// [0 1] [0 2] 3
}

// Sequences of different lengths side by side: each row attends its own cache
// at its own position.
func ExampleRowsCache() {
	b := attention.NewBlock(autodiff.NewRNG(1), autodiff.Float32, attention.BlockConfig{
		Dim: 16, Heads: 2, RoPE: &attention.RoPEOptions{}, Causal: true,
	})
	long, short := &attention.GrowingCache{}, &attention.GrowingCache{}
	b.Forward(nil, autodiff.RandNormal(autodiff.NewRNG(2), autodiff.Float32, 0, 1, 1, 7, 16), long)
	b.Forward(nil, autodiff.RandNormal(autodiff.NewRNG(3), autodiff.Float32, 0, 1, 1, 2, 16), short)
	rows := &attention.RowsCache{Seqs: []attention.SpanCache{long, short}}
	y := b.Forward(nil, autodiff.RandNormal(autodiff.NewRNG(4), autodiff.Float32, 0, 1, 2, 1, 16), rows)
	fmt.Println(y.Shape(), rows.RowOffset(0), rows.RowOffset(1))
	// Output: [2 1 16] 8 3
}

// Attention of one query against a cache, read in place.
func ExampleSpanAttention() {
	c := &attention.GrowingCache{}
	k := autodiff.FromFloat32([]float32{1, 0, 0, 1, 1, 1}, 1, 3, 1, 2) // 3 positions, 1 head of 2
	v := autodiff.FromFloat32([]float32{1, 0, 0, 1, 2, 2}, 1, 3, 1, 2)
	c.Append(k, v)
	q := autodiff.FromFloat32([]float32{0, 0}, 1, 1, 1, 2) // equal scores: the mean of the values
	out := attention.SpanAttention(q, c, []int{2}, attention.Options{Causal: true})
	fmt.Printf("%.3f\n", out.Float32s())
	// Output: [1.000 1.000]
}
