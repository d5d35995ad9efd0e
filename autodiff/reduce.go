package autodiff

import (
	"fmt"
	"math"

	"github.com/mlxtrain/mlxtrain/metal"
)

// Reductions (Sum, Mean, Max, Min, Var) over any set of axes.
//
// Every reduction views its input as (a, n, b): a outer rows, n reduced elements,
// b inner columns, with the output (a, b). Reducing trailing axes is the rows case
// (b = 1), reducing leading axes the columns case (a = 1), and one contiguous run
// of axes in the middle is the general strided case. Axis sets that split into
// several runs (say axes 0 and 2 of a rank-4 tensor) are gathered into a (k, n)
// copy first, through offset tables, and then reduced as rows.
//
// Float32 inputs accumulate in float64, so sums do not lose accuracy on long rows;
// the result differs from an exact float64 sum only by the final rounding to
// float32 (and by the order of the float64 additions).

// redGrainElems is the number of input elements a worker should get at least:
// starting a goroutine costs about a microsecond.
const redGrainElems = 1 << 15

// redTile is the width of the column blocks the strided kernels accumulate in
// float64 on the stack.
const redTile = 256

// redRowsGrain is the number of rows of n elements that make a worker's share.
func redRowsGrain(n int) int { return max(1, redGrainElems/max(n, 1)) }

// redPlan is the layout of one reduction.
type redPlan struct {
	in   []int  // the input shape
	mask []bool // reduced axes
	keep []int  // output shape with reduced axes kept as size 1
	out  []int  // the output shape returned (keep, or keep without the reduced axes)
	k, n int    // output elements, reduced elements per output
	// The strided layout: x is (a, n, b), the output (a, b); used when koff is nil.
	a, b int
	// The gathered layout: element (i, r) of the (k, n) view is x[koff[i]+roff[r]].
	koff, roff []int
}

// redAxesMask marks the reduced axes. nil means every axis; negative axes count
// from the end; repeated or out-of-range axes panic.
func redAxesMask(op string, axes []int, rank int) []bool {
	mask := make([]bool, rank)
	if axes == nil {
		for i := range mask {
			mask[i] = true
		}
		return mask
	}
	for _, ax := range axes {
		a := normAxis(op, ax, rank)
		if mask[a] {
			panic(fmt.Sprintf("autodiff: %s: axes %v name axis %d twice", op, axes, a))
		}
		mask[a] = true
	}
	return mask
}

func newRedPlan(op string, shape, axes []int, keepDims bool) *redPlan {
	rank := len(shape)
	mask := redAxesMask(op, axes, rank)
	p := &redPlan{in: shape, mask: mask, keep: make([]int, rank), k: 1, n: 1}
	for i, d := range shape {
		if mask[i] {
			p.keep[i] = 1
			p.n *= d
		} else {
			p.keep[i] = d
			p.k *= d
			if !keepDims {
				p.out = append(p.out, d)
			}
		}
	}
	if keepDims {
		p.out = p.keep
	}
	if p.k*p.n == 0 {
		// No input element is read: the output is k rows of n = 0 elements, or empty.
		p.a, p.b = p.k, 1
		return p
	}
	// Coalesce consecutive axes of the same kind; size-1 axes do not matter.
	type run struct {
		size int
		red  bool
	}
	var runs []run
	for i, d := range shape {
		if d == 1 {
			continue
		}
		if len(runs) > 0 && runs[len(runs)-1].red == mask[i] {
			runs[len(runs)-1].size *= d
			continue
		}
		runs = append(runs, run{d, mask[i]})
	}
	switch {
	case len(runs) == 0: // every axis has size 1
		p.a, p.b = 1, 1
	case len(runs) == 1 && runs[0].red:
		p.a, p.b = 1, 1
	case len(runs) == 1:
		p.a, p.b = p.k, 1
	case len(runs) == 2 && !runs[0].red:
		p.a, p.b = runs[0].size, 1
	case len(runs) == 2:
		p.a, p.b = 1, runs[1].size
	case len(runs) == 3 && !runs[0].red:
		p.a, p.b = runs[0].size, runs[2].size
	default:
		strides := make([]int, rank)
		s := 1
		for i := rank - 1; i >= 0; i-- {
			strides[i] = s
			s *= shape[i]
		}
		p.koff = redOffsets(shape, strides, mask, false)
		p.roff = redOffsets(shape, strides, mask, true)
	}
	return p
}

// redOffsets lists, in row-major order over the axes whose mask equals want, the
// flat offset of each of their index combinations.
func redOffsets(shape, strides []int, mask []bool, want bool) []int {
	offs := []int{0}
	for i, d := range shape {
		if mask[i] != want {
			continue
		}
		next := make([]int, 0, len(offs)*d)
		for _, o := range offs {
			for j := range d {
				next = append(next, o+j*strides[i])
			}
		}
		offs = next
	}
	return offs
}

// redGather copies x into the (k, n) row layout of a gathered plan.
func redGather[T Float](x []T, p *redPlan) []T {
	buf := make([]T, p.k*p.n)
	n := p.n
	metal.ParallelFor(p.k, redRowsGrain(n), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			row, base := buf[i*n:(i+1)*n], p.koff[i]
			for r, off := range p.roff {
				row[r] = x[base+off]
			}
		}
	})
	return buf
}

// redSumRow returns the float64 sum of a row with four independent accumulators.
func redSumRow[T Float](x []T) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += float64(x[i])
		s1 += float64(x[i+1])
		s2 += float64(x[i+2])
		s3 += float64(x[i+3])
	}
	for ; i < len(x); i++ {
		s0 += float64(x[i])
	}
	return (s0 + s1) + (s2 + s3)
}

// redForTiles splits the (a, b) outputs of a strided reduction into blocks of at
// most redTile columns and calls fn(ai, b0, b1) for each, in parallel.
func redForTiles(a, n, b int, fn func(ai, b0, b1 int)) {
	nt := (b + redTile - 1) / redTile
	metal.ParallelFor(a*nt, redRowsGrain(n*min(b, redTile)), func(lo, hi int) {
		for t := lo; t < hi; t++ {
			ai, b0 := t/nt, (t%nt)*redTile
			fn(ai, b0, min(b0+redTile, b))
		}
	})
}

// SumAxis sums x, viewed as (a, n, b), over its middle axis into out (a, b).
// Float32 accumulates in float64.
func SumAxis[T Float](out, x []T, a, n, b int) { redSumDiv(out, x, a, n, b, 1) }

// redSumDiv is SumAxis with the float64 sums divided by div before rounding.
func redSumDiv[T Float](out, x []T, a, n, b int, div float64) {
	if b == 1 {
		metal.ParallelFor(a, redRowsGrain(n), func(lo, hi int) {
			for i := lo; i < hi; i++ {
				out[i] = T(redSumRow(x[i*n:(i+1)*n]) / div)
			}
		})
		return
	}
	redForTiles(a, n, b, func(ai, b0, b1 int) {
		var buf [redTile]float64
		acc := buf[:b1-b0]
		base := ai * n * b
		for r := range n {
			row := x[base+r*b+b0 : base+r*b+b1]
			row = row[:len(acc)] // one bounds check per row, not per element
			for j := range acc {
				acc[j] += float64(row[j])
			}
		}
		o := out[ai*b+b0 : ai*b+b1]
		for j, v := range acc {
			o[j] = T(v / div)
		}
	})
}

// redBetter reports whether v replaces best as the running maximum (isMax) or
// minimum: strictly larger (smaller), or the first NaN, which then sticks.
func redBetter[T Float](v, best T, isMax bool) bool {
	if v != v {
		return best == best
	}
	if isMax {
		return v > best
	}
	return v < best
}

// MaxAxis writes the maximum of x, viewed as (a, n, b), over its middle axis into
// out (a, b) and, when arg is not nil, the index along n where it was found: the
// first one on ties. A NaN wins over every number (the first NaN is reported).
// n must be positive.
func MaxAxis[T Float](out []T, arg []int32, x []T, a, n, b int) {
	redExtremum(out, arg, x, a, n, b, true)
}

// MinAxis is MaxAxis for the minimum.
func MinAxis[T Float](out []T, arg []int32, x []T, a, n, b int) {
	redExtremum(out, arg, x, a, n, b, false)
}

// redExtremum is MaxAxis (isMax) or MinAxis; out or arg may be nil.
func redExtremum[T Float](out []T, arg []int32, x []T, a, n, b int, isMax bool) {
	if n <= 0 {
		panic("autodiff: max/min over an empty axis")
	}
	if b == 1 {
		metal.ParallelFor(a, redRowsGrain(n), func(lo, hi int) {
			for i := lo; i < hi; i++ {
				row := x[i*n : (i+1)*n]
				best, at := row[0], 0
				for r := 1; r < len(row); r++ {
					if redBetter(row[r], best, isMax) {
						best, at = row[r], r
					}
				}
				if out != nil {
					out[i] = best
				}
				if arg != nil {
					arg[i] = int32(at)
				}
			}
		})
		return
	}
	redForTiles(a, n, b, func(ai, b0, b1 int) {
		var at [redTile]int32
		var best [redTile]T
		w := b1 - b0
		base := ai * n * b
		copy(best[:w], x[base+b0:base+b1])
		for r := 1; r < n; r++ {
			row := x[base+r*b+b0 : base+r*b+b1]
			for j, v := range row {
				if redBetter(v, best[j], isMax) {
					best[j], at[j] = v, int32(r)
				}
			}
		}
		if out != nil {
			copy(out[ai*b+b0:ai*b+b1], best[:w])
		}
		if arg != nil {
			copy(arg[ai*b+b0:ai*b+b1], at[:w])
		}
	})
}

// VarAxis writes the variance of x, viewed as (a, n, b), over its middle axis into
// out (a, b), dividing the sum of squared deviations by n − ddof (NaN when that is
// not positive). It computes the mean first, then the deviations (two passes), and
// stores the means in mean (length a·b) when it is not nil.
func VarAxis[T Float](out []T, mean []float64, x []T, a, n, b, ddof int) {
	div := math.NaN()
	if n-ddof > 0 {
		div = float64(n - ddof)
	}
	if b == 1 {
		metal.ParallelFor(a, redRowsGrain(2*n), func(lo, hi int) {
			for i := lo; i < hi; i++ {
				row := x[i*n : (i+1)*n]
				m := redSumRow(row) / float64(n)
				var s0, s1 float64
				j := 0
				for ; j+2 <= len(row); j += 2 {
					d0, d1 := float64(row[j])-m, float64(row[j+1])-m
					s0 += d0 * d0
					s1 += d1 * d1
				}
				if j < len(row) {
					d := float64(row[j]) - m
					s0 += d * d
				}
				out[i] = T((s0 + s1) / div)
				if mean != nil {
					mean[i] = m
				}
			}
		})
		return
	}
	redForTiles(a, 2*n, b, func(ai, b0, b1 int) {
		var m, ss [redTile]float64
		w := b1 - b0
		base := ai * n * b
		for r := range n {
			for j, v := range x[base+r*b+b0 : base+r*b+b1] {
				m[j] += float64(v)
			}
		}
		for j := range w {
			m[j] /= float64(n)
		}
		for r := range n {
			for j, v := range x[base+r*b+b0 : base+r*b+b1] {
				d := float64(v) - m[j]
				ss[j] += d * d
			}
		}
		for j := range w {
			out[ai*b+b0+j] = T(ss[j] / div)
			if mean != nil {
				mean[ai*b+b0+j] = m[j]
			}
		}
	})
}

type redKind uint8

const (
	redSum redKind = iota
	redMean
	redMax
	redMin
	redVar
)

var redNames = [...]string{"sum", "mean", "max", "min", "var"}

// redSaved is what a reduction's backward needs besides x and g.
type redSaved struct {
	arg  []int32   // Max/Min: the winner's index along n (or within the gathered row)
	mean []float64 // Var: the means
}

func redForward[T Float](kind redKind, p *redPlan, x, out []T, ddof int) redSaved {
	src, a, n, b := x, p.a, p.n, p.b
	if p.koff != nil {
		src, a, b = redGather(x, p), p.k, 1
	}
	var s redSaved
	switch kind {
	case redSum:
		redSumDiv(out, src, a, n, b, 1)
	case redMean:
		redSumDiv(out, src, a, n, b, float64(n)) // 0/0 = NaN over an empty axis
	case redMax, redMin:
		s.arg = make([]int32, len(out))
		redExtremum(out, s.arg, src, a, n, b, kind == redMax)
	case redVar:
		s.mean = make([]float64, len(out))
		VarAxis(out, s.mean, src, a, n, b, ddof)
	}
	return s
}

// redBackward writes dx, the gradient of the reduction for the output gradient g.
func redBackward[T Float](kind redKind, p *redPlan, dx, g, x []T, s redSaved, ddof int) {
	n := p.n
	var scale float64
	switch kind {
	case redSum:
		scale = 1
	case redMean:
		scale = 1 / float64(n)
	case redVar:
		scale = math.NaN()
		if n-ddof > 0 {
			scale = 2 / float64(n-ddof)
		}
	case redMax, redMin:
		clear(dx)
	}
	if p.koff != nil {
		metal.ParallelFor(p.k, redRowsGrain(n), func(lo, hi int) {
			for i := lo; i < hi; i++ {
				base := p.koff[i]
				switch kind {
				case redMax, redMin:
					dx[base+p.roff[s.arg[i]]] = g[i]
				case redVar:
					gi, m := float64(g[i])*scale, s.mean[i]
					for _, off := range p.roff {
						dx[base+off] = T(gi * (float64(x[base+off]) - m))
					}
				default:
					gi := T(float64(g[i]) * scale)
					for _, off := range p.roff {
						dx[base+off] = gi
					}
				}
			}
		})
		return
	}
	a, b := p.a, p.b
	if kind == redMax || kind == redMin {
		for o, r := range s.arg {
			dx[(o/b)*n*b+int(r)*b+o%b] = g[o]
		}
		return
	}
	if b == 1 {
		metal.ParallelFor(a, redRowsGrain(n), func(lo, hi int) {
			for i := lo; i < hi; i++ {
				row, xr := dx[i*n:(i+1)*n], x[i*n:(i+1)*n]
				if kind == redVar {
					gi, m := float64(g[i])*scale, s.mean[i]
					for r, v := range xr {
						row[r] = T(gi * (float64(v) - m))
					}
					continue
				}
				gi := T(float64(g[i]) * scale)
				for r := range row {
					row[r] = gi
				}
			}
		})
		return
	}
	// b > 1: fill dx row by row, each row of b elements from the matching row of g.
	metal.ParallelFor(a*n, redRowsGrain(b), func(lo, hi int) {
		for t := lo; t < hi; t++ {
			ai := t / n
			row, xr, gr := dx[t*b:(t+1)*b], x[t*b:(t+1)*b], g[ai*b:(ai+1)*b]
			if kind == redVar {
				mr := s.mean[ai*b : (ai+1)*b]
				for j, v := range xr {
					row[j] = T(float64(gr[j]) * scale * (float64(v) - mr[j]))
				}
				continue
			}
			if scale == 1 {
				copy(row, gr)
				continue
			}
			for j, v := range gr {
				row[j] = T(float64(v) * scale)
			}
		}
	})
}

// reduce runs the reduction kind of x over axes and records its VJP.
func reduce(kind redKind, x *Tensor, axes []int, keepDims bool, ddof int) *Tensor {
	name := redNames[kind]
	checkFloat(name, x)
	p := newRedPlan(name, x.shape, axes, keepDims)
	if (kind == redMax || kind == redMin) && p.n == 0 && p.k > 0 {
		panic(fmt.Sprintf("autodiff: %s: reduction over an empty axis of shape %s", name, shapeString(x.shape)))
	}
	tm := startOp()
	out := Empty(x.dtype, p.out...)
	var s redSaved
	var aux *Tensor // what the backward needs from a device forward (redAux)
	path := metal.PathMetal
	switch {
	case (kind == redSum || kind == redMean) && tryDevice(name, DeviceFor(reduceOp, []*Tensor{out, x}, x.Len()), func(d metal.Compute) error { return reduceDevice(kind, p, out, x, d) }):
	case x.dtype == Float32 && func() bool {
		aux = redAux(kind, p)
		if tryDevice(name, DeviceFor(reduceStridedOp, []*Tensor{out, x, aux}, x.Len()), func(d metal.Compute) error {
			return reduceStridedDevice(kind, p, out, x, aux, ddof, d)
		}) {
			return true
		}
		if aux != nil {
			aux.Release()
			aux = nil
		}
		return false
	}():
	case x.dtype == Float32:
		path = metal.PathGo
		s = redForward(kind, p, x.Float32s(), out.Float32s(), ddof)
	default:
		path = metal.PathGo
		s = redForward(kind, p, x.Float64s(), out.Float64s(), ddof)
	}
	tm.done(name, path, (x.Len()+out.Len())*x.dtype.Size())
	record(out, name, func(g *Tensor) {
		accumulate(x, func() *Tensor {
			dx := Empty(x.dtype, x.shape...)
			if tryDevice(name, DeviceFor(reduceStridedOp, []*Tensor{dx, g, x, aux}, x.Len()), func(d metal.Compute) error {
				return reduceBackwardDevice(kind, p, dx, g, x, aux, ddof, d)
			}) {
				return dx
			}
			if aux != nil {
				s = redSavedFrom(kind, aux)
			}
			if x.dtype == Float32 {
				redBackward(kind, p, dx.Float32s(), g.Float32s(), x.Float32s(), s, ddof)
			} else {
				redBackward(kind, p, dx.Float64s(), g.Float64s(), x.Float64s(), s, ddof)
			}
			return dx
		})
	}, x)
	if aux != nil {
		Own(out, aux)
	}
	return out
}

// Sum adds the elements of x over axes (nil: all axes; negative axes count from
// the end). With keepDims the reduced axes stay as size 1, otherwise they are
// removed. A sum over an empty axis is 0. Repeated or out-of-range axes panic.
func Sum(x *Tensor, axes []int, keepDims bool) *Tensor { return reduce(redSum, x, axes, keepDims, 0) }

// Mean averages x over axes, as [Sum] does; the mean over an empty axis is NaN.
func Mean(x *Tensor, axes []int, keepDims bool) *Tensor {
	return reduce(redMean, x, axes, keepDims, 0)
}

// Max takes the maximum of x over axes, as [Sum] does; a NaN wins over every
// number. Its gradient goes entirely to the first maximal element (in row-major
// order over the reduced axes), as in PyTorch's max along a dimension. The maximum
// over an empty axis panics.
func Max(x *Tensor, axes []int, keepDims bool) *Tensor { return reduce(redMax, x, axes, keepDims, 0) }

// Min is [Max] for the minimum.
func Min(x *Tensor, axes []int, keepDims bool) *Tensor { return reduce(redMin, x, axes, keepDims, 0) }

// Var is the variance of x over axes, as [Sum] does: the sum of squared deviations
// from the mean divided by n − ddof, where n is the number of elements reduced
// (ddof = 0: population variance; 1: the unbiased estimate). It is NaN when
// n − ddof ≤ 0.
func Var(x *Tensor, axes []int, keepDims bool, ddof int) *Tensor {
	if ddof < 0 {
		panic(fmt.Sprintf("autodiff: var: negative ddof %d", ddof))
	}
	return reduce(redVar, x, axes, keepDims, ddof)
}

// SumAll is the sum of every element of x, as a 0-dimensional tensor.
func SumAll(x *Tensor) *Tensor { return Sum(x, nil, false) }

// MeanAll is the mean of every element of x, as a 0-dimensional tensor.
func MeanAll(x *Tensor) *Tensor { return Mean(x, nil, false) }
