package layers

import (
	"fmt"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/autodiff/gemm"
)

// RMSNormLinearOp is the seed's fused RMSNorm+Linear: y = rmsnorm(x; gain)·Wᵀ for x
// (..., in), gain (in) or nil, W (out, in). The normalised input is not kept for
// backward: it is recomputed from x and the saved per-row 1/rms, so the pair
// costs one activation less than the two ops apart.
func RMSNormLinearOp(x, gain, w *autodiff.Tensor, eps float64) *autodiff.Tensor {
	in := checkNorm("rms_norm_linear", x, gain, nil)
	if w.Rank() != 2 || w.Dim(1) != in || w.DType() != x.DType() {
		panic(fmt.Sprintf("layers: rms_norm_linear: input %v, weight %s %v", x.Shape(), w.DType(), w.Shape()))
	}
	out := w.Dim(0)
	rows := x.Len() / max(in, 1)
	shape := append(append([]int(nil), x.Shape()[:x.Rank()-1]...), out)
	y := autodiff.Empty(x.DType(), shape...)
	rstd := autodiff.Empty(x.DType(), rows)
	xn := autodiff.Empty(x.DType(), x.Shape()...)
	normalise := func() {
		if x.DType() == autodiff.Float32 {
			RMSNormForward(xn.Float32s(), x.Float32s(), optSlice(gain, f32), rstd.Float32s(), in, eps)
		} else {
			RMSNormForward(xn.Float64s(), x.Float64s(), optSlice(gain, f64), rstd.Float64s(), in, eps)
		}
	}
	normalise()
	if x.DType() == autodiff.Float32 {
		gemm.Sgemm(false, true, rows, out, in, 1, xn.Float32s(), in, w.Float32s(), in, 0, y.Float32s(), out)
	} else {
		gemm.Dgemm(false, true, rows, out, in, 1, xn.Float64s(), in, w.Float64s(), in, 0, y.Float64s(), out)
	}
	xn.Release()
	inputs := []*autodiff.Tensor{x, w}
	if gain != nil {
		inputs = append(inputs, gain)
	}
	res := autodiff.Record(y, "rms_norm_linear", func(g *autodiff.Tensor) {
		needX, needW := autodiff.NeedsGrad(x), autodiff.NeedsGrad(w)
		needGain := gain != nil && autodiff.NeedsGrad(gain)
		if !needX && !needW && !needGain {
			return
		}
		xn = autodiff.Empty(x.DType(), x.Shape()...)
		defer xn.Release()
		normalise()
		if needW {
			dw := autodiff.Empty(w.DType(), out, in)
			if x.DType() == autodiff.Float32 {
				gemm.Sgemm(true, false, out, in, rows, 1, g.Float32s(), out, xn.Float32s(), in, 0, dw.Float32s(), in)
			} else {
				gemm.Dgemm(true, false, out, in, rows, 1, g.Float64s(), out, xn.Float64s(), in, 0, dw.Float64s(), in)
			}
			handOff(w, dw)
		}
		if !needX && !needGain {
			return
		}
		dxn := autodiff.Empty(x.DType(), x.Shape()...)
		defer dxn.Release()
		dx := autodiff.Empty(x.DType(), x.Shape()...)
		var dgain *autodiff.Tensor
		if needGain {
			dgain = autodiff.Zeros(gain.DType(), in)
		}
		if x.DType() == autodiff.Float32 {
			gemm.Sgemm(false, false, rows, in, out, 1, g.Float32s(), out, w.Float32s(), in, 0, dxn.Float32s(), in)
			RMSNormBackward(dx.Float32s(), optSlice(dgain, f32), dxn.Float32s(), x.Float32s(), optSlice(gain, f32), rstd.Float32s(), in)
		} else {
			gemm.Dgemm(false, false, rows, in, out, 1, g.Float64s(), out, w.Float64s(), in, 0, dxn.Float64s(), in)
			RMSNormBackward(dx.Float64s(), optSlice(dgain, f64), dxn.Float64s(), x.Float64s(), optSlice(gain, f64), rstd.Float64s(), in)
		}
		handOff(x, dx)
		if dgain != nil {
			handOff(gain, dgain)
		}
	}, inputs...)
	keepAlive(res, rstd)
	return res
}
