package autodiff

import (
	"fmt"
	"slices"

	"github.com/mlxtrain/mlxtrain/metal"
)

// Selection ops: Argmax/Argmin, TopK and Cumsum.

// ArgmaxAxis writes into out (a, b) the index along n of the maximum of x, viewed
// as (a, n, b): the first one on ties, the first NaN if there is one. n must be
// positive.
func ArgmaxAxis[T Float](out []int32, x []T, a, n, b int) { redExtremum(nil, out, x, a, n, b, true) }

// ArgminAxis is ArgmaxAxis for the minimum.
func ArgminAxis[T Float](out []int32, x []T, a, n, b int) { redExtremum(nil, out, x, a, n, b, false) }

func argExtremum(name string, x *Tensor, axis int, keepDims, isMax bool) *Tensor {
	checkFloat(name, x)
	a, n, b := smLayout(name, x.shape, axis)
	ax := normAxis(name, axis, len(x.shape))
	if n == 0 && a*b > 0 {
		panic(fmt.Sprintf("autodiff: %s: empty axis %d of shape %s", name, axis, shapeString(x.shape)))
	}
	shape := append([]int(nil), x.shape...)
	if keepDims {
		shape[ax] = 1
	} else {
		shape = append(shape[:ax], shape[ax+1:]...)
	}
	tm := startOp()
	out := Empty(Int32, shape...)
	if a*b > 0 {
		if x.dtype == Float32 {
			redExtremum(nil, out.Int32s(), x.Float32s(), a, n, b, isMax)
		} else {
			redExtremum(nil, out.Int32s(), x.Float64s(), a, n, b, isMax)
		}
	}
	tm.done(name, metal.PathGo, x.Len()*x.dtype.Size())
	return out
}

// Argmax returns the int32 index of the maximum of x along axis (negative counts
// from the end): the lowest index on ties; a NaN counts as the maximum. With
// keepDims the axis stays as size 1. It has no gradient. An empty axis panics.
func Argmax(x *Tensor, axis int, keepDims bool) *Tensor {
	return argExtremum("argmax", x, axis, keepDims, true)
}

// Argmin is [Argmax] for the minimum.
func Argmin(x *Tensor, axis int, keepDims bool) *Tensor {
	return argExtremum("argmin", x, axis, keepDims, false)
}

// tkBefore reports whether row[i] ranks before row[j] in TopK's order: NaN first,
// then larger values, then the lower index.
func tkBefore[T Float](row []T, i, j int32) bool {
	a, b := row[i], row[j]
	if a != a || b != b {
		if a != a && b != b {
			return i < j
		}
		return a != a
	}
	if a != b {
		return a > b
	}
	return i < j
}

// TopKRows writes, for each of the rows of x (rows, n), its k largest values in
// descending order into vals (rows, k) and their indices into idx (rows, k). Equal
// values keep the lower index first; NaN ranks above every number.
func TopKRows[T Float](vals []T, idx []int32, x []T, rows, n, k int) {
	if k == 0 {
		return
	}
	metal.ParallelFor(rows, redRowsGrain(n), func(lo, hi int) {
		heap := make([]int32, k)
		for i := lo; i < hi; i++ {
			row := x[i*n : (i+1)*n]
			tkSelect(heap, row)
			copy(idx[i*k:(i+1)*k], heap)
			for j, at := range heap {
				vals[i*k+j] = row[at]
			}
		}
	})
}

// tkSelect fills h (length k ≤ len(row)) with the indices of row's top k in order,
// through a heap whose root is the kept candidate that ranks last.
func tkSelect[T Float](h []int32, row []T) {
	k := len(h)
	worse := func(i, j int32) bool { return tkBefore(row, j, i) } // i ranks after j
	down := func(p int) {
		for {
			c := 2*p + 1
			if c >= k {
				return
			}
			if c+1 < k && worse(h[c+1], h[c]) {
				c++
			}
			if !worse(h[c], h[p]) {
				return
			}
			h[p], h[c] = h[c], h[p]
			p = c
		}
	}
	for j := range k {
		h[j] = int32(j)
	}
	for p := k/2 - 1; p >= 0; p-- {
		down(p)
	}
	for j := int32(k); j < int32(len(row)); j++ {
		if tkBefore(row, j, h[0]) {
			h[0] = j
			down(0)
		}
	}
	slices.SortFunc(h, func(i, j int32) int {
		if tkBefore(row, i, j) {
			return -1
		}
		return 1 // indices are distinct, so never equal
	})
}

// TopK returns the k largest elements of x along its last axis, in descending
// order, and their int32 indices: shapes (..., k). Equal values keep the lower
// index first, and NaN ranks above every number. The values are differentiable:
// their gradient goes back to the chosen positions. k must be in [0, n].
func TopK(x *Tensor, k int) (values, indices *Tensor) {
	const name = "topk"
	checkFloat(name, x)
	rank := len(x.shape)
	if rank == 0 {
		panic("autodiff: topk: a 0-dimensional input has no last axis")
	}
	n := x.shape[rank-1]
	if k < 0 || k > n {
		panic(fmt.Sprintf("autodiff: topk: k = %d outside [0, %d] for shape %s", k, n, shapeString(x.shape)))
	}
	rows := numel(x.shape[:rank-1])
	shape := append(append([]int(nil), x.shape[:rank-1]...), k)
	tm := startOp()
	values = Empty(x.dtype, shape...)
	indices = Empty(Int32, shape...)
	if x.dtype == Float32 {
		TopKRows(values.Float32s(), indices.Int32s(), x.Float32s(), rows, n, k)
	} else {
		TopKRows(values.Float64s(), indices.Int32s(), x.Float64s(), rows, n, k)
	}
	tm.done(name, metal.PathGo, x.Len()*x.dtype.Size())
	// Backward needs the indices even if the caller releases them.
	at := append([]int32(nil), indices.Int32s()...)
	record(values, name, func(g *Tensor) {
		accumulate(x, func() *Tensor {
			dx := Zeros(x.dtype, x.shape...)
			if x.dtype == Float32 {
				tkScatter(dx.Float32s(), g.Float32s(), at, rows, n, k)
			} else {
				tkScatter(dx.Float64s(), g.Float64s(), at, rows, n, k)
			}
			return dx
		})
	}, x)
	return values, indices
}

func tkScatter[T Float](dx, g []T, at []int32, rows, n, k int) {
	for i := range rows {
		for j := range k {
			dx[i*n+int(at[i*k+j])] = g[i*k+j]
		}
	}
}

// CumsumAxis writes the running sums of x, viewed as (a, n, b), along its middle
// axis: out[i, r, j] = Σ_{s ≤ r} x[i, s, j], or Σ_{s ≥ r} when reverse. The sums
// run in float64. out may alias x.
func CumsumAxis[T Float](out, x []T, a, n, b int, reverse bool) {
	if n == 0 {
		return
	}
	start, step := 0, 1
	if reverse {
		start, step = n-1, -1
	}
	if b == 1 {
		metal.ParallelFor(a, redRowsGrain(n), func(lo, hi int) {
			for i := lo; i < hi; i++ {
				xr, or := x[i*n:(i+1)*n], out[i*n:(i+1)*n]
				s := 0.0
				for r := start; r >= 0 && r < n; r += step {
					s += float64(xr[r])
					or[r] = T(s)
				}
			}
		})
		return
	}
	redForTiles(a, n, b, func(ai, b0, b1 int) {
		var acc [redTile]float64
		base := ai * n * b
		for r := start; r >= 0 && r < n; r += step {
			xr, or := x[base+r*b+b0:base+r*b+b1], out[base+r*b+b0:base+r*b+b1]
			for j, v := range xr {
				acc[j] += float64(v)
				or[j] = T(acc[j])
			}
		}
	})
}

// Cumsum returns the running sums of x along axis (negative counts from the end),
// from the start, or from the end when reverse. Its VJP is the cumsum of the
// gradient in the opposite direction. The CPU sums in float64; on a device
// (float32, above op cumsum's thresholds) the scan kernels sum in float32, in a
// tree of a few levels, so the last bits may differ.
func Cumsum(x *Tensor, axis int, reverse bool) *Tensor {
	const name = "cumsum"
	checkFloat(name, x)
	a, n, b := smLayout(name, x.shape, axis)
	tm := startOp()
	out := Empty(x.dtype, x.shape...)
	path := metal.PathMetal
	switch {
	case cumsumDevice(out, x, a, n, b, reverse):
	case x.dtype == Float32:
		path = metal.PathGo
		CumsumAxis(out.Float32s(), x.Float32s(), a, n, b, reverse)
	default:
		path = metal.PathGo
		CumsumAxis(out.Float64s(), x.Float64s(), a, n, b, reverse)
	}
	tm.done(name, path, 2*out.Len()*out.dtype.Size())
	return record(out, name, func(g *Tensor) {
		accumulate(x, func() *Tensor {
			dx := Empty(x.dtype, x.shape...)
			if cumsumDevice(dx, g, a, n, b, !reverse) {
				return dx
			}
			if x.dtype == Float32 {
				CumsumAxis(dx.Float32s(), g.Float32s(), a, n, b, !reverse)
			} else {
				CumsumAxis(dx.Float64s(), g.Float64s(), a, n, b, !reverse)
			}
			return dx
		})
	}, x)
}
