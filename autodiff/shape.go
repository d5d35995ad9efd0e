package autodiff

import (
	"fmt"
	"slices"
	"unsafe"

	"github.com/mlxtrain/mlxtrain/metal"
)

// Shape ops. Tensors are contiguous, so Reshape (and Squeeze, ExpandDims) return a
// new tensor sharing the input's buffer; every op that moves elements (Transpose,
// Slice, Concat, Split, Stack, BroadcastTo) copies. The copy kernels only move
// bits, so they serve every dtype; the ops record a VJP only for float32 and
// float64 tensors.

// shpGrain is the number of elements a copy worker moves at least: copies are
// memory-bound, and starting a worker costs about a microsecond.
const shpGrain = 1 << 15

// shpDiff reports whether ops on t record gradients (float compute dtypes only).
func shpDiff(t *Tensor) bool { return t.dtype.IsFloat() }

// shpElems views a tensor's storage as elements of type T (T's size must be the
// dtype's size).
func shpElems[T any](t *Tensor) []T {
	b := t.bytes()
	n := t.Len()
	if n == 0 {
		return []T{}
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&b[0])), n)
}

// shpShare returns an untracked tensor of the given shape that shares t's buffer.
func shpShare(t *Tensor, shape []int) *Tensor {
	if t.buf == nil {
		panic("autodiff: use of a released tensor " + shapeString(t.shape))
	}
	t.buf.Retain()
	return &Tensor{shape: shape, dtype: t.dtype, buf: t.buf, id: -1}
}

// shpResolve fills in a -1 in shape so the element count matches n.
func shpResolve(op string, n int, xs []int, shape []int) []int {
	out := append([]int{}, shape...)
	infer := -1
	known := 1
	for i, d := range out {
		switch {
		case d == -1 && infer < 0:
			infer = i
		case d < 0:
			panic(fmt.Sprintf("autodiff: %s: bad target shape %s for %s", op, shapeString(shape), shapeString(xs)))
		default:
			known *= d
		}
	}
	if infer >= 0 {
		if known == 0 || n%known != 0 {
			panic(fmt.Sprintf("autodiff: %s: cannot infer -1 in %s for %s", op, shapeString(shape), shapeString(xs)))
		}
		out[infer] = n / known
	} else if known != n {
		panic(fmt.Sprintf("autodiff: %s: %s has %d elements, target shape %s has %d", op, shapeString(xs), n, shapeString(shape), known))
	}
	return out
}

// shpView is the recorded reshape behind Reshape, Squeeze and ExpandDims.
func shpView(op string, x *Tensor, shape []int) *Tensor {
	out := shpShare(x, shape)
	if !shpDiff(x) {
		return out
	}
	return record(out, op, func(g *Tensor) {
		// g is used once here, so the gradient may share its buffer.
		accumulate(x, func() *Tensor { return shpShare(g, x.shape) })
	}, x)
}

// Reshape returns x with a new shape of the same element count; one dimension may
// be -1 and is then inferred. The result shares x's storage (no copy): writes
// through one are visible in the other, and each must be released (a tape does
// that for what it recorded).
func Reshape(x *Tensor, shape ...int) *Tensor {
	return shpView("reshape", x, shpResolve("Reshape", x.Len(), x.shape, shape))
}

// Squeeze removes the given axes, which must have size 1, or every axis of size 1
// when none is given. Like Reshape it shares x's storage.
func Squeeze(x *Tensor, axes ...int) *Tensor {
	drop := make([]bool, len(x.shape))
	if len(axes) == 0 {
		for i, d := range x.shape {
			drop[i] = d == 1
		}
	}
	for _, a := range axes {
		i := normAxis("Squeeze", a, len(x.shape))
		if x.shape[i] != 1 {
			panic(fmt.Sprintf("autodiff: Squeeze: axis %d of %s is not 1", a, shapeString(x.shape)))
		}
		drop[i] = true
	}
	shape := []int{}
	for i, d := range x.shape {
		if !drop[i] {
			shape = append(shape, d)
		}
	}
	return shpView("squeeze", x, shape)
}

// ExpandDims inserts an axis of size 1 at axis (in [-rank-1, rank]; negative counts
// from the end of the result). Like Reshape it shares x's storage.
func ExpandDims(x *Tensor, axis int) *Tensor {
	a := normAxis("ExpandDims", axis, len(x.shape)+1)
	shape := make([]int, 0, len(x.shape)+1)
	shape = append(shape, x.shape[:a]...)
	shape = append(shape, 1)
	shape = append(shape, x.shape[a:]...)
	return shpView("expand_dims", x, shape)
}

// ---- Permute -------------------------------------------------------------------

// shpSimplify drops axes of size 1 and merges runs of input axes that stay
// adjacent and in order in the output. It returns the reduced input dims and the
// permutation over them; a permutation that is the identity on them means a flat copy.
func shpSimplify(shape, perm []int) (dims, p []int) {
	// groups of input axes that move together, in output order
	type group struct{ first, size int }
	var groups []group
	prev := make([]int, len(shape)) // the nearest input axis before a that is not 1
	q := -1
	for a, d := range shape {
		prev[a] = q
		if d != 1 {
			q = a
		}
	}
	last := -1
	for _, a := range perm {
		if shape[a] == 1 {
			continue
		}
		if len(groups) > 0 && prev[a] == last {
			groups[len(groups)-1].size *= shape[a]
		} else {
			groups = append(groups, group{a, shape[a]})
		}
		last = a
	}
	// the groups in input order give the reduced input axes
	order := make([]int, len(groups))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(i, j int) int { return groups[i].first - groups[j].first })
	dims = make([]int, len(groups))
	rank := make([]int, len(groups)) // output group → reduced input axis
	for r, gi := range order {
		dims[r] = groups[gi].size
		rank[gi] = r
	}
	return dims, rank
}

// PermuteKernel copies src, a row-major array of the given shape, into dst with its
// axes permuted: axis k of dst is axis perm[k] of src. It only moves elements, so T
// is any element type of the right size. Moves that keep the last axis in place
// copy whole rows (the swap of two middle axes, BSHD↔BHSD, is one); moves of the
// last axis (a 2-D transpose, after merging) go through cache-sized strips with
// four-by-four register blocks. Work is split across workers.
func PermuteKernel[T any](dst, src []T, shape, perm []int) {
	n := numel(shape)
	if n == 0 {
		return
	}
	dims, p := shpSimplify(shape, perm)
	r := len(dims)
	src, dst = src[:n], dst[:n]
	identity := true
	for k, a := range p {
		identity = identity && a == k
	}
	if identity {
		metal.ParallelFor(n, shpGrain, func(lo, hi int) { copy(dst[lo:hi], src[lo:hi]) })
		return
	}
	istr := make([]int, r) // input strides
	s := 1
	for j := r - 1; j >= 0; j-- {
		istr[j] = s
		s *= dims[j]
	}
	ostrOf := make([]int, r) // the output stride of each input axis
	s = 1
	for k := r - 1; k >= 0; k-- {
		ostrOf[p[k]] = s
		s *= dims[p[k]]
	}
	if p[r-1] == r-1 {
		shpPermuteRows(dst, src, dims, p, istr)
		return
	}
	shpPermuteTiles(dst, src, dims, p, istr, ostrOf)
}

// shpPermuteRows handles permutations that keep the last axis: it copies rows of
// dims[r-1] elements, walking the output rows with an odometer over the input.
func shpPermuteRows[T any](dst, src []T, dims, p, istr []int) {
	r := len(dims)
	inner := dims[r-1]
	rows := len(src) / inner
	outer := r - 1 // output axes 0..r-2 index the rows
	metal.ParallelFor(rows, max(1, shpGrain/inner), func(lo, hi int) {
		idx := make([]int, outer)
		off := 0
		rem := lo
		for k := outer - 1; k >= 0; k-- {
			d := dims[p[k]]
			idx[k] = rem % d
			rem /= d
			off += idx[k] * istr[p[k]]
		}
		for row := lo; row < hi; row++ {
			copy(dst[row*inner:(row+1)*inner], src[off:off+inner])
			for k := outer - 1; k >= 0; k-- {
				a := p[k]
				idx[k]++
				off += istr[a]
				if idx[k] < dims[a] {
					break
				}
				off -= dims[a] * istr[a]
				idx[k] = 0
			}
		}
	})
}

// shpStrip is the number of output rows a transposing copy fills at once: 16
// rows of a 64-byte line each stay in L1 even when their stride is a power of two
// (which maps them all to one cache set).
const shpStrip = 16

// shpPermuteTiles handles permutations that move the last axis. In the plane of
// the input's last axis a (contiguous in src) and the output's last axis b
// (contiguous in dst), it takes a strip of shpStrip values of a and walks b four
// input rows at a time, each step writing four adjacent outputs per output row:
// the strip's output lines fill up in cache while the input streams through.
// Strips of every index of the remaining axes are spread over workers.
func shpPermuteTiles[T any](dst, src []T, dims, p, istr, ostrOf []int) {
	r := len(dims)
	aLen := dims[r-1] // input's last axis: stride 1 in src
	oa := ostrOf[r-1] // ... and its stride in dst
	bAx := p[r-1]     // output's last axis: stride 1 in dst
	bLen := dims[bAx]
	ib := istr[bAx]
	var bSize, bIstr, bOstr []int // the other axes
	for j := range r - 1 {
		if j != bAx {
			bSize = append(bSize, dims[j])
			bIstr = append(bIstr, istr[j])
			bOstr = append(bOstr, ostrOf[j])
		}
	}
	nas := (aLen + shpStrip - 1) / shpStrip
	work := len(src) / (aLen * bLen) * nas
	metal.ParallelFor(work, max(1, shpGrain/(shpStrip*bLen)), func(lo, hi int) {
		for w := lo; w < hi; w++ {
			batch, as := w/nas, w%nas
			ioff, ooff := 0, 0
			for k := len(bSize) - 1; k >= 0; k-- {
				c := batch % bSize[k]
				batch /= bSize[k]
				ioff += c * bIstr[k]
				ooff += c * bOstr[k]
			}
			a0 := as * shpStrip
			n := min(shpStrip, aLen-a0)
			b := 0
			for ; b+4 <= bLen; b += 4 {
				s := ioff + b*ib + a0
				s0 := src[s : s+n]
				s1 := src[s+ib : s+ib+n]
				s2 := src[s+2*ib : s+2*ib+n]
				s3 := src[s+3*ib : s+3*ib+n]
				o := ooff + b + a0*oa
				for a, v := range s0 {
					d := dst[o : o+4 : o+4]
					d[0], d[1], d[2], d[3] = v, s1[a], s2[a], s3[a]
					o += oa
				}
			}
			for ; b < bLen; b++ {
				s := ioff + b*ib + a0
				o := ooff + b + a0*oa
				for _, v := range src[s : s+n] {
					dst[o] = v
					o += oa
				}
			}
		}
	})
}

// shpPermuteAny runs PermuteKernel on t's storage, whatever its dtype.
func shpPermuteAny(dst, src *Tensor, perm []int) {
	switch src.dtype.Size() {
	case 2:
		PermuteKernel(shpElems[uint16](dst), shpElems[uint16](src), src.shape, perm)
	case 4:
		PermuteKernel(shpElems[uint32](dst), shpElems[uint32](src), src.shape, perm)
	default:
		PermuteKernel(shpElems[uint64](dst), shpElems[uint64](src), src.shape, perm)
	}
}

// shpPerm validates a permutation of rank axes (negative axes count from the end).
func shpPerm(op string, axes []int, rank int) []int {
	if len(axes) != rank {
		panic(fmt.Sprintf("autodiff: %s: %d axes %v for rank %d", op, len(axes), axes, rank))
	}
	perm := make([]int, rank)
	seen := make([]bool, rank)
	for k, a := range axes {
		j := normAxis(op, a, rank)
		if seen[j] {
			panic(fmt.Sprintf("autodiff: %s: axes %v repeat axis %d", op, axes, a))
		}
		seen[j] = true
		perm[k] = j
	}
	return perm
}

func shpPermute(op string, x *Tensor, perm []int) *Tensor {
	tm := startOp()
	shape := make([]int, len(perm))
	for k, a := range perm {
		shape[k] = x.shape[a]
	}
	out := Empty(x.dtype, shape...)
	path := shpPermuteOn(op, out, x, perm)
	tm.done(op, path, 2*out.Len()*out.dtype.Size())
	if !shpDiff(x) {
		return out
	}
	return record(out, op, func(g *Tensor) {
		accumulate(x, func() *Tensor {
			inv := make([]int, len(perm))
			for k, a := range perm {
				inv[a] = k
			}
			dx := Empty(g.dtype, x.shape...)
			shpPermuteOn(op, dx, g, inv)
			return dx
		})
	}, x)
}

// Permute returns a copy of x with its axes reordered: axis k of the result is axis
// axes[k] of x. axes must name every axis once (negative counts from the end).
func Permute(x *Tensor, axes ...int) *Tensor {
	return shpPermute("permute", x, shpPerm("Permute", axes, len(x.shape)))
}

// Transpose is Permute with NumPy's default: with no axes it reverses them all.
func Transpose(x *Tensor, axes ...int) *Tensor {
	if len(axes) == 0 {
		perm := make([]int, len(x.shape))
		for k := range perm {
			perm[k] = len(perm) - 1 - k
		}
		return shpPermute("transpose", x, perm)
	}
	return shpPermute("transpose", x, shpPerm("Transpose", axes, len(x.shape)))
}

// SwapAxes returns a copy of x with axes i and j exchanged.
func SwapAxes(x *Tensor, i, j int) *Tensor {
	perm := make([]int, len(x.shape))
	for k := range perm {
		perm[k] = k
	}
	a, b := normAxis("SwapAxes", i, len(perm)), normAxis("SwapAxes", j, len(perm))
	perm[a], perm[b] = b, a
	return shpPermute("swap_axes", x, perm)
}

// ---- copies along one axis -----------------------------------------------------

// shpAxisCopy is the kernel behind Slice, Concat, Split and Stack. Both arrays are
// viewed as (outer, dim, inner); for every outer index o and j < count it copies
// the inner-row src[o, sStart+j·sStep, :] to dst[o, dStart+j·dStep, :].
func shpAxisCopy[T any](dst []T, dDim, dStart, dStep int, src []T, sDim, sStart, sStep, count, outer, inner int) {
	if count == 0 || outer == 0 || inner == 0 {
		return
	}
	contiguous := dStep == 1 && sStep == 1
	metal.ParallelFor(outer*count, max(1, shpGrain/inner), func(lo, hi int) {
		for u := lo; u < hi; {
			o, j := u/count, u%count
			run := 1
			if contiguous {
				run = min(count-j, hi-u) // rows j… of this o are adjacent in both
			}
			d := (o*dDim + dStart + j*dStep) * inner
			s := (o*sDim + sStart + j*sStep) * inner
			copy(dst[d:d+run*inner], src[s:s+run*inner])
			u += run
		}
	})
}

// shpAxisCopyAny dispatches shpAxisCopy on the dtype's element size.
func shpAxisCopyAny(dst *Tensor, dDim, dStart, dStep int, src *Tensor, sDim, sStart, sStep, count, outer, inner int) {
	switch src.dtype.Size() {
	case 2:
		shpAxisCopy(shpElems[uint16](dst), dDim, dStart, dStep, shpElems[uint16](src), sDim, sStart, sStep, count, outer, inner)
	case 4:
		shpAxisCopy(shpElems[uint32](dst), dDim, dStart, dStep, shpElems[uint32](src), sDim, sStart, sStep, count, outer, inner)
	default:
		shpAxisCopy(shpElems[uint64](dst), dDim, dStart, dStep, shpElems[uint64](src), sDim, sStart, sStep, count, outer, inner)
	}
}

// shpSplitAt returns the sizes before, at and after axis a.
func shpSplitAt(shape []int, a int) (outer, dim, inner int) {
	return numel(shape[:a]), shape[a], numel(shape[a+1:])
}

// Slice returns the elements of x with index in [start, end) along axis. Negative
// start and end count from the end of the axis (as in Python); the normalised range
// must satisfy 0 ≤ start ≤ end ≤ size, or Slice panics.
func Slice(x *Tensor, axis, start, end int) *Tensor {
	return SliceStep(x, axis, start, end, 1)
}

// SliceStep is Slice taking every step-th index (step ≥ 1) from start up to end.
func SliceStep(x *Tensor, axis, start, end, step int) *Tensor {
	a := normAxis("Slice", axis, len(x.shape))
	dim := x.shape[a]
	s, e := start, end
	if s < 0 {
		s += dim
	}
	if e < 0 {
		e += dim
	}
	if step < 1 || s < 0 || e > dim || s > e {
		panic(fmt.Sprintf("autodiff: Slice: [%d:%d:%d] of axis %d of %s", start, end, step, axis, shapeString(x.shape)))
	}
	count := (e - s + step - 1) / step
	tm := startOp()
	shape := append([]int(nil), x.shape...)
	shape[a] = count
	out := Empty(x.dtype, shape...)
	outer, _, inner := shpSplitAt(x.shape, a)
	path := shpAxisCopyOn("slice", copyDevice(out.Len(), out, x), out, count, 0, 1, x, dim, s, step, count, outer, inner, true)
	tm.done("slice", path, 2*out.Len()*out.dtype.Size())
	if !shpDiff(x) {
		return out
	}
	return record(out, "slice", func(g *Tensor) {
		accumulate(x, func() *Tensor {
			dx := Zeros(x.dtype, x.shape...)
			shpAxisCopyOn("slice", copyDevice(g.Len(), dx, g), dx, dim, s, step, g, count, 0, 1, count, outer, inner, false)
			return dx
		})
	}, x)
}

// shpJoinCheck validates the inputs of Concat and Stack.
func shpJoinCheck(op string, xs []*Tensor) {
	if len(xs) == 0 {
		panic("autodiff: " + op + ": no tensors")
	}
	for _, t := range xs[1:] {
		if t.dtype != xs[0].dtype {
			panic(fmt.Sprintf("autodiff: %s: dtypes %s and %s", op, xs[0].dtype, t.dtype))
		}
	}
}

// shpJoin copies each xs[i], seen as (outer, sizes[i], inner), into out at its
// offset along the axis, and records a VJP that slices the gradient back.
func shpJoin(op string, out *Tensor, xs []*Tensor, sizes []int, outer, inner int) *Tensor {
	tm := startOp()
	total := 0
	for _, s := range sizes {
		total += s
	}
	offs := make([]int, len(xs))
	off := 0
	d := copyDevice(out.Len(), append([]*Tensor{out}, xs...)...)
	path := metal.PathMetal
	for i, x := range xs {
		offs[i] = off
		// The first block's launch may poison all of out (the simulator does); the
		// others keep what is there.
		path = joinPaths(path, shpAxisCopyOn(op, d, out, total, off, 1, x, sizes[i], 0, 1, sizes[i], outer, inner, i == 0))
		off += sizes[i]
	}
	tm.done(op, path, 2*out.Len()*out.dtype.Size())
	if !shpDiff(out) {
		return out
	}
	return record(out, op, func(g *Tensor) {
		for i, x := range xs {
			accumulate(x, func() *Tensor {
				dx := Empty(x.dtype, x.shape...)
				shpAxisCopyOn(op, copyDevice(dx.Len(), dx, g), dx, sizes[i], 0, 1, g, total, offs[i], 1, sizes[i], outer, inner, true)
				return dx
			})
		}
	}, xs...)
}

// Concat joins tensors along an existing axis; all must have one dtype and the
// same shape except along axis.
func Concat(axis int, xs ...*Tensor) *Tensor {
	shpJoinCheck("Concat", xs)
	ref := xs[0].shape
	a := normAxis("Concat", axis, len(ref))
	sizes := make([]int, len(xs))
	for i, t := range xs {
		ok := len(t.shape) == len(ref)
		for d := 0; ok && d < len(ref); d++ {
			ok = d == a || t.shape[d] == ref[d]
		}
		if !ok {
			panic(fmt.Sprintf("autodiff: Concat: shapes %s and %s along axis %d", shapeString(ref), shapeString(t.shape), axis))
		}
		sizes[i] = t.shape[a]
	}
	shape := append([]int(nil), ref...)
	shape[a] = 0
	for _, s := range sizes {
		shape[a] += s
	}
	outer, _, inner := shpSplitAt(ref, a)
	return shpJoin("concat", Empty(xs[0].dtype, shape...), xs, sizes, outer, inner)
}

// Stack joins tensors of one shape and dtype along a new axis, placed at axis of
// the result (in [-rank-1, rank]).
func Stack(axis int, xs ...*Tensor) *Tensor {
	shpJoinCheck("Stack", xs)
	ref := xs[0].shape
	a := normAxis("Stack", axis, len(ref)+1)
	for _, t := range xs {
		if !sameShape(t.shape, ref) {
			panic(fmt.Sprintf("autodiff: Stack: shapes %s and %s", shapeString(ref), shapeString(t.shape)))
		}
	}
	shape := make([]int, 0, len(ref)+1)
	shape = append(shape, ref[:a]...)
	shape = append(shape, len(xs))
	shape = append(shape, ref[a:]...)
	sizes := make([]int, len(xs))
	for i := range sizes {
		sizes[i] = 1
	}
	return shpJoin("stack", Empty(xs[0].dtype, shape...), xs, sizes, numel(ref[:a]), numel(ref[a:]))
}

// shpSplitState is shared by the pieces of one Split: the first piece backward
// reaches builds the whole input gradient from every piece's gradient, and the
// others then have nothing left to do in that pass.
type shpSplitState struct {
	pieces []*Tensor
	pass   int // the tape's backward count when the gradient was last built, or -1
}

// Split cuts x along axis into pieces of the given sizes, which must add up to the
// axis size. Each piece is a separate differentiable output; in backward the input
// gradient is assembled once from the pieces that received one (the others count
// as zeros).
func Split(x *Tensor, axis int, sizes ...int) []*Tensor {
	a := normAxis("Split", axis, len(x.shape))
	total := 0
	for _, s := range sizes {
		if s < 0 {
			panic(fmt.Sprintf("autodiff: Split: negative size in %v", sizes))
		}
		total += s
	}
	if total != x.shape[a] {
		panic(fmt.Sprintf("autodiff: Split: sizes %v do not add up to axis %d of %s", sizes, axis, shapeString(x.shape)))
	}
	tm := startOp()
	outer, dim, inner := shpSplitAt(x.shape, a)
	pieces := make([]*Tensor, len(sizes))
	offs := make([]int, len(sizes))
	off := 0
	for i, s := range sizes {
		shape := append([]int(nil), x.shape...)
		shape[a] = s
		pieces[i] = Empty(x.dtype, shape...)
	}
	d := copyDevice(x.Len(), append([]*Tensor{x}, pieces...)...)
	path := metal.PathMetal
	for i, s := range sizes {
		path = joinPaths(path, shpAxisCopyOn("split", d, pieces[i], s, 0, 1, x, dim, off, 1, s, outer, inner, true))
		offs[i] = off
		off += s
	}
	tm.done("split", path, 2*x.Len()*x.dtype.Size())
	if !shpDiff(x) {
		return pieces
	}
	st := &shpSplitState{pieces: pieces, pass: -1}
	for _, p := range pieces {
		record(p, "split", func(g *Tensor) {
			tp := p.tape
			if st.pass == tp.backwards {
				return
			}
			st.pass = tp.backwards
			accumulate(x, func() *Tensor {
				dx := Zeros(x.dtype, x.shape...)
				for i, q := range st.pieces {
					// Every consumer of a piece was recorded after Split, so when
					// backward reaches the pieces their gradients are complete.
					if gq := tp.grads[q.id]; gq != nil {
						shpAxisCopyOn("split", copyDevice(dx.Len(), dx, gq), dx, dim, offs[i], 1, gq, sizes[i], 0, 1, sizes[i], outer, inner, false)
					}
				}
				return dx
			})
		}, x)
	}
	return pieces
}

// BroadcastTo returns a copy of x broadcast to shape (NumPy rules: x's axes align
// with the trailing axes of shape and each must equal its target or be 1). Its VJP
// sums the gradient back with SumTo. When shape is x's own, the result shares x's
// storage as Reshape does.
func BroadcastTo(x *Tensor, shape ...int) *Tensor {
	checkShape("BroadcastTo", shape)
	if b, err := BroadcastShapes(x.shape, shape); err != nil || !sameShape(b, shape) {
		panic(fmt.Sprintf("autodiff: BroadcastTo: %s does not broadcast to %s", shapeString(x.shape), shapeString(shape)))
	}
	if sameShape(x.shape, shape) {
		return shpView("broadcast_to", x, append([]int(nil), shape...))
	}
	tm := startOp()
	out := Empty(x.dtype, shape...)
	st := broadcastStrides(x.shape, shape)
	path := metal.PathMetal
	if !broadcastOn(out, x, st) {
		path = metal.PathGo
		switch x.dtype.Size() {
		case 2:
			shpBroadcastKernel(shpElems[uint16](out), shpElems[uint16](x), shape, st)
		case 4:
			shpBroadcastKernel(shpElems[uint32](out), shpElems[uint32](x), shape, st)
		default:
			shpBroadcastKernel(shpElems[uint64](out), shpElems[uint64](x), shape, st)
		}
	}
	tm.done("broadcast_to", path, 2*out.Len()*out.dtype.Size())
	if !shpDiff(x) {
		return out
	}
	return record(out, "broadcast_to", func(g *Tensor) {
		accumulate(x, func() *Tensor { return SumTo(g, x.shape) })
	}, x)
}

// shpBroadcastKernel fills dst (of shape) from src with element strides st (0 on
// repeated axes), a row of the last axis at a time.
func shpBroadcastKernel[T any](dst, src []T, shape, st []int) {
	n := len(dst)
	if n == 0 {
		return
	}
	r := len(shape)
	inner, sIn := shape[r-1], st[r-1]
	rows := n / inner
	metal.ParallelFor(rows, max(1, shpGrain/inner), func(lo, hi int) {
		idx := make([]int, r-1)
		off, rem := 0, lo
		for k := r - 2; k >= 0; k-- {
			idx[k] = rem % shape[k]
			rem /= shape[k]
			off += idx[k] * st[k]
		}
		for row := lo; row < hi; row++ {
			d := dst[row*inner : (row+1)*inner]
			if sIn == 0 {
				v := src[off]
				for i := range d {
					d[i] = v
				}
			} else {
				copy(d, src[off:off+inner])
			}
			for k := r - 2; k >= 0; k-- {
				idx[k]++
				off += st[k]
				if idx[k] < shape[k] {
					break
				}
				off -= shape[k] * st[k]
				idx[k] = 0
			}
		}
	})
}
