package optim

import (
	"fmt"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// Accumulator sums gradients over micro-batches into its own buffers, so a large
// batch can be trained as several small ones: Add each micro-batch's gradients,
// then step with Mean, then Reset. When the loss of each micro-batch is the mean
// over its own examples and the micro-batches are the same size, Mean equals the
// gradient of the whole batch.
type Accumulator struct {
	params []Param
	sums   []*autodiff.Tensor // allocated at a parameter's first gradient
	seen   []bool             // got a gradient since Reset
	count  int
	mean   bool // sums hold the mean now
}

// NewAccumulator returns an empty accumulator for the parameters' gradients (it
// reads only their names, shapes and dtypes).
func NewAccumulator(params []Param) *Accumulator {
	return &Accumulator{
		params: append([]Param(nil), params...),
		sums:   make([]*autodiff.Tensor, len(params)),
		seen:   make([]bool, len(params)),
	}
}

// Add adds one micro-batch's gradients, lined up with the parameters; nil
// gradients count as zeros. The gradients are only read.
func (a *Accumulator) Add(grads []*autodiff.Tensor) {
	if a.mean {
		panic("optim: Accumulator.Add after Mean: call Reset first")
	}
	if len(grads) != len(a.params) {
		panic(fmt.Sprintf("optim: Accumulator.Add: %d gradients for %d parameters", len(grads), len(a.params)))
	}
	for i, g := range grads {
		if g == nil {
			continue
		}
		p := a.params[i].Value
		if g.DType() != p.DType() || !sameShape(g.Shape(), p.Shape()) {
			panic(fmt.Sprintf("optim: Accumulator.Add: gradient %s %v for parameter %q %s %v", g.DType(), g.Shape(), a.params[i].Name, p.DType(), p.Shape()))
		}
	}
	for i, g := range grads {
		if g == nil {
			continue
		}
		switch {
		case a.sums[i] == nil:
			a.sums[i] = g.Clone()
		case !a.seen[i]:
			a.sums[i].CopyFrom(g)
		case g.DType() == autodiff.Float32:
			addInto(a.sums[i].Float32s(), g.Float32s())
		default:
			addInto(a.sums[i].Float64s(), g.Float64s())
		}
		a.seen[i] = true
	}
	a.count++
}

func addInto[T autodiff.Float](dst, src []T) {
	metal.ParallelFor(len(dst), grain, func(lo, hi int) {
		d, s := dst[lo:hi], src[lo:hi]
		for i := range d {
			d[i] += s[i]
		}
	})
}

// Count is the number of micro-batches added since Reset.
func (a *Accumulator) Count() int { return a.count }

// Mean returns the average gradient over the micro-batches added, lined up with
// the parameters: nil for a parameter that got no gradient. It divides the sums
// in place, once: the tensors are the accumulator's own, valid until Reset, and
// Add may not be called again before Reset.
func (a *Accumulator) Mean() []*autodiff.Tensor {
	out := make([]*autodiff.Tensor, len(a.params))
	for i, s := range a.sums {
		if !a.seen[i] {
			continue
		}
		if !a.mean && a.count > 1 {
			if s.DType() == autodiff.Float32 {
				divideBy(s.Float32s(), float32(a.count))
			} else {
				divideBy(s.Float64s(), float64(a.count))
			}
		}
		out[i] = s
	}
	a.mean = true
	return out
}

func divideBy[T autodiff.Float](x []T, n T) {
	metal.ParallelFor(len(x), grain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			x[i] /= n
		}
	})
}

// Reset empties the accumulator for the next batch (it keeps its buffers).
func (a *Accumulator) Reset() {
	clear(a.seen)
	a.count = 0
	a.mean = false
}

// Release gives the buffers back to the pool; the accumulator is empty after and
// may be used again.
func (a *Accumulator) Release() {
	for i, s := range a.sums {
		if s != nil {
			s.Release()
			a.sums[i] = nil
		}
	}
	a.Reset()
}
