package autodiff

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/mlxtrain/mlxtrain/metal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// shpTUnflat returns the multi-index of flat index f in shape (row-major).
func shpTUnflat(shape []int, f int) []int {
	idx := make([]int, len(shape))
	for d := len(shape) - 1; d >= 0; d-- {
		idx[d] = f % shape[d]
		f /= shape[d]
	}
	return idx
}

// shpTFlat is the row-major flat index of idx in shape.
func shpTFlat(shape, idx []int) int {
	f := 0
	for d := range shape {
		f = f*shape[d] + idx[d]
	}
	return f
}

// shpTPanic runs f and returns its panic message ("" when it did not panic).
func shpTPanic(f func()) (msg string) {
	defer func() {
		if r := recover(); r != nil {
			msg = fmt.Sprint(r)
		}
	}()
	f()
	return ""
}

// shpTWithThreads runs f at the given worker count and restores the previous one.
func shpTWithThreads(n int, f func()) {
	old := metal.Threads()
	metal.SetThreads(n)
	defer metal.SetThreads(old)
	f()
}

// shpTRefPermute is the reference: out[i_0..] = x[...] with out axis k = x axis perm[k].
func shpTRefPermute(x []float64, shape, perm []int) []float64 {
	oshape := make([]int, len(perm))
	for k, a := range perm {
		oshape[k] = shape[a]
	}
	out := make([]float64, len(x))
	in := make([]int, len(shape))
	for o := range out {
		oi := shpTUnflat(oshape, o)
		for k, a := range perm {
			in[a] = oi[k]
		}
		out[o] = x[shpTFlat(shape, in)]
	}
	return out
}

func TestReshape(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	x := randTensor(rng, -1, 1, 3, 7, 2)
	cases := []struct{ in, want []int }{
		{[]int{42}, []int{42}}, {[]int{-1}, []int{42}}, {[]int{6, -1}, []int{6, 7}},
		{[]int{3, 1, 14}, []int{3, 1, 14}}, {[]int{-1, 2, 3}, []int{7, 2, 3}},
	}
	for _, c := range cases {
		y := Reshape(x, c.in...)
		assert.Equal(t, c.want, y.Shape())
		assert.Same(t, x.Buffer(), y.Buffer(), "reshape shares the buffer")
		assert.Equal(t, x.Float64s(), y.Float64s())
		y.Release()
	}
	assert.Equal(t, []float64{1.5}, Reshape(Scalar(Float64, 1.5), 1, 1).Float64s())
	assert.Equal(t, []int{}, Reshape(FromFloat64([]float64{2}, 1, 1)).Shape())
	assert.Equal(t, []int{0, 5}, Reshape(Zeros(Float32, 5, 0), 0, 5).Shape())
	assert.Contains(t, shpTPanic(func() { Reshape(x, 5, -1) }), "Reshape")
	assert.Contains(t, shpTPanic(func() { Reshape(x, -1, -1) }), "Reshape")
	assert.Contains(t, shpTPanic(func() { Reshape(x, 43) }), "(3,7,2)")
	assert.Contains(t, shpTPanic(func() { Reshape(Zeros(Float32, 0, 3), 0, -1) }), "infer")

	// Squeeze and ExpandDims are reshapes
	z := Zeros(Float32, 1, 3, 1, 2)
	assert.Equal(t, []int{3, 2}, Squeeze(z).Shape())
	assert.Equal(t, []int{3, 1, 2}, Squeeze(z, 0).Shape())
	assert.Equal(t, []int{1, 3, 2}, Squeeze(z, -2).Shape())
	assert.Contains(t, shpTPanic(func() { Squeeze(z, 1) }), "Squeeze")
	assert.Equal(t, []int{1, 1, 3, 1, 2}, ExpandDims(z, 0).Shape())
	assert.Equal(t, []int{1, 3, 1, 2, 1}, ExpandDims(z, -1).Shape())
	assert.Equal(t, []int{1, 3, 1, 1, 2}, ExpandDims(z, 3).Shape())
	assert.Equal(t, []int{1}, ExpandDims(Scalar(Float32, 1), 0).Shape())
	assert.Same(t, z.Buffer(), ExpandDims(z, 1).Buffer())

	for _, f := range []func(x *Tensor) *Tensor{
		func(x *Tensor) *Tensor { return Reshape(x, -1, 3) },
		func(x *Tensor) *Tensor { return ExpandDims(x, 1) },
		func(x *Tensor) *Tensor { return Squeeze(Reshape(x, 1, 7, 1, 3)) },
	} {
		x := randTensor(rng, -1, 1, 7, 3)
		// multiply after the reshape so the VJP meets a non-trivial gradient
		err := GradCheck{Seed: 2}.Check(func(in []*Tensor) *Tensor { y := f(in[0]); return Mul(y, y) }, x)
		assert.NoError(t, err)
	}
}

// TestReshapeSharedBufferSurvivesRelease checks the reference counting of shared
// buffers: with poisoning on, a freed buffer reads as NaN, so a use after free of
// either the original or the reshape would show.
func TestReshapeSharedBufferSurvivesRelease(t *testing.T) {
	metal.SetPoison(true)
	defer metal.SetPoison(false)
	param := FromFloat32([]float32{1, 2, 3, 4, 5, 6}, 2, 3)

	tp := NewTape()
	x := tp.Watch(param)
	e := Exp(x)           // an op output, owned by the tape
	r := Reshape(e, 3, 2) // shares e's buffer
	r2 := Reshape(x, 6)   // shares the watched alias's (and param's) buffer
	s := Mul(r, Reshape(r, 3, 2))
	loss := Mul(Reshape(s, 6), r2)
	tp.Keep(r) // the caller keeps the reshape, not the original
	tp.BackwardWith(loss, Full(Float32, 1, 6))
	g := tp.Grad(param).Clone()
	tp.Release() // releases e, r2, s, loss, the gradients and the alias
	require.True(t, e.Released())
	require.False(t, r.Released())
	for i, v := range r.Float32s() {
		assert.InDelta(t, math.Exp(float64(i+1)), float64(v), 1e-3*math.Exp(float64(i+1)), "kept reshape %d", i)
	}
	for i, v := range param.Float32s() {
		assert.Equal(t, float32(i+1), v, "watched parameter %d", i)
	}
	// d/dx (e^x)² · x = e^{2x}(2x + 1)
	for i, v := range g.Float32s() {
		x := float64(i + 1)
		assert.InDelta(t, math.Exp(2*x)*(2*x+1), float64(v), 1e-4*math.Exp(2*x)*(2*x+1))
	}
	r.Release() // the last owner: now the buffer goes back, poisoned
	assert.True(t, r.Released())

	// an untracked reshape: two owners of one buffer, released in either order
	a := FromFloat64([]float64{1, 2, 3}, 3)
	b := Reshape(a, 1, 3)
	a.Release()
	assert.Equal(t, []float64{1, 2, 3}, b.Float64s())
	b.Release()
}

func TestPermuteMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	cases := []struct{ shape, perm []int }{
		{[]int{7}, []int{0}},
		{[]int{1, 1}, []int{1, 0}},
		{[]int{7, 33}, []int{1, 0}},
		{[]int{127, 33}, []int{-1, 0}},
		{[]int{300, 257}, []int{1, 0}},           // tiles and workers
		{[]int{2, 7, 3, 5}, []int{0, 2, 1, 3}},   // BSHD → BHSD
		{[]int{3, 33, 4, 64}, []int{0, 2, 1, 3}}, // BSHD → BHSD, rows over workers
		{[]int{2, 7, 33}, []int{2, 1, 0}},
		{[]int{2, 7, 33}, []int{0, 2, 1}},
		{[]int{7, 1, 3, 1, 5}, []int{4, 3, 2, 1, 0}},
		{[]int{2, 3, 4, 5, 6}, []int{1, 3, 0, 4, 2}},
		{[]int{2, 3, 4, 5}, []int{2, 3, 0, 1}}, // merges to a 2-D transpose
		{[]int{5, 0, 3}, []int{2, 0, 1}},
		{[]int{}, []int{}},
		{[]int{1, 127, 1}, []int{2, 1, 0}},
		{[]int{2, 1, 33}, []int{0, 2, 1}},      // only a unit axis moves: a flat copy
		{[]int{3, 1, 5, 7}, []int{3, 1, 0, 2}}, // unit axis between merged ones
	}
	for _, c := range cases {
		x := randTensor(rng, -1, 1, c.shape...)
		perm := shpPerm("test", c.perm, len(c.shape))
		want := shpTRefPermute(x.Float64s(), c.shape, perm)
		for _, th := range []int{1, 2} {
			shpTWithThreads(th, func() {
				y := Permute(x, c.perm...)
				assert.Equal(t, want, y.Float64s(), "%v %v threads %d", c.shape, c.perm, th)
				// other element sizes go through the same kernel
				y32 := Permute(Cast(x, Float32), c.perm...)
				y16 := Permute(Cast(x, Float16), c.perm...)
				for i, w := range want {
					assert.Equal(t, float32(w), y32.Float32s()[i])
					assert.Equal(t, Float32ToHalf(float32(w)), y16.Halves()[i])
				}
			})
		}
	}
	x := randTensor(rng, -1, 1, 3, 4, 5)
	assert.Equal(t, []int{5, 4, 3}, Transpose(x).Shape())
	assert.Equal(t, shpTRefPermute(x.Float64s(), x.Shape(), []int{2, 1, 0}), Transpose(x).Float64s())
	assert.Equal(t, shpTRefPermute(x.Float64s(), x.Shape(), []int{0, 2, 1}), SwapAxes(x, -1, 1).Float64s())
	assert.Contains(t, shpTPanic(func() { Permute(x, 0, 1) }), "Permute")
	assert.Contains(t, shpTPanic(func() { Permute(x, 0, 1, 1) }), "repeat")
	assert.Contains(t, shpTPanic(func() { Permute(x, 0, 1, 3) }), "out of range")
	ids := FromInt32([]int32{1, 2, 3, 4, 5, 6}, 2, 3)
	assert.Equal(t, []int32{1, 4, 2, 5, 3, 6}, Transpose(ids).Int32s())
}

func TestPermuteGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	cases := []struct{ shape, perm []int }{
		{[]int{7, 3}, []int{1, 0}}, {[]int{2, 3, 4, 5}, []int{0, 2, 1, 3}}, {[]int{2, 3, 4}, []int{2, 0, 1}},
		{[]int{33, 7}, []int{1, 0}},
	}
	for _, c := range cases {
		x := randTensor(rng, -1, 1, c.shape...)
		err := GradCheck{Seed: 5}.Check(func(in []*Tensor) *Tensor { return Permute(in[0], c.perm...) }, x)
		assert.NoError(t, err, "%v %v", c.shape, c.perm)
	}
}

func TestSliceMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	cases := []struct {
		shape                  []int
		axis, start, end, step int
	}{
		{[]int{7}, 0, 2, 5, 1}, {[]int{7}, 0, -3, 7, 1}, {[]int{33, 7}, 0, 1, 32, 1}, {[]int{33, 7}, 1, 3, 4, 1},
		{[]int{33, 7}, -1, 0, 7, 2}, {[]int{2, 127, 3}, 1, 5, 120, 7}, {[]int{4, 5}, 0, 2, 2, 1},
		{[]int{4, 0, 3}, 2, 1, 3, 1}, {[]int{1, 1}, 1, 0, 1, 1}, {[]int{3, 300, 129}, 1, 3, 290, 1},
		{[]int{5, 3}, 0, 0, -1, 3},
	}
	for _, c := range cases {
		x := randTensor(rng, -1, 1, c.shape...)
		a := normAxis("test", c.axis, len(c.shape))
		s, e := c.start, c.end
		if s < 0 {
			s += c.shape[a]
		}
		if e < 0 {
			e += c.shape[a]
		}
		oshape := append([]int(nil), c.shape...)
		oshape[a] = 0
		for j := s; j < e; j += c.step {
			oshape[a]++
		}
		want := make([]float64, numel(oshape))
		for o := range want {
			idx := shpTUnflat(oshape, o)
			idx[a] = s + idx[a]*c.step
			want[o] = x.Float64s()[shpTFlat(c.shape, idx)]
		}
		y := SliceStep(x, c.axis, c.start, c.end, c.step)
		assert.Equal(t, oshape, y.Shape(), "%+v", c)
		assert.Equal(t, want, y.Float64s(), "%+v", c)
		if c.step == 1 {
			assert.Equal(t, want, Slice(x, c.axis, c.start, c.end).Float64s())
		}
		y32 := SliceStep(Cast(x, Float32), c.axis, c.start, c.end, c.step)
		y16 := SliceStep(Cast(x, BFloat16), c.axis, c.start, c.end, c.step)
		for i, w := range want {
			assert.Equal(t, float32(w), y32.Float32s()[i])
			assert.Equal(t, Float32ToBFloat16(float32(w)), y16.Halves()[i])
		}
		if numel(c.shape) > 0 && numel(c.shape) < 5000 {
			err := GradCheck{Seed: 6}.Check(func(in []*Tensor) *Tensor {
				return SliceStep(in[0], c.axis, c.start, c.end, c.step)
			}, x)
			assert.NoError(t, err, "%+v", c)
		}
	}
	x := Zeros(Float32, 4, 5)
	assert.Contains(t, shpTPanic(func() { Slice(x, 1, 2, 6) }), "Slice")
	assert.Contains(t, shpTPanic(func() { Slice(x, 1, 3, 2) }), "Slice")
	assert.Contains(t, shpTPanic(func() { SliceStep(x, 1, 0, 2, 0) }), "Slice")
	assert.Contains(t, shpTPanic(func() { Slice(x, 2, 0, 1) }), "axis 2")
}

// shpTRefConcat concatenates along axis with nested index loops.
func shpTRefConcat(a int, xs []*Tensor) ([]int, []float64) {
	shape := append([]int(nil), xs[0].Shape()...)
	shape[a] = 0
	for _, x := range xs {
		shape[a] += x.Shape()[a]
	}
	out := make([]float64, numel(shape))
	for o := range out {
		idx := shpTUnflat(shape, o)
		j := idx[a]
		for _, x := range xs {
			if j < x.Shape()[a] {
				idx[a] = j
				out[o] = x.Float64s()[shpTFlat(x.Shape(), idx)]
				break
			}
			j -= x.Shape()[a]
		}
	}
	return shape, out
}

func TestConcatStackSplit(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	cases := []struct {
		base  []int
		axis  int
		sizes []int
	}{
		{[]int{7}, 0, []int{1, 7, 33}},
		{[]int{3, 7}, 1, []int{2, 0, 5}},
		{[]int{3, 7}, -2, []int{4, 1}},
		{[]int{2, 5, 3}, 1, []int{127, 1, 7}},
		{[]int{2, 5, 0}, 1, []int{2, 3}},
		{[]int{1, 4}, 0, []int{1}},
		{[]int{5, 2, 1}, -1, []int{33, 1}},
	}
	for _, c := range cases {
		a := normAxis("test", c.axis, len(c.base))
		xs := make([]*Tensor, len(c.sizes))
		for i, s := range c.sizes {
			shape := append([]int(nil), c.base...)
			shape[a] = s
			xs[i] = randTensor(rng, -1, 1, shape...)
		}
		shape, want := shpTRefConcat(a, xs)
		y := Concat(c.axis, xs...)
		require.Equal(t, shape, y.Shape(), "%+v", c)
		assert.Equal(t, want, y.Float64s(), "%+v", c)
		xs32 := make([]*Tensor, len(xs))
		for i, x := range xs {
			xs32[i] = Cast(x, Float32)
		}
		y32 := Concat(c.axis, xs32...)
		for i, w := range want {
			assert.Equal(t, float32(w), y32.Float32s()[i])
		}
		parts := Split(y, c.axis, c.sizes...)
		require.Len(t, parts, len(xs))
		for i, p := range parts {
			assert.Equal(t, xs[i].Shape(), p.Shape())
			assert.Equal(t, xs[i].Float64s(), p.Float64s(), "%+v piece %d", c, i)
		}
		if y.Len() > 0 {
			err := GradCheck{Seed: 8}.Check(func(in []*Tensor) *Tensor { return Concat(c.axis, in...) }, xs...)
			assert.NoError(t, err, "concat %+v", c)
		}
	}

	// Stack against the reference: a new axis at every position
	for _, base := range [][]int{{7}, {3, 5}, {2, 0}, {}} {
		xs := []*Tensor{randTensor(rng, -1, 1, base...), randTensor(rng, -1, 1, base...), randTensor(rng, -1, 1, base...)}
		for axis := -len(base) - 1; axis <= len(base); axis++ {
			a := normAxis("test", axis, len(base)+1)
			y := Stack(axis, xs...)
			shape := append(append(append([]int(nil), base[:a]...), 3), base[a:]...)
			require.Equal(t, shape, y.Shape())
			for o, v := range y.Float64s() {
				idx := shpTUnflat(shape, o)
				src := append(append([]int(nil), idx[:a]...), idx[a+1:]...)
				assert.Equal(t, xs[idx[a]].Float64s()[shpTFlat(base, src)], v)
			}
			if y.Len() > 0 {
				err := GradCheck{Seed: 9}.Check(func(in []*Tensor) *Tensor { return Stack(axis, in...) }, xs...)
				assert.NoError(t, err, "stack %v axis %d", base, axis)
			}
		}
	}
	assert.Contains(t, shpTPanic(func() { Concat(0, Zeros(Float32, 2, 3), Zeros(Float32, 2, 4)) }), "Concat")
	assert.Contains(t, shpTPanic(func() { Concat(0, Zeros(Float32, 2), Zeros(Float64, 2)) }), "dtypes")
	assert.Contains(t, shpTPanic(func() { Stack(0, Zeros(Float32, 2), Zeros(Float32, 3)) }), "Stack")
	assert.Contains(t, shpTPanic(func() { Split(Zeros(Float32, 5), 0, 2, 2) }), "add up")
	assert.Equal(t, []int32{1, 2, 3, 4}, Concat(0, FromInt32([]int32{1, 2}, 2), FromInt32([]int32{3, 4}, 2)).Int32s())
}

func TestSplitGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 10))
	x := randTensor(rng, -1, 1, 3, 10, 2)
	// every piece used, some pieces unused, pieces used twice, one piece only
	uses := [][]int{{0, 1, 2, 3}, {1, 3}, {0}, {2, 2}, {3}}
	for _, use := range uses {
		err := GradCheck{Seed: 11}.Check(func(in []*Tensor) *Tensor {
			p := Split(in[0], 1, 1, 4, 0, 5)
			var sq []*Tensor
			for _, i := range use {
				sq = append(sq, Mul(p[i], p[i]))
			}
			return Concat(1, sq...)
		}, x)
		assert.NoError(t, err, "pieces %v", use)
	}

	// two backward passes accumulate, each assembling the gradient once
	tp := NewTape()
	defer tp.Release()
	xw := tp.Watch(x)
	p := Split(xw, -2, 3, 7)
	l1 := Mul(p[1], p[1])
	tp.BackwardWith(l1, Full(Float64, 1, l1.Shape()...))
	tp.BackwardWith(p[0], Full(Float64, 1, p[0].Shape()...))
	g := tp.Grad(x).Float64s()
	for i, v := range x.Float64s() {
		j := shpTUnflat(x.Shape(), i)[1]
		if j < 3 {
			assert.Equal(t, 1.0, g[i])
		} else {
			assert.InDelta(t, 2*v, g[i], 1e-15)
		}
	}
}

func TestBroadcastTo(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 12))
	cases := []struct{ in, to []int }{
		{[]int{1}, []int{7}}, {[]int{7}, []int{33, 7}}, {[]int{33, 1}, []int{33, 7}}, {[]int{}, []int{2, 3}},
		{[]int{1, 3, 1}, []int{4, 2, 3, 127}}, {[]int{3, 1}, []int{0, 3, 5}}, {[]int{2, 3}, []int{2, 3}},
		{[]int{1, 1}, []int{1, 1}}, {[]int{300, 1}, []int{300, 200}},
	}
	for _, c := range cases {
		x := randTensor(rng, -1, 1, c.in...)
		y := BroadcastTo(x, c.to...)
		require.Equal(t, c.to, y.Shape())
		for o, v := range y.Float64s() {
			idx := shpTUnflat(c.to, o)
			src := make([]int, len(c.in))
			for d := range c.in {
				if c.in[d] != 1 {
					src[d] = idx[len(c.to)-len(c.in)+d]
				}
			}
			assert.Equal(t, x.Float64s()[shpTFlat(c.in, src)], v, "%+v at %v", c, idx)
		}
		if numel(c.to) > 0 && numel(c.to) < 5000 {
			err := GradCheck{Seed: 13}.Check(func(in []*Tensor) *Tensor {
				y := BroadcastTo(in[0], c.to...)
				return Mul(y, y)
			}, x)
			assert.NoError(t, err, "%+v", c)
		}
	}
	assert.Contains(t, shpTPanic(func() { BroadcastTo(Zeros(Float32, 3), 4) }), "BroadcastTo")
	assert.Contains(t, shpTPanic(func() { BroadcastTo(Zeros(Float32, 2, 3), 3) }), "BroadcastTo")
	assert.Equal(t, []int32{5, 5, 5}, BroadcastTo(FromInt32([]int32{5}, 1), 3).Int32s())
}

// shpTBenchThreads runs a benchmark body at one and at two workers.
func shpTBenchThreads(b *testing.B, body func(b *testing.B)) {
	for _, th := range []int{1, 2} {
		b.Run(fmt.Sprintf("threads=%d", th), func(b *testing.B) { shpTWithThreads(th, func() { body(b) }) })
	}
}

func BenchmarkTranspose2D(b *testing.B) {
	for _, n := range []int{256, 1024, 2048} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			src := make([]float32, n*n)
			dst := make([]float32, n*n)
			shpTBenchThreads(b, func(b *testing.B) {
				b.SetBytes(int64(8 * n * n))
				for b.Loop() {
					PermuteKernel(dst, src, []int{n, n}, []int{1, 0})
				}
			})
		})
	}
}

func BenchmarkPermuteBSHDToBHSD(b *testing.B) {
	shape := []int{8, 512, 12, 64}
	n := numel(shape)
	src := make([]float32, n)
	dst := make([]float32, n)
	shpTBenchThreads(b, func(b *testing.B) {
		b.SetBytes(int64(8 * n))
		for b.Loop() {
			PermuteKernel(dst, src, shape, []int{0, 2, 1, 3})
		}
	})
}

func BenchmarkConcatLastAxis(b *testing.B) {
	x := Zeros(Float32, 4096, 256)
	y := Zeros(Float32, 4096, 256)
	shpTBenchThreads(b, func(b *testing.B) {
		b.SetBytes(int64(4 * 2 * 2 * x.Len()))
		for b.Loop() {
			Concat(-1, x, y).Release()
		}
	})
}
