package layers

import (
	"fmt"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/autodiff/gemm"
)

// LoRAOp is the fused, differentiable y + scale·(x·A)·B for y (..., out), x (...,
// in), A (in, rank) and B (rank, out): the adapter's update added to the base
// layer's output in one pass. Only x·A (rows × rank, small) is kept for
// backward, where the three ops apart would keep two more activations of y's
// size; the backward is four thin GEMMs and computes only the gradients asked
// for (a frozen base passes its y gradient through untouched).
func LoRAOp(y, x, a, b *autodiff.Tensor, scale float64) *autodiff.Tensor {
	dt := x.DType()
	if a.Rank() != 2 || b.Rank() != 2 || x.Rank() == 0 || x.Dim(-1) != a.Dim(0) || a.Dim(1) != b.Dim(0) ||
		y.Rank() != x.Rank() || y.Dim(-1) != b.Dim(1) || y.Len()/b.Dim(1) != x.Len()/a.Dim(0) ||
		a.DType() != dt || b.DType() != dt || y.DType() != dt || !dt.IsFloat() {
		panic(fmt.Sprintf("layers: lora: y %s %v, x %s %v, A %s %v, B %s %v", y.DType(), y.Shape(), dt, x.Shape(),
			a.DType(), a.Shape(), b.DType(), b.Shape()))
	}
	in, rank, out := a.Dim(0), a.Dim(1), b.Dim(1)
	rows := x.Len() / in
	xa := autodiff.Empty(dt, rows, rank)
	res := autodiff.Empty(dt, y.Shape()...)
	if dt == autodiff.Float32 {
		copy(res.Float32s(), y.Float32s())
		gemm.Sgemm(false, false, rows, rank, in, 1, x.Float32s(), in, a.Float32s(), rank, 0, xa.Float32s(), rank)
		gemm.Sgemm(false, false, rows, out, rank, float32(scale), xa.Float32s(), rank, b.Float32s(), out, 1, res.Float32s(), out)
	} else {
		copy(res.Float64s(), y.Float64s())
		gemm.Dgemm(false, false, rows, rank, in, 1, x.Float64s(), in, a.Float64s(), rank, 0, xa.Float64s(), rank)
		gemm.Dgemm(false, false, rows, out, rank, scale, xa.Float64s(), rank, b.Float64s(), out, 1, res.Float64s(), out)
	}
	res = autodiff.Record(res, "lora", func(g *autodiff.Tensor) {
		if autodiff.NeedsGrad(y) {
			autodiff.Accumulate(y, func() *autodiff.Tensor { return g.Clone() })
		}
		if autodiff.NeedsGrad(b) {
			db := autodiff.Empty(dt, rank, out)
			if dt == autodiff.Float32 {
				gemm.Sgemm(true, false, rank, out, rows, float32(scale), xa.Float32s(), rank, g.Float32s(), out, 0, db.Float32s(), out)
			} else {
				gemm.Dgemm(true, false, rank, out, rows, scale, xa.Float64s(), rank, g.Float64s(), out, 0, db.Float64s(), out)
			}
			handOff(b, db)
		}
		needA, needX := autodiff.NeedsGrad(a), autodiff.NeedsGrad(x)
		if !needA && !needX {
			return
		}
		// dxa = scale·g·Bᵀ (rows × rank), shared by dA = xᵀ·dxa and dx = dxa·Aᵀ.
		dxa := autodiff.Empty(dt, rows, rank)
		defer dxa.Release()
		if dt == autodiff.Float32 {
			gemm.Sgemm(false, true, rows, rank, out, float32(scale), g.Float32s(), out, b.Float32s(), out, 0, dxa.Float32s(), rank)
		} else {
			gemm.Dgemm(false, true, rows, rank, out, scale, g.Float64s(), out, b.Float64s(), out, 0, dxa.Float64s(), rank)
		}
		if needA {
			da := autodiff.Empty(dt, in, rank)
			if dt == autodiff.Float32 {
				gemm.Sgemm(true, false, in, rank, rows, 1, x.Float32s(), in, dxa.Float32s(), rank, 0, da.Float32s(), rank)
			} else {
				gemm.Dgemm(true, false, in, rank, rows, 1, x.Float64s(), in, dxa.Float64s(), rank, 0, da.Float64s(), rank)
			}
			handOff(a, da)
		}
		if needX {
			dx := autodiff.Empty(dt, x.Shape()...)
			if dt == autodiff.Float32 {
				gemm.Sgemm(false, true, rows, in, rank, 1, dxa.Float32s(), rank, a.Float32s(), rank, 0, dx.Float32s(), in)
			} else {
				gemm.Dgemm(false, true, rows, in, rank, 1, dxa.Float64s(), rank, a.Float64s(), rank, 0, dx.Float64s(), in)
			}
			handOff(x, dx)
		}
	}, y, x, a, b)
	keepAlive(res, xa)
	return res
}
