package autodiff

import (
	"fmt"

	"github.com/mlxtrain/mlxtrain/internal/vecmath"
	"github.com/mlxtrain/mlxtrain/metal"
)

// Indexing ops: indices are int32 tensors; an index out of range panics naming the
// op, the index and the bound. The scatter-add kernels behind the backward passes
// never let two workers write the same element, and each element sums its
// contributions in index order, so gradients are identical at any thread count.

// idxCheck validates int32 indices into an axis of size dim and returns them with
// negative ones (allowed when neg) mapped to dim+i. The input is not modified: a
// copy is made only when some index is negative.
func idxCheck(op string, idx *Tensor, dim int, neg bool) []int32 {
	if idx.dtype != Int32 {
		panic(fmt.Sprintf("autodiff: %s: indices are %s, want int32", op, idx.dtype))
	}
	ids := idx.Int32s()
	lo := 0
	if neg {
		lo = -dim
	}
	copied := false
	for i, v := range ids {
		if int(v) < lo || int(v) >= dim {
			if neg {
				panic(fmt.Sprintf("autodiff: %s: index %d out of range [%d, %d) (at position %d)", op, v, -dim, dim, i))
			}
			panic(fmt.Sprintf("autodiff: %s: index %d out of range [0, %d) (at position %d)", op, v, dim, i))
		}
		if v < 0 {
			if !copied {
				ids = append([]int32(nil), ids...)
				copied = true
			}
			ids[i] = v + int32(dim)
		}
	}
	return ids
}

// GatherKernel copies rows: viewing src as (outer, dim, inner) and dst as (outer,
// len(idx), inner), dst[o, k, :] = src[o, idx[k], :]. Indices must be in [0, dim).
// T is any element type.
func GatherKernel[T any](dst, src []T, idx []int32, outer, dim, inner int) {
	nk := len(idx)
	if outer == 0 || nk == 0 || inner == 0 {
		return
	}
	metal.ParallelFor(outer*nk, max(1, shpGrain/inner), func(lo, hi int) {
		for u := lo; u < hi; u++ {
			o, k := u/nk, u%nk
			s := (o*dim + int(idx[k])) * inner
			copy(dst[u*inner:(u+1)*inner], src[s:s+inner])
		}
	})
}

// ScatterAddKernel is the adjoint of GatherKernel: dst[o, idx[k], :] += src[o, k, :].
// Repeated indices add up. Workers own disjoint parts of dst (whole outer slabs,
// column ranges of the rows, or ranges of rows), so there are no races, and every
// element adds its contributions in the order of k.
func ScatterAddKernel[T Float](dst, src []T, idx []int32, outer, dim, inner int) {
	nk := len(idx)
	if outer == 0 || nk == 0 || inner == 0 {
		return
	}
	th := metal.Threads()
	switch {
	case outer >= th && outer > 1:
		metal.ParallelFor(outer, max(1, shpGrain/(nk*inner)), func(lo, hi int) {
			for o := lo; o < hi; o++ {
				idxScatterRows(dst[o*dim*inner:(o+1)*dim*inner], src[o*nk*inner:(o+1)*nk*inner], idx, inner, 0, inner, 0, dim)
			}
		})
	case inner >= 64*th:
		// columns: each worker adds its slice of every row
		for o := range outer {
			d, s := dst[o*dim*inner:(o+1)*dim*inner], src[o*nk*inner:(o+1)*nk*inner]
			metal.ParallelFor(inner, max(64, shpGrain/nk), func(c0, c1 int) {
				idxScatterRows(d, s, idx, inner, c0, c1, 0, dim)
			})
		}
	default:
		// rows: each worker scans every index and adds those in its range
		for o := range outer {
			d, s := dst[o*dim*inner:(o+1)*dim*inner], src[o*nk*inner:(o+1)*nk*inner]
			metal.ParallelFor(dim, max(1, shpGrain/(nk+inner)), func(r0, r1 int) {
				idxScatterRows(d, s, idx, inner, 0, inner, r0, r1)
			})
		}
	}
}

// idxScatterRows adds columns [c0, c1) of src row k into dst row idx[k], for the
// indices that fall in [r0, r1).
func idxScatterRows[T Float](dst, src []T, idx []int32, inner, c0, c1, r0, r1 int) {
	for k, v := range idx {
		r := int(v)
		if r < r0 || r >= r1 {
			continue
		}
		d := dst[r*inner+c0 : r*inner+c1]
		s := src[k*inner+c0 : k*inner+c1]
		if d32, ok := any(d).([]float32); ok {
			vecmath.AddTo(d32, any(s).([]float32))
			continue
		}
		for i := range d {
			d[i] += s[i]
		}
	}
}

func idxGatherAny(dst, src *Tensor, idx []int32, outer, dim, inner int) {
	switch src.dtype.Size() {
	case 2:
		GatherKernel(shpElems[uint16](dst), shpElems[uint16](src), idx, outer, dim, inner)
	case 4:
		GatherKernel(shpElems[uint32](dst), shpElems[uint32](src), idx, outer, dim, inner)
	default:
		GatherKernel(shpElems[uint64](dst), shpElems[uint64](src), idx, outer, dim, inner)
	}
}

// idxGather is Gather and Embedding: x's axis a is replaced by idx's shape.
func idxGather(op, name string, x *Tensor, a int, idx *Tensor, neg bool) *Tensor {
	outer, dim, inner := shpSplitAt(x.shape, a)
	ids := idxCheck(op, idx, dim, neg)
	tm := startOp()
	shape := make([]int, 0, len(x.shape)-1+len(idx.shape))
	shape = append(shape, x.shape[:a]...)
	shape = append(shape, idx.shape...)
	shape = append(shape, x.shape[a+1:]...)
	out := Empty(x.dtype, shape...)
	// The device path covers Embedding (rows of a table; ids checked above).
	var dev metal.Compute
	if outer == 1 && !neg && idx.dtype == Int32 && x.dtype == Float32 {
		dev = DeviceFor(embeddingOp, []*Tensor{out, x, idx}, len(ids), inner)
	}
	path := metal.PathMetal
	if !tryDevice(name, dev, func(d metal.Compute) error {
		return metal.RunEmbedding(d, out.buf, x.buf, idx.buf, len(ids), dim, inner)
	}) {
		path = metal.PathGo
		idxGatherAny(out, x, ids, outer, dim, inner)
	}
	tm.done(name, path, 2*out.Len()*out.dtype.Size())
	if !shpDiff(x) {
		return out
	}
	return record(out, name, func(g *Tensor) {
		accumulate(x, func() *Tensor {
			if dev != nil {
				dx := Empty(x.dtype, x.shape...)
				if tryDevice(name, DeviceFor(embeddingOp, []*Tensor{dx, g, x, idx}, len(ids), inner), func(d metal.Compute) error {
					return metal.RunEmbeddingBackward(d, dx.buf, g.buf, idx.buf, len(ids), dim, inner, false)
				}) {
					return dx
				}
				dx.Release()
			}
			dx := Zeros(x.dtype, x.shape...)
			if x.dtype == Float32 {
				ScatterAddKernel(dx.Float32s(), g.Float32s(), ids, outer, dim, inner)
			} else {
				ScatterAddKernel(dx.Float64s(), g.Float64s(), ids, outer, dim, inner)
			}
			return dx
		})
	}, x, idx)
}

// Gather takes elements of x along axis at the int32 indices idx, as NumPy's take:
// the result's shape is x.shape[:axis] + idx.shape + x.shape[axis+1:]. Negative
// indices count from the end of the axis. Its VJP scatter-adds the gradient back
// (repeated indices accumulate).
func Gather(x *Tensor, axis int, idx *Tensor) *Tensor {
	a := normAxis("Gather", axis, len(x.shape))
	return idxGather("Gather", "gather", x, a, idx, true)
}

// Embedding looks up rows of table (V, D) for int32 ids of any shape, giving
// ids.shape + (D). Ids must be in [0, V). Its VJP scatter-adds into a (V, D)
// gradient, in parallel without races.
func Embedding(table, ids *Tensor) *Tensor {
	if len(table.shape) != 2 {
		panic(fmt.Sprintf("autodiff: Embedding: table of shape %s, want (vocab, dim)", shapeString(table.shape)))
	}
	return idxGather("Embedding", "embedding", table, 0, ids, false)
}

// TakeAlongAxis picks, as NumPy's take_along_axis, out[..., k, ...] = x[...,
// idx[..., k, ...], ...] along axis: idx has x's rank, and on every other axis x and
// idx broadcast against each other. Negative indices count from the end.
func TakeAlongAxis(x, idx *Tensor, axis int) *Tensor {
	r := len(x.shape)
	a := normAxis("TakeAlongAxis", axis, r)
	if len(idx.shape) != r {
		panic(fmt.Sprintf("autodiff: TakeAlongAxis: indices %s and x %s differ in rank", shapeString(idx.shape), shapeString(x.shape)))
	}
	shape := make([]int, r)
	for d := range r {
		xd, id := x.shape[d], idx.shape[d]
		switch {
		case d == a:
			shape[d] = id
		case xd == id || id == 1:
			shape[d] = xd
		case xd == 1:
			shape[d] = id
		default:
			panic(fmt.Sprintf("autodiff: TakeAlongAxis: indices %s do not broadcast with x %s along axis %d", shapeString(idx.shape), shapeString(x.shape), axis))
		}
	}
	ids := idxCheck("TakeAlongAxis", idx, x.shape[a], true)
	tm := startOp()
	sx, si := make([]int, r), make([]int, r)
	axStride := numel(x.shape[a+1:])
	s, q := 1, 1
	for d := r - 1; d >= 0; d-- {
		if d != a && x.shape[d] != 1 {
			sx[d] = s
		}
		if idx.shape[d] != 1 || d == a {
			si[d] = q
		}
		s *= x.shape[d]
		q *= idx.shape[d]
	}
	out := Empty(x.dtype, shape...)
	n := out.Len()
	switch x.dtype.Size() {
	case 2:
		idxTakeAlong(shpElems[uint16](out), shpElems[uint16](x), ids, shape, sx, si, axStride)
	case 4:
		idxTakeAlong(shpElems[uint32](out), shpElems[uint32](x), ids, shape, sx, si, axStride)
	default:
		idxTakeAlong(shpElems[uint64](out), shpElems[uint64](x), ids, shape, sx, si, axStride)
	}
	tm.done("take_along_axis", metal.PathGo, 2*n*out.dtype.Size())
	if !shpDiff(x) {
		return out
	}
	return record(out, "take_along_axis", func(g *Tensor) {
		accumulate(x, func() *Tensor {
			// Serial: broadcasting lets many outputs land on one element.
			dx := Zeros(x.dtype, x.shape...)
			if x.dtype == Float32 {
				idxPutAlong(dx.Float32s(), g.Float32s(), ids, shape, sx, si, axStride)
			} else {
				idxPutAlong(dx.Float64s(), g.Float64s(), ids, shape, sx, si, axStride)
			}
			return dx
		})
	}, x, idx)
}

func idxTakeAlong[T any](dst, src []T, ids []int32, shape, sx, si []int, axStride int) {
	metal.ParallelFor(len(dst), shpGrain, func(lo, hi int) {
		forEachBroadcast(shape, sx, si, lo, hi, func(o, ix, ii int) {
			dst[o] = src[ix+int(ids[ii])*axStride]
		})
	})
}

func idxPutAlong[T Float](dst, g []T, ids []int32, shape, sx, si []int, axStride int) {
	if len(g) == 0 {
		return
	}
	forEachBroadcast(shape, sx, si, 0, len(g), func(o, ix, ii int) {
		dst[ix+int(ids[ii])*axStride] += g[o]
	})
}

// ---- Where, MaskedFill, OneHot -------------------------------------------------

// idxMask returns cond as "element is nonzero" flags, for float or integer masks.
func idxMask(op string, cond *Tensor) []bool {
	m := make([]bool, cond.Len())
	switch cond.dtype {
	case Float32:
		for i, v := range cond.Float32s() {
			m[i] = v != 0
		}
	case Float64:
		for i, v := range cond.Float64s() {
			m[i] = v != 0
		}
	case Int32:
		for i, v := range cond.Int32s() {
			m[i] = v != 0
		}
	case Uint32:
		for i, v := range cond.Uint32s() {
			m[i] = v != 0
		}
	default:
		panic(fmt.Sprintf("autodiff: %s: mask is %s, want float32, float64, int32 or uint32", op, cond.dtype))
	}
	return m
}

// idxForEach3 calls fn(o, i0, i1, i2) for the flat output indexes in [lo, hi) of
// shape with the matching flat indexes of three operands of element strides s0,
// s1, s2 (0 on broadcast axes).
func idxForEach3(shape, s0, s1, s2 []int, lo, hi int, fn func(o, i0, i1, i2 int)) {
	r := len(shape)
	if r == 0 {
		if lo < hi {
			fn(0, 0, 0, 0)
		}
		return
	}
	idx := make([]int, r)
	i0, i1, i2 := 0, 0, 0
	rem := lo
	for d := r - 1; d >= 0; d-- {
		idx[d] = rem % shape[d]
		rem /= shape[d]
		i0 += idx[d] * s0[d]
		i1 += idx[d] * s1[d]
		i2 += idx[d] * s2[d]
	}
	for o := lo; o < hi; o++ {
		fn(o, i0, i1, i2)
		for d := r - 1; d >= 0; d-- {
			idx[d]++
			i0 += s0[d]
			i1 += s1[d]
			i2 += s2[d]
			if idx[d] < shape[d] {
				break
			}
			i0 -= shape[d] * s0[d]
			i1 -= shape[d] * s1[d]
			i2 -= shape[d] * s2[d]
			idx[d] = 0
		}
	}
}

// idxWhereKernel sets out[o] = m ? a : b over the broadcast of three operands, or,
// with b nil, out[o] = m ? a : bv.
func idxWhereKernel[T Float](out []T, m []bool, a, b []T, bv T, shape, sm, sa, sb []int) {
	metal.ParallelFor(len(out), shpGrain/4, func(lo, hi int) {
		if len(m) == len(out) && len(a) == len(out) && (b == nil || len(b) == len(out)) {
			for o := lo; o < hi; o++ {
				switch {
				case m[o]:
					out[o] = a[o]
				case b == nil:
					out[o] = bv
				default:
					out[o] = b[o]
				}
			}
			return
		}
		idxForEach3(shape, sm, sa, sb, lo, hi, func(o, im, ia, ib int) {
			switch {
			case m[im]:
				out[o] = a[ia]
			case b == nil:
				out[o] = bv
			default:
				out[o] = b[ib]
			}
		})
	})
}

// idxMaskedGrad returns the gradient g kept where the mask m (broadcast to g by
// the strides sm) equals keep, zero elsewhere, summed down to shape.
func idxMaskedGrad(g *Tensor, m []bool, sm []int, keep bool, shape []int) *Tensor {
	z := Empty(g.dtype, g.shape...)
	if g.dtype == Float32 {
		idxKeepKernel(z.Float32s(), g.Float32s(), m, keep, g.shape, sm)
	} else {
		idxKeepKernel(z.Float64s(), g.Float64s(), m, keep, g.shape, sm)
	}
	s := SumTo(z, shape)
	if s != z {
		z.Release()
	}
	return s
}

func idxKeepKernel[T Float](dst, g []T, m []bool, keep bool, shape, sm []int) {
	metal.ParallelFor(len(dst), shpGrain/4, func(lo, hi int) {
		forEachBroadcast(shape, sm, sm, lo, hi, func(o, im, _ int) {
			if m[im] == keep {
				dst[o] = g[o]
			} else {
				dst[o] = 0
			}
		})
	})
}

// Where returns a where cond is nonzero and b elsewhere, broadcasting all three
// (NumPy rules). cond is a float or integer mask; a and b share a float dtype.
// Gradients flow to a and b (summed over broadcast axes), none to cond.
func Where(cond, a, b *Tensor) *Tensor {
	checkFloat("where", a, b)
	ab, err := BroadcastShapes(a.shape, b.shape)
	if err == nil {
		ab, err = BroadcastShapes(cond.shape, ab)
	}
	if err != nil {
		panic(fmt.Sprintf("autodiff: Where: cond %s, a %s and b %s do not broadcast", shapeString(cond.shape), shapeString(a.shape), shapeString(b.shape)))
	}
	if cond.dtype != Float32 && cond.dtype != Float64 && cond.dtype != Int32 && cond.dtype != Uint32 {
		idxMask("Where", cond) // panics
	}
	tm := startOp()
	shape := ab
	sm, sa, sb := broadcastStrides(cond.shape, shape), broadcastStrides(a.shape, shape), broadcastStrides(b.shape, shape)
	out := Empty(a.dtype, shape...)
	var m []bool      // the mask on the CPU, read when a CPU path needs it
	var saved *Tensor // what the backward reads the mask from (idxSaveMask)
	mask := func() []bool {
		if m == nil {
			m = idxMask("Where", saved)
		}
		return m
	}
	saved = cond
	path := metal.PathMetal
	switch {
	case tryDevice("where", whereDevice(out, cond, a, b), func(d metal.Compute) error { return whereOn(d, out, cond, a, b, 0, sm, sa, sb) }):
	case a.dtype == Float32:
		path = metal.PathGo
		idxWhereKernel(out.Float32s(), mask(), a.Float32s(), b.Float32s(), 0, shape, sm, sa, sb)
	default:
		path = metal.PathGo
		idxWhereKernel(out.Float64s(), mask(), a.Float64s(), b.Float64s(), 0, shape, sm, sa, sb)
	}
	tm.done("where", path, 3*out.Len()*out.dtype.Size())
	saved = idxSaveMask(cond, m)
	record(out, "where", func(g *Tensor) {
		accumulate(a, func() *Tensor { return idxMaskedGradOf(g, saved, mask, sm, true, a.shape) })
		accumulate(b, func() *Tensor { return idxMaskedGradOf(g, saved, mask, sm, false, b.shape) })
	}, cond, a, b)
	if saved != cond {
		Own(out, saved)
	}
	return out
}

// idxSaveMask returns the mask tensor the backward reads: cond itself when the
// forward read it on the CPU (m), else an alias of cond's storage, which keeps
// it alive should the caller release cond before the backward.
func idxSaveMask(cond *Tensor, m []bool) *Tensor {
	if m != nil {
		return cond
	}
	return shpShare(cond, cond.shape)
}

// idxMaskedGradOf is idxMaskedGrad on the device when it can run there, else on
// the CPU with the mask from mask().
func idxMaskedGradOf(g, cond *Tensor, mask func() []bool, sm []int, keep bool, shape []int) *Tensor {
	if z := maskedGradOn(g, cond, sm, keep, shape); z != nil {
		return z
	}
	return idxMaskedGrad(g, mask(), sm, keep, shape)
}

// MaskedFill returns x with value wherever mask (float or integer, broadcast to
// x's shape) is nonzero. The gradient flows to x where the mask is zero.
func MaskedFill(x, mask *Tensor, value float64) *Tensor {
	checkFloat("masked_fill", x)
	if s, err := BroadcastShapes(mask.shape, x.shape); err != nil || !sameShape(s, x.shape) {
		panic(fmt.Sprintf("autodiff: MaskedFill: mask %s does not broadcast to x %s", shapeString(mask.shape), shapeString(x.shape)))
	}
	if mask.dtype != Float32 && mask.dtype != Float64 && mask.dtype != Int32 && mask.dtype != Uint32 {
		idxMask("MaskedFill", mask) // panics
	}
	tm := startOp()
	shape := x.shape
	sm, sx := broadcastStrides(mask.shape, shape), broadcastStrides(shape, shape)
	zero := make([]int, len(shape))
	out := Empty(x.dtype, shape...)
	var m []bool      // the mask on the CPU, read when a CPU path needs it
	var saved *Tensor // what the backward reads the mask from (idxSaveMask)
	flags := func() []bool {
		if m == nil {
			m = idxMask("MaskedFill", saved)
		}
		return m
	}
	saved = mask
	// out = (not m) ? x : value, written as where(m, value, x) with a scalar operand
	path := metal.PathMetal
	switch {
	case tryDevice("masked_fill", whereDevice(out, mask, x), func(d metal.Compute) error { return whereOn(d, out, mask, nil, x, value, sm, zero, sx) }):
	case x.dtype == Float32:
		path = metal.PathGo
		v := []float32{float32(value)}
		idxWhereKernel(out.Float32s(), flags(), v, x.Float32s(), 0, shape, sm, zero, sx)
	default:
		path = metal.PathGo
		v := []float64{value}
		idxWhereKernel(out.Float64s(), flags(), v, x.Float64s(), 0, shape, sm, zero, sx)
	}
	tm.done("masked_fill", path, 2*out.Len()*out.dtype.Size())
	saved = idxSaveMask(mask, m)
	record(out, "masked_fill", func(g *Tensor) {
		accumulate(x, func() *Tensor { return idxMaskedGradOf(g, saved, flags, sm, false, x.shape) })
	}, mask, x)
	if saved != mask {
		Own(out, saved)
	}
	return out
}

// OneHot returns ids.shape + (depth) with 1 at each id and 0 elsewhere, in dtype
// (any numeric dtype). Ids must be in [0, depth). It has no gradient.
func OneHot(ids *Tensor, depth int, dtype DType) *Tensor {
	if depth < 0 {
		panic(fmt.Sprintf("autodiff: OneHot: negative depth %d", depth))
	}
	v := idxCheck("OneHot", ids, depth, false)
	shape := append(append([]int(nil), ids.shape...), depth)
	out := Zeros(dtype, shape...)
	switch dtype {
	case Float32:
		idxOneHot(out.Float32s(), v, depth, 1)
	case Float64:
		idxOneHot(out.Float64s(), v, depth, 1)
	case Int32:
		idxOneHot(out.Int32s(), v, depth, 1)
	case Uint32:
		idxOneHot(out.Uint32s(), v, depth, 1)
	case Float16:
		idxOneHot(out.Halves(), v, depth, Float32ToHalf(1))
	case BFloat16:
		idxOneHot(out.Halves(), v, depth, Float32ToBFloat16(1))
	}
	return out
}

func idxOneHot[T any](dst []T, ids []int32, depth int, one T) {
	for k, v := range ids {
		dst[k*depth+int(v)] = one
	}
}
