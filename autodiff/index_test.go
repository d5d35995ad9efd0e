package autodiff

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// idxTIDs returns an int32 tensor of random indices in [lo, hi).
func idxTIDs(rng *rand.Rand, lo, hi int, shape ...int) *Tensor {
	t := Empty(Int32, shape...)
	for i := range t.Int32s() {
		t.Int32s()[i] = int32(lo + rng.IntN(hi-lo))
	}
	return t
}

func TestGatherMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(20, 20))
	cases := []struct {
		shape, idx []int
		axis       int
	}{
		{[]int{7}, []int{3}, 0}, {[]int{33, 7}, []int{5, 2}, 0}, {[]int{33, 7}, []int{127}, -1},
		{[]int{2, 7, 3}, []int{4}, 1}, {[]int{2, 7, 3}, []int{}, 1}, {[]int{2, 7, 3}, []int{0}, 1},
		{[]int{2, 0, 3}, []int{2}, 0}, {[]int{1, 1}, []int{1, 1}, 1}, {[]int{3, 127, 129}, []int{40}, 1},
	}
	for _, c := range cases {
		x := randTensor(rng, -1, 1, c.shape...)
		a := normAxis("test", c.axis, len(c.shape))
		dim := c.shape[a]
		idx := idxTIDs(rng, -dim, dim, c.idx...)
		oshape := append(append(append([]int(nil), c.shape[:a]...), c.idx...), c.shape[a+1:]...)
		want := make([]float64, numel(oshape))
		for o := range want {
			oi := shpTUnflat(oshape, o)
			k := shpTFlat(c.idx, oi[a:a+len(c.idx)])
			j := int(idx.Int32s()[k])
			if j < 0 {
				j += dim
			}
			xi := append(append(append([]int(nil), oi[:a]...), j), oi[a+len(c.idx):]...)
			want[o] = x.Float64s()[shpTFlat(c.shape, xi)]
		}
		y := Gather(x, c.axis, idx)
		require.Equal(t, oshape, y.Shape(), "%+v", c)
		assert.Equal(t, want, y.Float64s(), "%+v", c)
		if y.Len() > 0 && y.Len() < 3000 {
			err := GradCheck{Seed: 21, Skip: []int{1}}.Check(func(in []*Tensor) *Tensor { return Gather(in[0], c.axis, in[1]) }, x, idx)
			assert.NoError(t, err, "%+v", c)
		}
	}
	x := Zeros(Float32, 4, 5)
	assert.Contains(t, shpTPanic(func() { Gather(x, 1, FromInt32([]int32{0, 5}, 2)) }), "Gather: index 5 out of range [-5, 5)")
	assert.Contains(t, shpTPanic(func() { Gather(x, 1, FromInt32([]int32{-6}, 1)) }), "index -6")
	assert.Contains(t, shpTPanic(func() { Gather(x, 0, Zeros(Float32, 1)) }), "int32")
}

func TestEmbedding(t *testing.T) {
	rng := rand.New(rand.NewPCG(22, 22))
	for _, c := range []struct {
		v, d int
		ids  []int
	}{
		{7, 1, []int{3}}, {7, 33, []int{2, 5}}, {33, 7, []int{127}}, {1, 4, []int{3, 2}}, {5, 0, []int{2}},
		{127, 3, []int{}}, {10, 300, []int{4, 33}}, {300, 5, []int{2, 400}},
	} {
		table := randTensor(rng, -1, 1, c.v, c.d)
		ids := idxTIDs(rng, 0, c.v, c.ids...)
		y := Embedding(table, ids)
		require.Equal(t, append(append([]int(nil), c.ids...), c.d), y.Shape())
		for k, id := range ids.Int32s() {
			for j := range c.d {
				assert.Equal(t, table.Float64s()[int(id)*c.d+j], y.Float64s()[k*c.d+j])
			}
		}
		// backward against a serial reference, repeated ids included
		tp := NewTape()
		tw := tp.Watch(table)
		out := Embedding(tw, ids)
		g := randTensor(rng, -1, 1, out.Shape()...)
		want := make([]float64, c.v*c.d)
		for k, id := range ids.Int32s() {
			for j := range c.d {
				want[int(id)*c.d+j] += g.Float64s()[k*c.d+j]
			}
		}
		tp.BackwardWith(out, g.Clone())
		got := tp.Grad(table)
		if len(c.ids) > 0 && numel(c.ids) > 0 {
			require.NotNil(t, got)
			assert.InDeltaSlice(t, want, got.Float64s(), 1e-12, "%+v", c)
		}
		tp.Release()
	}
	// repeated ids in a gradient check
	table := randTensor(rng, -1, 1, 5, 3)
	ids := FromInt32([]int32{1, 4, 1, 1, 0, 4}, 2, 3)
	err := GradCheck{Seed: 23, Skip: []int{1}}.Check(func(in []*Tensor) *Tensor { return Embedding(in[0], in[1]) }, table, ids)
	assert.NoError(t, err)
	assert.Contains(t, shpTPanic(func() { Embedding(table, FromInt32([]int32{5}, 1)) }), "Embedding: index 5 out of range [0, 5)")
	assert.Contains(t, shpTPanic(func() { Embedding(table, FromInt32([]int32{-1}, 1)) }), "Embedding: index -1 out of range [0, 5)")
	assert.Contains(t, shpTPanic(func() { Embedding(Zeros(Float32, 5), ids) }), "Embedding")
}

// TestEmbeddingBackwardParallel runs the scatter-add at one and two workers over
// every strategy (slabs of outer, columns, rows) with heavily repeated ids: the
// sums must match a serial reference exactly (same addition order). Run it under
// the race detector: go test -race -run Embedding ./autodiff/
func TestEmbeddingBackwardParallel(t *testing.T) {
	rng := rand.New(rand.NewPCG(24, 24))
	for _, c := range []struct{ outer, dim, inner, nk int }{
		{1, 50, 512, 3000}, // columns
		{1, 3000, 8, 9000}, // rows
		{6, 40, 16, 2000},  // slabs
		{1, 7, 1, 33},
		{1, 9, 33, 40}, // rows of 8 lanes and a tail
		{2, 5, 127, 20},
	} {
		src := make([]float32, c.outer*c.nk*c.inner)
		for i := range src {
			src[i] = float32(rng.NormFloat64())
		}
		idx := make([]int32, c.nk)
		for i := range idx {
			idx[i] = int32(rng.IntN(c.dim/4 + 1)) // a quarter of the rows: many repeats
		}
		want := make([]float32, c.outer*c.dim*c.inner)
		for o := range c.outer {
			for k, v := range idx {
				for j := range c.inner {
					want[(o*c.dim+int(v))*c.inner+j] += src[(o*c.nk+k)*c.inner+j]
				}
			}
		}
		for _, th := range []int{1, 2} {
			shpTWithThreads(th, func() {
				got := make([]float32, len(want))
				ScatterAddKernel(got, src, idx, c.outer, c.dim, c.inner)
				assert.Equal(t, want, got, "%+v threads %d", c, th)
			})
		}
	}
	// and through the op, at two workers
	shpTWithThreads(2, func() {
		table := Zeros(Float32, 64, 256)
		ids := idxTIDs(rng, 0, 8, 64, 64)
		tp := NewTape()
		defer tp.Release()
		out := Embedding(tp.Watch(table), ids)
		tp.BackwardWith(out, Full(Float32, 1, out.Shape()...))
		counts := make([]float32, 64)
		for _, v := range ids.Int32s() {
			counts[v]++
		}
		g := tp.Grad(table).Float32s()
		for r := range 64 {
			for j := range 256 {
				require.Equal(t, counts[r], g[r*256+j])
			}
		}
	})
}

func TestTakeAlongAxis(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 25))
	cases := []struct {
		x, idx []int
		axis   int
	}{
		{[]int{7}, []int{3}, 0}, {[]int{33, 7}, []int{33, 1}, 1}, {[]int{33, 7}, []int{2, 7}, 0},
		{[]int{4, 7, 3}, []int{4, 2, 1}, -2}, {[]int{1, 7, 3}, []int{5, 9, 3}, 1}, {[]int{4, 7, 1}, []int{1, 2, 5}, 1},
		{[]int{3, 127}, []int{3, 0}, 1}, {[]int{0, 5}, []int{0, 2}, 1},
	}
	for _, c := range cases {
		x := randTensor(rng, -1, 1, c.x...)
		a := normAxis("test", c.axis, len(c.x))
		dim := c.x[a]
		idx := idxTIDs(rng, -dim, dim, c.idx...)
		oshape := make([]int, len(c.x))
		for d := range oshape {
			oshape[d] = max(c.x[d], c.idx[d])
			if d == a {
				oshape[d] = c.idx[d]
			}
			if c.x[d] == 0 || c.idx[d] == 0 {
				oshape[d] = 0
			}
		}
		want := make([]float64, numel(oshape))
		for o := range want {
			oi := shpTUnflat(oshape, o)
			ii := make([]int, len(oi))
			xi := make([]int, len(oi))
			for d := range oi {
				if c.idx[d] != 1 {
					ii[d] = oi[d]
				}
				if c.x[d] != 1 {
					xi[d] = oi[d]
				}
			}
			j := int(idx.Int32s()[shpTFlat(c.idx, ii)])
			if j < 0 {
				j += dim
			}
			xi[a] = j
			want[o] = x.Float64s()[shpTFlat(c.x, xi)]
		}
		y := TakeAlongAxis(x, idx, c.axis)
		require.Equal(t, oshape, y.Shape(), "%+v", c)
		assert.Equal(t, want, y.Float64s(), "%+v", c)
		if y.Len() > 0 {
			err := GradCheck{Seed: 26, Skip: []int{1}}.Check(func(in []*Tensor) *Tensor { return TakeAlongAxis(in[0], in[1], c.axis) }, x, idx)
			assert.NoError(t, err, "%+v", c)
		}
	}
	x := Zeros(Float32, 4, 5)
	assert.Contains(t, shpTPanic(func() { TakeAlongAxis(x, FromInt32([]int32{7}, 1, 1), 1) }), "TakeAlongAxis: index 7 out of range")
	assert.Contains(t, shpTPanic(func() { TakeAlongAxis(x, FromInt32([]int32{1}, 1), 1) }), "rank")
	assert.Contains(t, shpTPanic(func() { TakeAlongAxis(x, FromInt32([]int32{1, 1}, 2, 1), 1) }), "broadcast")
}

func TestWhereAndMaskedFill(t *testing.T) {
	rng := rand.New(rand.NewPCG(27, 27))
	cases := []struct{ cond, a, b []int }{
		{[]int{7}, []int{7}, []int{7}}, {[]int{33, 1}, []int{7}, []int{33, 7}}, {[]int{}, []int{3, 4}, []int{1}},
		{[]int{2, 1, 5}, []int{3, 1}, []int{1, 5}}, {[]int{127}, []int{127}, []int{}}, {[]int{0, 3}, []int{3}, []int{1, 3}},
	}
	for ci, c := range cases {
		cond := Empty(Int32, c.cond...)
		for i := range cond.Int32s() {
			cond.Int32s()[i] = int32(rng.IntN(3)) // 0, 1 or 2: nonzero is true
		}
		a := randTensor(rng, -1, 1, c.a...)
		b := randTensor(rng, -1, 1, c.b...)
		shape, err := BroadcastShapes(c.cond, c.a)
		require.NoError(t, err)
		shape, err = BroadcastShapes(shape, c.b)
		require.NoError(t, err)
		pick := func(sh []int, oi []int) int {
			src := make([]int, len(sh))
			for d := range sh {
				if sh[d] != 1 {
					src[d] = oi[len(oi)-len(sh)+d]
				}
			}
			return shpTFlat(sh, src)
		}
		want := make([]float64, numel(shape))
		for o := range want {
			oi := shpTUnflat(shape, o)
			if cond.Int32s()[pick(c.cond, oi)] != 0 {
				want[o] = a.Float64s()[pick(c.a, oi)]
			} else {
				want[o] = b.Float64s()[pick(c.b, oi)]
			}
		}
		condF := Cast(cond, Float32) // a float mask works the same
		for _, m := range []*Tensor{cond, condF} {
			y := Where(m, a, b)
			require.Equal(t, shape, y.Shape())
			assert.Equal(t, want, y.Float64s(), "%+v", c)
		}
		y32 := Where(cond, Cast(a, Float32), Cast(b, Float32))
		for o, w := range want {
			assert.Equal(t, float32(w), y32.Float32s()[o])
		}
		if len(want) > 0 {
			err := GradCheck{Seed: uint64(ci), Skip: []int{0}}.Check(func(in []*Tensor) *Tensor { return Where(in[0], in[1], in[2]) }, cond, a, b)
			assert.NoError(t, err, "%+v", c)
		}

		// MaskedFill: x takes the full shape, the mask broadcasts to it
		x := randTensor(rng, -1, 1, shape...)
		y := MaskedFill(x, cond, -7.5)
		m32 := MaskedFill(Cast(x, Float32), Cast(cond, Float64), -7.5)
		for o, v := range y.Float64s() {
			oi := shpTUnflat(shape, o)
			if cond.Int32s()[pick(c.cond, oi)] != 0 {
				assert.Equal(t, -7.5, v)
			} else {
				assert.Equal(t, x.Float64s()[o], v)
			}
			assert.Equal(t, float32(v), m32.Float32s()[o])
		}
		if len(want) > 0 {
			err := GradCheck{Seed: uint64(ci), Skip: []int{1}}.Check(func(in []*Tensor) *Tensor { return MaskedFill(in[0], in[1], -7.5) }, x, cond)
			assert.NoError(t, err, "%+v", c)
		}
	}
	assert.Contains(t, shpTPanic(func() { Where(Zeros(Int32, 3), Zeros(Float32, 2), Zeros(Float32, 2)) }), "Where")
	assert.Contains(t, shpTPanic(func() { MaskedFill(Zeros(Float32, 2), Zeros(Int32, 3, 2), 0) }), "MaskedFill")
	assert.Contains(t, shpTPanic(func() { Where(Zeros(Float16, 2), Zeros(Float32, 2), Zeros(Float32, 2)) }), "mask")
}

func TestOneHot(t *testing.T) {
	ids := FromInt32([]int32{2, 0, 4, 2}, 2, 2)
	for _, dt := range []DType{Float32, Float64, Int32, Uint32, Float16, BFloat16} {
		y := OneHot(ids, 5, dt)
		require.Equal(t, []int{2, 2, 5}, y.Shape())
		assert.Equal(t, dt, y.DType())
		for o := range y.Len() {
			want := 0.0
			if int32(o%5) == ids.Int32s()[o/5] {
				want = 1
			}
			assert.Equal(t, want, y.At(o), fmt.Sprint(dt, o))
		}
	}
	assert.Equal(t, []int{0, 3}, OneHot(Zeros(Int32, 0), 3, Float32).Shape())
	assert.Contains(t, shpTPanic(func() { OneHot(ids, 4, Float32) }), "OneHot: index 4 out of range [0, 4)")
}

func BenchmarkEmbeddingBackward(b *testing.B) {
	// a GPT-2-sized table and a batch of 16×256 tokens
	const v, d, n = 50257, 768, 4096
	rng := rand.New(rand.NewPCG(1, 1))
	idx := make([]int32, n)
	for i := range idx {
		idx[i] = int32(rng.IntN(v))
	}
	src := make([]float32, n*d)
	dst := make([]float32, v*d)
	shpTBenchThreads(b, func(b *testing.B) {
		b.SetBytes(int64(4 * 3 * n * d))
		for b.Loop() {
			ScatterAddKernel(dst, src, idx, 1, v, d)
		}
	})
}

func BenchmarkEmbeddingForward(b *testing.B) {
	const v, d, n = 50257, 768, 4096
	rng := rand.New(rand.NewPCG(1, 1))
	idx := make([]int32, n)
	for i := range idx {
		idx[i] = int32(rng.IntN(v))
	}
	src := make([]float32, v*d)
	dst := make([]float32, n*d)
	shpTBenchThreads(b, func(b *testing.B) {
		b.SetBytes(int64(4 * 2 * n * d))
		for b.Loop() {
			GatherKernel(dst, src, idx, 1, v, d)
		}
	})
}
