package models

import (
	"fmt"
	"math"
	"sync"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/autodiff/gemm"
	"github.com/mlxtrain/mlxtrain/internal/vecmath"
	"github.com/mlxtrain/mlxtrain/metal"
)

// rowGrain is the number of elements a worker takes at least in the row kernels.
const rowGrain = 1 << 14

func rowsGrain(width int) int { return max(1, rowGrain/max(width, 1)) }

// ---- token and position embeddings ----------------------------------------------

// embedPositions computes table[ids] + pos[offset+t] for ids (B, T): (B, T, D). pos
// (P, D) may be nil (no learned positions). One pass forward; backward scatters the
// gradient into the table's rows and sums it over the batch into pos's rows.
func embedPositions(table, pos, ids *autodiff.Tensor, offset int) *autodiff.Tensor {
	if table.Rank() != 2 || !table.DType().IsFloat() || pos != nil && (pos.Rank() != 2 || pos.Dim(1) != table.Dim(1) || pos.DType() != table.DType()) {
		panic(fmt.Sprintf("models: embedding: table %s %v, positions %v", table.DType(), table.Shape(), shapeOf(pos)))
	}
	bs, t := ids.Dim(0), ids.Dim(1)
	vocab, d := table.Dim(0), table.Dim(1)
	idv := ids.Int32s()
	for i, v := range idv {
		if v < 0 || int(v) >= vocab {
			panic(fmt.Sprintf("models: embedding: token id %d at position %d is outside [0, %d) (vocab_size)", v, i, vocab))
		}
	}
	if embedPositionsOp.OnMetal(bs * t) {
		return embedPositionsParts(table, pos, ids, offset)
	}
	out := autodiff.Empty(table.DType(), bs, t, d)
	if table.DType() == autodiff.Float32 {
		embedForward(out.Float32s(), table.Float32s(), optFloats[float32](pos), idv, t, d, offset)
	} else {
		embedForward(out.Float64s(), table.Float64s(), optFloats[float64](pos), idv, t, d, offset)
	}
	inputs := []*autodiff.Tensor{table, ids}
	if pos != nil {
		inputs = append(inputs, pos)
	}
	return autodiff.Record(out, "embed_positions", func(g *autodiff.Tensor) {
		autodiff.Accumulate(table, func() *autodiff.Tensor {
			dt := autodiff.Zeros(table.DType(), vocab, d)
			if table.DType() == autodiff.Float32 {
				autodiff.ScatterAddKernel(dt.Float32s(), g.Float32s(), idv, 1, vocab, d)
			} else {
				autodiff.ScatterAddKernel(dt.Float64s(), g.Float64s(), idv, 1, vocab, d)
			}
			return dt
		})
		if pos != nil {
			autodiff.Accumulate(pos, func() *autodiff.Tensor {
				dp := autodiff.Zeros(pos.DType(), pos.Shape()...)
				if pos.DType() == autodiff.Float32 {
					positionsBackward(dp.Float32s(), g.Float32s(), bs, t, d, offset)
				} else {
					positionsBackward(dp.Float64s(), g.Float64s(), bs, t, d, offset)
				}
				return dp
			})
		}
	}, inputs...)
}

func embedForward[T autodiff.Float](out, table, pos []T, ids []int32, t, d, offset int) {
	metal.ParallelFor(len(ids), rowsGrain(d), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			o := out[r*d : (r+1)*d]
			e := table[int(ids[r])*d:][:d]
			if pos == nil {
				copy(o, e)
				continue
			}
			p := pos[(offset+r%t)*d:][:d]
			for i := range o {
				o[i] = e[i] + p[i]
			}
		}
	})
}

// positionsBackward adds Σ_b g[b, t, :] to dp[offset+t, :], each row summed in
// batch order whatever the thread count.
func positionsBackward[T autodiff.Float](dp, g []T, bs, t, d, offset int) {
	metal.ParallelFor(t, rowsGrain(bs*d), func(lo, hi int) {
		for s := lo; s < hi; s++ {
			row := dp[(offset+s)*d:][:d]
			for b := range bs {
				gr := g[(b*t+s)*d:][:d]
				if r32, ok := any(row).([]float32); ok {
					vecmath.AddTo(r32, any(gr).([]float32))
					continue
				}
				for i := range row {
					row[i] += gr[i]
				}
			}
		}
	})
}

func optFloats[T autodiff.Float](t *autodiff.Tensor) []T {
	if t == nil {
		return nil
	}
	var z T
	if _, ok := any(z).(float32); ok {
		return any(t.Float32s()).([]T)
	}
	return any(t.Float64s()).([]T)
}

func shapeOf(t *autodiff.Tensor) []int {
	if t == nil {
		return nil
	}
	return t.Shape()
}

// ---- linear + GELU ----------------------------------------------------------------

// LinearGELU is the fused, differentiable gelu(x·Wᵀ + b) for x (..., in), W (out,
// in) and b (out) or nil, with the exact (erf) GELU as PyTorch's nn.GELU computes
// it. Forward runs one GEMM whose epilogue (float32: gemm.SgemmEpilogue) adds the
// bias and evaluates the GELU and its derivative together (they share one
// exponential) on each block of rows while it is in cache. It keeps the derivative instead of the pre-activation, so
// backward is a product and the two GEMMs of a linear layer, with the bias
// gradient summed in the same pass; the memory is that of the unfused pair.
//
// In float32 the GELU is vecmath.GELU (a fitted rational form of Φ sharing one
// exponential with φ; |Δgelu| ≤ 1.2e-7·max(1, |gelu|), |Δgelu′| ≤ 1.6e-7); in
// float64 math.Erfc and math.Exp.
func LinearGELU(x, w, b *autodiff.Tensor) *autodiff.Tensor {
	return linearGELU(x, w, b, autodiff.Float32)
}

// linearGELU is LinearGELU keeping the derivative for backward in store, a
// 16-bit format (widened back when backward runs), or as it is for Float32.
func linearGELU(x, w, b *autodiff.Tensor, store autodiff.DType) *autodiff.Tensor {
	if x.Rank() > 0 && linearGELUOp.OnMetal(rowsOf(x)) {
		return linearGELUParts(x, w, b)
	}
	if w.Rank() != 2 || x.Rank() == 0 || x.Dim(-1) != w.Dim(1) || x.DType() != w.DType() || !x.DType().IsFloat() ||
		b != nil && (b.Rank() != 1 || b.Dim(0) != w.Dim(0) || b.DType() != w.DType()) {
		panic(fmt.Sprintf("models: linear_gelu: input %s %v, weight %s %v, bias %v", x.DType(), x.Shape(), w.DType(), w.Shape(), shapeOf(b)))
	}
	in, out := w.Dim(1), w.Dim(0)
	rows := x.Len() / in
	shape := append(append([]int(nil), x.Shape()[:x.Rank()-1]...), out)
	y := autodiff.Empty(x.DType(), shape...)
	deriv := autodiff.Empty(x.DType(), shape...)
	if x.DType() == autodiff.Float32 {
		// The bias and the GELU run as the GEMM's epilogue, on each block of rows
		// while it is in cache.
		ys, ds, bias := y.Float32s(), deriv.Float32s(), optFloats[float32](b)
		gemm.SgemmEpilogue(false, true, rows, out, in, 1, x.Float32s(), in, w.Float32s(), in, 0, ys, out, func(i0, i1, j0, j1 int) {
			var bj []float32
			if bias != nil {
				bj = bias[j0:j1]
			}
			for r := i0; r < i1; r++ {
				row := ys[r*out+j0 : r*out+j1]
				vecmath.GELU(row, ds[r*out+j0:r*out+j1], row, bj)
			}
		})
	} else {
		gemm.Dgemm(false, true, rows, out, in, 1, x.Float64s(), in, w.Float64s(), in, 0, y.Float64s(), out)
		metal.ParallelFor(rows, rowsGrain(out), func(lo, hi int) {
			geluRows64(y.Float64s()[lo*out:hi*out], deriv.Float64s()[lo*out:hi*out], optFloats[float64](b), out)
		})
	}
	inputs := []*autodiff.Tensor{x, w}
	if b != nil {
		inputs = append(inputs, b)
	}
	saved := deriv
	if isHalf(store) && x.DType() == autodiff.Float32 && x.Tape() != nil {
		saved = storeHalf(deriv, store)
		deriv.Release()
	}
	res := autodiff.Record(y, "linear_gelu", func(g *autodiff.Tensor) {
		needX, needW := autodiff.NeedsGrad(x), autodiff.NeedsGrad(w)
		needB := b != nil && autodiff.NeedsGrad(b)
		if !needX && !needW && !needB {
			return
		}
		deriv := saved
		if saved.DType() != x.DType() {
			deriv = widen(saved, x.DType())
			defer deriv.Release()
		}
		dpre := autodiff.Empty(x.DType(), shape...)
		defer dpre.Release()
		var db *autodiff.Tensor
		if needB {
			db = autodiff.Zeros(b.DType(), out)
		}
		if x.DType() == autodiff.Float32 {
			linearGELUBackward(dpre.Float32s(), optFloats[float32](db), g.Float32s(), deriv.Float32s(), rows, out)
			if needX && needW && metal.Threads() > 1 {
				// The two GEMMs side by side, one per worker.
				dx := autodiff.Empty(x.DType(), x.Shape()...)
				dw := autodiff.Empty(w.DType(), out, in)
				gemm.LinearGrads(rows, in, out, dpre.Float32s(), w.Float32s(), x.Float32s(), dx.Float32s(), dw.Float32s())
				autodiff.Accumulate(x, func() *autodiff.Tensor { return dx })
				autodiff.Accumulate(w, func() *autodiff.Tensor { return dw })
				needX, needW = false, false
			}
			if needX {
				dx := autodiff.Empty(x.DType(), x.Shape()...)
				gemm.Sgemm(false, false, rows, in, out, 1, dpre.Float32s(), out, w.Float32s(), in, 0, dx.Float32s(), in)
				autodiff.Accumulate(x, func() *autodiff.Tensor { return dx })
			}
			if needW {
				dw := autodiff.Empty(w.DType(), out, in)
				gemm.Sgemm(true, false, out, in, rows, 1, dpre.Float32s(), out, x.Float32s(), in, 0, dw.Float32s(), in)
				autodiff.Accumulate(w, func() *autodiff.Tensor { return dw })
			}
		} else {
			linearGELUBackward(dpre.Float64s(), optFloats[float64](db), g.Float64s(), deriv.Float64s(), rows, out)
			if needX {
				dx := autodiff.Empty(x.DType(), x.Shape()...)
				gemm.Dgemm(false, false, rows, in, out, 1, dpre.Float64s(), out, w.Float64s(), in, 0, dx.Float64s(), in)
				autodiff.Accumulate(x, func() *autodiff.Tensor { return dx })
			}
			if needW {
				dw := autodiff.Empty(w.DType(), out, in)
				gemm.Dgemm(true, false, out, in, rows, 1, dpre.Float64s(), out, x.Float64s(), in, 0, dw.Float64s(), in)
				autodiff.Accumulate(w, func() *autodiff.Tensor { return dw })
			}
		}
		if db != nil {
			autodiff.Accumulate(b, func() *autodiff.Tensor { return db })
		}
	}, inputs...)
	own(res, saved)
	return res
}

func isHalf(dt autodiff.DType) bool { return dt == autodiff.Float16 || dt == autodiff.BFloat16 }

// storeHalf returns a copy of float32 t rounded to the 16-bit format dt, untracked.
func storeHalf(t *autodiff.Tensor, dt autodiff.DType) *autodiff.Tensor {
	h := autodiff.Empty(dt, t.Shape()...)
	dst, src := h.Halves(), t.Float32s()
	metal.ParallelFor(len(src), rowGrain, func(lo, hi int) {
		if dt == autodiff.BFloat16 {
			for i, v := range src[lo:hi] {
				dst[lo+i] = autodiff.Float32ToBFloat16(v)
			}
			return
		}
		for i, v := range src[lo:hi] {
			dst[lo+i] = float16Bits(v)
		}
	})
	return h
}

// float16Bits is autodiff.Float32ToHalf with a fast path over float16's normal
// range: round the mantissa to 10 bits (ties to even), rebias the exponent.
func float16Bits(v float32) uint16 {
	b := math.Float32bits(v)
	if a := b & 0x7fffffff; a >= 0x38800000 && a < 0x477ff000 { // 2⁻¹⁴ ≤ |v| < 65520
		a += 0xfff + (a>>13)&1
		return uint16(b>>16)&0x8000 | uint16((a-0x38000000)>>13)
	}
	return autodiff.Float32ToHalf(v)
}

// widen returns a 16-bit tensor as a new tensor of dtype dt (float32), untracked.
func widen(h *autodiff.Tensor, dt autodiff.DType) *autodiff.Tensor {
	t := autodiff.Empty(dt, h.Shape()...)
	dst, src := t.Float32s(), h.Halves()
	metal.ParallelFor(len(src), rowGrain, func(lo, hi int) {
		if h.DType() == autodiff.BFloat16 {
			for i, v := range src[lo:hi] {
				dst[lo+i] = autodiff.BFloat16ToFloat32(v)
			}
			return
		}
		for i, v := range src[lo:hi] {
			dst[lo+i] = autodiff.HalfToFloat32(v)
		}
	})
	return t
}

// own hands saved tensors to out's tape, or frees them when out is not recorded.
func own(out *autodiff.Tensor, saved ...*autodiff.Tensor) {
	if tp := out.Tape(); tp != nil {
		tp.Own(saved...)
		return
	}
	for _, s := range saved {
		s.Release()
	}
}

// linearGELUBackward sets dpre = g·deriv and, when db is not nil, adds the column
// sums of dpre to db (per-worker partial sums, added in worker order).
func linearGELUBackward[T autodiff.Float](dpre, db, g, deriv []T, rows, width int) {
	var mu sync.Mutex
	metal.ParallelFor(rows, rowsGrain(width), func(lo, hi int) {
		part := make([]T, width)
		for r := lo; r < hi; r++ {
			d, gr, dr := dpre[r*width:(r+1)*width], g[r*width:(r+1)*width], deriv[r*width:(r+1)*width]
			if d32, ok := any(d).([]float32); ok {
				vecmath.MulSum(d32, any(part).([]float32), any(gr).([]float32), any(dr).([]float32))
			} else {
				mulSumGo(d, part, gr, dr)
			}
		}
		if db != nil {
			mu.Lock()
			for i, v := range part {
				db[i] += v
			}
			mu.Unlock()
		}
	})
}

// mulSumGo sets dst = a·b elementwise and adds dst to sum.
func mulSumGo[T autodiff.Float](dst, sum, a, b []T) {
	sum, a, b = sum[:len(dst)], a[:len(dst)], b[:len(dst)]
	for i := range dst {
		dst[i] = a[i] * b[i]
		sum[i] += dst[i]
	}
}

func geluRows64(y, d, b []float64, width int) {
	for r := 0; r < len(y); r += width {
		vecmath.GELU64(y[r:r+width], d[r:r+width], y[r:r+width], b)
	}
}

// ---- linear + residual --------------------------------------------------------------

// linearResidual is the fused, differentiable res + x·Wᵀ + b for x (..., in), W
// (out, in), b (out) or nil and res (..., out): the projection that closes a
// residual branch (o_proj, down_proj). Forward writes res + b into the output
// and lets the GEMM accumulate onto it; backward hands the residual its gradient
// and runs the two GEMMs of a linear layer and the bias sum.
func linearResidual(x, w, b, res *autodiff.Tensor) *autodiff.Tensor {
	return linearResidualStored(x, w, b, res, autodiff.Float32)
}

// linearResidualStored is linearResidual keeping x for the weight gradient in
// store, a 16-bit format (as it is for Float32). With a 16-bit store and x on a
// tape, x's own storage is given back at once: the op that made x must not
// read it in backward, and nothing may read x after this call.
func linearResidualStored(x, w, b, res *autodiff.Tensor, store autodiff.DType) *autodiff.Tensor {
	if x.Rank() > 0 && linearResidualOp.OnMetal(rowsOf(x)) {
		return linearResidualParts(x, w, b, res)
	}
	if w.Rank() != 2 || x.Rank() == 0 || x.Dim(-1) != w.Dim(1) || x.DType() != w.DType() || !x.DType().IsFloat() ||
		res.DType() != x.DType() || res.Rank() != x.Rank() || res.Dim(-1) != w.Dim(0) || res.Len()/w.Dim(0) != x.Len()/w.Dim(1) ||
		b != nil && (b.Rank() != 1 || b.Dim(0) != w.Dim(0) || b.DType() != w.DType()) {
		panic(fmt.Sprintf("models: linear_residual: input %s %v, weight %v, bias %v, residual %s %v", x.DType(), x.Shape(), w.Shape(), shapeOf(b), res.DType(), res.Shape()))
	}
	in, out := w.Dim(1), w.Dim(0)
	rows := x.Len() / in
	y := autodiff.Empty(x.DType(), res.Shape()...)
	if x.DType() == autodiff.Float32 {
		residualRows(y.Float32s(), res.Float32s(), optFloats[float32](b), out)
		gemm.Sgemm(false, true, rows, out, in, 1, x.Float32s(), in, w.Float32s(), in, 1, y.Float32s(), out)
	} else {
		residualRows(y.Float64s(), res.Float64s(), optFloats[float64](b), out)
		gemm.Dgemm(false, true, rows, out, in, 1, x.Float64s(), in, w.Float64s(), in, 1, y.Float64s(), out)
	}
	inputs := []*autodiff.Tensor{x, w, res}
	if b != nil {
		inputs = append(inputs, b)
	}
	var xh *autodiff.Tensor // x in store, for the weight gradient
	if isHalf(store) && x.DType() == autodiff.Float32 && x.Tape() != nil {
		xh = storeHalf(x, store)
	}
	yr := autodiff.Record(y, "linear_residual", func(g *autodiff.Tensor) {
		if x.DType() == autodiff.Float32 && xh == nil && autodiff.NeedsGrad(x) && autodiff.NeedsGrad(w) && metal.Threads() > 1 {
			// The two GEMMs side by side, one per worker.
			dx := autodiff.Empty(x.DType(), x.Shape()...)
			dw := autodiff.Empty(w.DType(), out, in)
			gemm.LinearGrads(rows, in, out, g.Float32s(), w.Float32s(), x.Float32s(), dx.Float32s(), dw.Float32s())
			autodiff.Accumulate(x, func() *autodiff.Tensor { return dx })
			autodiff.Accumulate(w, func() *autodiff.Tensor { return dw })
		} else {
			autodiff.Accumulate(x, func() *autodiff.Tensor {
				dx := autodiff.Empty(x.DType(), x.Shape()...)
				if x.DType() == autodiff.Float32 {
					gemm.Sgemm(false, false, rows, in, out, 1, g.Float32s(), out, w.Float32s(), in, 0, dx.Float32s(), in)
				} else {
					gemm.Dgemm(false, false, rows, in, out, 1, g.Float64s(), out, w.Float64s(), in, 0, dx.Float64s(), in)
				}
				return dx
			})
			autodiff.Accumulate(w, func() *autodiff.Tensor {
				dw := autodiff.Empty(w.DType(), out, in)
				if xh != nil {
					x32 := widen(xh, autodiff.Float32)
					defer x32.Release()
					gemm.Sgemm(true, false, out, in, rows, 1, g.Float32s(), out, x32.Float32s(), in, 0, dw.Float32s(), in)
				} else if x.DType() == autodiff.Float32 {
					gemm.Sgemm(true, false, out, in, rows, 1, g.Float32s(), out, x.Float32s(), in, 0, dw.Float32s(), in)
				} else {
					gemm.Dgemm(true, false, out, in, rows, 1, g.Float64s(), out, x.Float64s(), in, 0, dw.Float64s(), in)
				}
				return dw
			})
		}
		if b != nil {
			autodiff.Accumulate(b, func() *autodiff.Tensor {
				db := autodiff.Zeros(b.DType(), out)
				if x.DType() == autodiff.Float32 {
					columnSums(db.Float32s(), g.Float32s(), rows, out)
				} else {
					columnSums(db.Float64s(), g.Float64s(), rows, out)
				}
				return db
			})
		}
		// The residual's gradient is g itself: it shares g's storage instead of
		// copying it, handed over last, once nothing here reads g any more (the
		// tape may add into it in place, res being x say).
		autodiff.Accumulate(res, func() *autodiff.Tensor { return g.Detached() })
	}, inputs...)
	if xh != nil {
		own(yr, xh)
		x.Release() // the tape keeps x's place (shape, gradient), not its data
	}
	return yr
}

// residualRows sets each row of y (rows of width) to res + b (b may be nil).
func residualRows[T autodiff.Float](y, res, b []T, width int) {
	if b == nil {
		copy(y, res)
		return
	}
	metal.ParallelFor(len(y)/width, rowsGrain(2*width), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			yr, rr := y[r*width:(r+1)*width], res[r*width:(r+1)*width]
			if y32, ok := any(yr).([]float32); ok {
				copy(y32, any(rr).([]float32))
				vecmath.AddTo(y32, any(b).([]float32))
				continue
			}
			for i, v := range rr {
				yr[i] = v + b[i]
			}
		}
	})
}

// columnSums adds the column sums of the rows×cols matrix g to dst, from
// per-worker partial sums added in worker order.
func columnSums[T autodiff.Float](dst, g []T, rows, cols int) {
	var mu sync.Mutex
	metal.ParallelFor(rows, rowsGrain(cols), func(lo, hi int) {
		part := make([]T, cols)
		for r := lo; r < hi; r++ {
			row := g[r*cols : (r+1)*cols]
			if p32, ok := any(part).([]float32); ok {
				vecmath.AddTo(p32, any(row).([]float32))
				continue
			}
			for j, v := range row {
				part[j] += v
			}
		}
		mu.Lock()
		for j, v := range part {
			dst[j] += v
		}
		mu.Unlock()
	})
}
