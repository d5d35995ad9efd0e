package autodiff

import (
	"fmt"

	"github.com/mlxtrain/mlxtrain/metal"
)

// BroadcastShapes returns the NumPy broadcast of two shapes, or an error.
func BroadcastShapes(a, b []int) ([]int, error) {
	n := max(len(a), len(b))
	out := make([]int, n)
	for i := range n {
		da, db := 1, 1
		if j := len(a) - n + i; j >= 0 {
			da = a[j]
		}
		if j := len(b) - n + i; j >= 0 {
			db = b[j]
		}
		switch {
		case da == db, db == 1:
			out[i] = da
		case da == 1:
			out[i] = db
		default:
			return nil, fmt.Errorf("shapes %s and %s do not broadcast", shapeString(a), shapeString(b))
		}
	}
	return out, nil
}

// broadcastStrides returns, for an input of shape in broadcast to out, the element
// stride of each output axis in the input (0 where the input repeats).
func broadcastStrides(in, out []int) []int {
	st := make([]int, len(out))
	s := 1
	for i := len(out) - 1; i >= 0; i-- {
		j := len(in) - len(out) + i
		if j >= 0 && in[j] != 1 {
			st[i] = s
		}
		if j >= 0 {
			s *= in[j]
		}
	}
	return st
}

// forEachBroadcast calls fn(o, ia, ib) for every output index o with the matching
// flat indexes into a and b, in row-major order over out[lo:hi) of the flat range.
func forEachBroadcast(out []int, sa, sb []int, lo, hi int, fn func(o, ia, ib int)) {
	if lo >= hi {
		return
	}
	rank := len(out)
	if rank == 0 {
		if lo < hi {
			fn(0, 0, 0)
		}
		return
	}
	idx := make([]int, rank)
	rem := lo
	ia, ib := 0, 0
	for d := rank - 1; d >= 0; d-- {
		idx[d] = rem % out[d]
		rem /= out[d]
		ia += idx[d] * sa[d]
		ib += idx[d] * sb[d]
	}
	last := rank - 1
	for o := lo; o < hi; {
		// run along the last axis, then step the odometer of the axes before it
		run := min(out[last]-idx[last], hi-o)
		for range run {
			fn(o, ia, ib)
			o++
			ia += sa[last]
			ib += sb[last]
		}
		idx[last] += run
		if idx[last] < out[last] {
			continue
		}
		ia -= out[last] * sa[last]
		ib -= out[last] * sb[last]
		idx[last] = 0
		for d := last - 1; d >= 0; d-- {
			idx[d]++
			ia += sa[d]
			ib += sb[d]
			if idx[d] < out[d] {
				break
			}
			ia -= out[d] * sa[d]
			ib -= out[d] * sb[d]
			idx[d] = 0
		}
	}
}

// SumTo reduces t, a broadcast of shape, back to shape by summing over the axes
// broadcasting added or stretched. It is the VJP of broadcasting; it returns t
// itself (not a copy) when the shapes already match.
func SumTo(t *Tensor, shape []int) *Tensor {
	if sameShape(t.shape, shape) {
		return t
	}
	if _, err := BroadcastShapes(shape, t.shape); err != nil || len(shape) > len(t.shape) {
		panic(fmt.Sprintf("autodiff: SumTo: %s cannot reduce to %s", shapeString(t.shape), shapeString(shape)))
	}
	if numel(shape) == 0 {
		return Zeros(t.dtype, shape...) // nothing to sum, on any path
	}
	tm := startOp()
	bytes := (t.Len() + numel(shape)) * t.dtype.Size()
	if t.dtype == Float32 {
		out := Empty(t.dtype, shape...)
		if trailingOf(shape, t.shape) {
			if tryDevice("sum_to", DeviceFor(reduceOp, []*Tensor{out, t}, t.Len()), func(d metal.Compute) error { return sumToDevice(out, t, d) }) {
				tm.done("sum_to", metal.PathMetal, bytes)
				return out
			}
		} else if mask := sumToMask(t.shape, shape); metal.ReduceLayoutFits(t.shape, mask) &&
			tryDevice("sum_to", DeviceFor(reduceStridedOp, []*Tensor{out, t}, t.Len()), func(d metal.Compute) error {
				return metal.RunReduceStrided(d, metal.ReduceSum, out.buf, nil, t.buf, t.shape, mask)
			}) {
			tm.done("sum_to", metal.PathMetal, bytes)
			return out
		}
		out.Release()
	}
	defer tm.done("sum_to", metal.PathGo, bytes)
	out := Zeros(t.dtype, shape...)
	st := broadcastStrides(shape, t.shape)
	switch t.dtype {
	case Float32:
		sumToKernel(t.Float32s(), out.Float32s(), t.shape, st)
	case Float64:
		sumToKernel(t.Float64s(), out.Float64s(), t.shape, st)
	default:
		panic("autodiff: SumTo of " + t.dtype.String())
	}
	return out
}

func sumToKernel[T Float](src, dst []T, shape, st []int) {
	forEachBroadcast(shape, st, st, 0, len(src), func(o, i, _ int) { dst[i] += src[o] })
}
