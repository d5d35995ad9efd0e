package advanced

import (
	"fmt"
	"slices"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// LinearRecurrence is the differentiable form of [LinearScan]: along axis of a
// and b (one shape) it returns h with h_t = a_t·h_{t−1} + b_t, starting from
// h_{−1} = h0 (a's shape without axis) or zeros when h0 is nil. Its gradients,
// for g = ∂L/∂h, run the recurrence backwards: u_t = g_t + a_{t+1}·u_{t+1} is
// ∂L/∂b_t, ∂L/∂a_t = u_t·h_{t−1} and ∂L/∂h0 = a_0·u_0. Float32 tensors run on
// the device (the affine scan of shaders/scan.metal) above op linear_scan's
// thresholds.
func LinearRecurrence(a, b, h0 *autodiff.Tensor, axis int) *autodiff.Tensor {
	outer, n, inner := linearCheck(a, b, h0, axis)
	tm := startTimer()
	h := autodiff.Empty(a.DType(), a.Shape()...)
	switch {
	case a.DType() == autodiff.Float32 && linearDevice(h, a, b, h0, outer, n, inner):
		// recorded on the device (and in the profile)
	case a.DType() == autodiff.Float32:
		linearForward(h.Float32s(), a.Float32s(), b.Float32s(), optional(h0, f32s), outer, n, inner)
		tm.done("linear_scan", 3*a.Len()*4)
	default:
		linearForward(h.Float64s(), a.Float64s(), b.Float64s(), optional(h0, f64s), outer, n, inner)
		tm.done("linear_scan", 3*a.Len()*8)
	}
	inputs := []*autodiff.Tensor{a, b}
	if h0 != nil {
		inputs = append(inputs, h0)
	}
	return autodiff.Record(h, "linear_scan", func(g *autodiff.Tensor) {
		da, db := autodiff.Empty(a.DType(), a.Shape()...), autodiff.Empty(a.DType(), a.Shape()...)
		var dh0 *autodiff.Tensor
		if h0 != nil {
			dh0 = autodiff.Empty(h0.DType(), h0.Shape()...)
		}
		switch {
		case a.DType() == autodiff.Float32 && linearBackwardDevice(da, db, dh0, g, a, h, h0, outer, n, inner):
		case a.DType() == autodiff.Float32:
			linearBackward(da.Float32s(), db.Float32s(), optional(dh0, f32s), g.Float32s(), a.Float32s(), h.Float32s(), optional(h0, f32s), outer, n, inner)
		default:
			linearBackward(da.Float64s(), db.Float64s(), optional(dh0, f64s), g.Float64s(), a.Float64s(), h.Float64s(), optional(h0, f64s), outer, n, inner)
		}
		for _, p := range []struct{ in, grad *autodiff.Tensor }{{a, da}, {b, db}, {h0, dh0}} {
			switch {
			case p.in == nil:
			case autodiff.NeedsGrad(p.in):
				hand(p.in, p.grad)
			default:
				p.grad.Release() // back to the pool once the launches using it are done
			}
		}
	}, inputs...)
}

// linearCheck validates the operands and returns the layout (outer, n, inner)
// around axis.
func linearCheck(a, b, h0 *autodiff.Tensor, axis int) (outer, n, inner int) {
	shape := func(t *autodiff.Tensor) string {
		if t == nil {
			return "none"
		}
		return fmt.Sprint(t.DType(), t.Shape())
	}
	fail := func(why string) {
		panic(fmt.Sprintf("advanced: linear_scan: %s: a %s, b %s, h0 %s, axis %d", why, shape(a), shape(b), shape(h0), axis))
	}
	if !a.DType().IsFloat() || b.DType() != a.DType() || !slices.Equal(a.Shape(), b.Shape()) {
		fail("a and b must be one float shape")
	}
	if axis < 0 {
		axis += a.Rank()
	}
	if axis < 0 || axis >= a.Rank() {
		fail("axis out of range")
	}
	outer, n, inner = 1, a.Dim(axis), 1
	for i, d := range a.Shape() {
		switch {
		case i < axis:
			outer *= d
		case i > axis:
			inner *= d
		}
	}
	if h0 != nil {
		want := append(append([]int(nil), a.Shape()[:axis]...), a.Shape()[axis+1:]...)
		if h0.DType() != a.DType() || !slices.Equal(h0.Shape(), want) {
			fail(fmt.Sprintf("h0 must be %v", want))
		}
	}
	return outer, n, inner
}

// linearForward runs LinearScan on each of the outer slabs (n, inner).
func linearForward[T autodiff.Float](h, a, b, h0 []T, outer, n, inner int) {
	slab := n * inner
	for i := range outer {
		var start []T
		if h0 != nil {
			start = h0[i*inner : (i+1)*inner]
		}
		LinearScan(h[i*slab:(i+1)*slab], a[i*slab:(i+1)*slab], b[i*slab:(i+1)*slab], start, n, inner)
	}
}

// linearBackward writes the gradients of linearForward for g: db = u (the
// recurrence run backwards), da, and dh0 when not nil. Blocks of channels of
// each outer slab go to the workers.
func linearBackward[T autodiff.Float](da, db, dh0, g, a, h, h0 []T, outer, n, inner int) {
	clear(dh0)
	cols := max(linearMinCols, ceilDiv(inner, max(1, metal.Threads())))
	blocks := ceilDiv(inner, cols)
	metal.ParallelFor(outer*blocks, max(1, linearGrain/max(1, n*cols)), func(lo, hi int) {
		for u := lo; u < hi; u++ {
			i, j0 := u/blocks, u%blocks*cols
			linearBackwardBlock(da, db, dh0, g, a, h, h0, i, n, inner, j0, min(j0+cols, inner))
		}
	})
}

// linearBackwardBlock is linearBackward for channels [j0, j1) of slab i.
func linearBackwardBlock[T autodiff.Float](da, db, dh0, g, a, h, h0 []T, i, n, inner, j0, j1 int) {
	for t := n - 1; t >= 0; t-- {
		row := (i*n + t) * inner
		us, gs, das := db[row+j0:row+j1], g[row+j0:row+j1], da[row+j0:row+j1]
		copy(us, gs)
		if t < n-1 {
			next, an := db[row+inner+j0:row+inner+j1], a[row+inner+j0:row+inner+j1]
			for j := range us {
				us[j] += an[j] * next[j]
			}
		}
		var prev []T
		switch {
		case t > 0:
			prev = h[row-inner+j0 : row-inner+j1]
		case h0 != nil:
			prev = h0[i*inner+j0 : i*inner+j1]
		default:
			clear(das)
			continue
		}
		for j := range das {
			das[j] = us[j] * prev[j]
		}
	}
	if dh0 != nil && n > 0 {
		row := i * n * inner
		for j := j0; j < j1; j++ {
			dh0[i*inner+j] = a[row+j] * db[row+j]
		}
	}
}
