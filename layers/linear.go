package layers

import (
	"fmt"
	"math"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/autodiff/gemm"
	"github.com/mlxtrain/mlxtrain/metal"
)

// Init chooses how a layer's weights start.
type Init struct {
	// Std > 0 draws N(0, Std²) (GPT-2 uses 0.02); otherwise weights are uniform in
	// ±1/√fan_in, PyTorch's default for Linear.
	Std float64
}

// Linear is y = x·Wᵀ + b with W of shape (out, in), as PyTorch and Hugging Face
// store it. An optional LoRA adapter adds scale·(x·Aᵀ)·Bᵀ.
type Linear struct {
	Weight *autodiff.Tensor // (out, in); nil when Packed holds the weight
	Bias   *autodiff.Tensor // (out) or nil
	LoRA   *LoRA            // nil unless an adapter is attached
	Packed PackedWeight     // a frozen, quantized weight in place of Weight, or nil
}

// PackedWeight is a frozen weight matrix (rows, cols) kept in a compact form
// (package quant: MLX's affine quantization) that a Linear or an Embedding uses
// in place of its Weight, multiplying and gathering without unpacking it whole.
type PackedWeight interface {
	Dims() (rows, cols int)
	// MatMulT returns x·Wᵀ for x (..., cols), differentiable with respect to x.
	MatMulT(x *autodiff.Tensor) *autodiff.Tensor
	// Gather returns rows ids (int32, any shape) of W, shape (..., cols).
	Gather(ids *autodiff.Tensor) *autodiff.Tensor
	// Params lists the stored tensors under prefix (MLX: weight, scales, biases).
	Params(prefix string) []autodiff.Param
}

// NewLinear returns a Linear of float dtype with weights drawn from rng.
func NewLinear(rng *autodiff.RNG, dtype autodiff.DType, in, out int, bias bool, init Init) *Linear {
	if in <= 0 || out <= 0 {
		panic(fmt.Sprintf("layers: NewLinear(%d, %d)", in, out))
	}
	l := &Linear{}
	if init.Std > 0 {
		l.Weight = autodiff.RandNormal(rng, dtype, 0, init.Std, out, in)
	} else {
		bound := 1 / math.Sqrt(float64(in))
		l.Weight = autodiff.RandUniform(rng, dtype, -bound, bound, out, in)
	}
	if bias {
		l.Bias = autodiff.Zeros(dtype, out)
	}
	return l
}

// DType is the dtype the layer computes in: its weight's, or float32 for a
// packed (quantized) weight.
func (l *Linear) DType() autodiff.DType {
	if l.Weight == nil && l.Packed != nil {
		return autodiff.Float32
	}
	return l.Weight.DType()
}

// In is the input width.
func (l *Linear) In() int {
	if l.Weight == nil && l.Packed != nil {
		_, in := l.Packed.Dims()
		return in
	}
	return l.Weight.Dim(1)
}

// Out is the output width.
func (l *Linear) Out() int {
	if l.Weight == nil && l.Packed != nil {
		out, _ := l.Packed.Dims()
		return out
	}
	return l.Weight.Dim(0)
}

// Params lists weight (or the packed weight's tensors), bias and the adapter's
// matrices.
func (l *Linear) Params(prefix string) []autodiff.Param {
	var ps []autodiff.Param
	if l.Packed != nil {
		ps = l.Packed.Params(prefix)
	} else {
		ps = []autodiff.Param{param(prefix, "weight", l.Weight)}
	}
	if l.Bias != nil {
		ps = append(ps, param(prefix, "bias", l.Bias))
	}
	if l.LoRA != nil {
		ps = append(ps, l.LoRA.Params(prefix)...)
	}
	return ps
}

// Forward applies the layer to x of shape (..., in).
func (l *Linear) Forward(c *Ctx, x *autodiff.Tensor) *autodiff.Tensor {
	var y *autodiff.Tensor
	if l.Packed != nil {
		y = l.Packed.MatMulT(x)
		if l.Bias != nil {
			y = autodiff.Add(y, c.Param(l.Bias))
		}
	} else {
		y = LinearOp(x, c.Param(l.Weight), c.Param(l.Bias))
	}
	if l.LoRA != nil {
		y = l.LoRA.addTo(c, x, y)
	}
	return y
}

// LinearOp is the fused, differentiable x·Wᵀ + b for x (..., in), W (out, in), b
// (out) or nil: one GEMM with the bias added in the same pass, and a backward of
// two GEMMs and a column sum.
func LinearOp(x, w, b *autodiff.Tensor) *autodiff.Tensor {
	if w.Rank() != 2 || x.Rank() == 0 || x.Dim(-1) != w.Dim(1) || x.DType() != w.DType() || !x.DType().IsFloat() {
		panic(fmt.Sprintf("layers: linear: input %s %v, weight %s %v", x.DType(), x.Shape(), w.DType(), w.Shape()))
	}
	in, out := w.Dim(1), w.Dim(0)
	if b != nil && (b.Rank() != 1 || b.Dim(0) != out || b.DType() != x.DType()) {
		panic(fmt.Sprintf("layers: linear: bias %v for weight %v", b.Shape(), w.Shape()))
	}
	rows := x.Len() / in
	shape := append(append([]int(nil), x.Shape()[:x.Rank()-1]...), out)
	y := autodiff.Empty(x.DType(), shape...)
	dev := linearOnDevice(rows, in, out, y, x, w, b)
	switch {
	case tryDevice("linear", dev, func(d metal.Compute) error { return linearDevice(d, y, x, w, b, rows, in, out) }):
	case x.DType() == autodiff.Float32:
		dev = nil
		linearForward(y.Float32s(), x.Float32s(), w.Float32s(), optSlice(b, f32), rows, in, out)
	default:
		linearForward(y.Float64s(), x.Float64s(), w.Float64s(), optSlice(b, f64), rows, in, out)
	}
	inputs := []*autodiff.Tensor{x, w}
	if b != nil {
		inputs = append(inputs, b)
	}
	return autodiff.Record(y, "linear", func(g *autodiff.Tensor) {
		if dev != nil {
			dev = linearOnDevice(rows, in, out, g, x, w)
		}
		if dev == nil { // on the CPU dx goes straight into x's gradient (β = 1 when it has one)
			autodiff.AccumulateInPlace(x, func(dx *autodiff.Tensor, fresh bool) {
				beta := 1.0
				if fresh {
					beta = 0
				}
				if x.DType() == autodiff.Float32 {
					gemm.Sgemm(false, false, rows, in, out, 1, g.Float32s(), out, w.Float32s(), in, float32(beta), dx.Float32s(), in)
				} else {
					gemm.Dgemm(false, false, rows, in, out, 1, g.Float64s(), out, w.Float64s(), in, beta, dx.Float64s(), in)
				}
			})
		} else {
			autodiff.Accumulate(x, func() *autodiff.Tensor {
				dx := autodiff.Empty(x.DType(), x.Shape()...)
				if tryDevice("linear", dev, func(d metal.Compute) error { return autodiff.MatMulDevice(d, dx, g, w, rows, in, out, false, false) }) {
					return dx
				}
				if x.DType() == autodiff.Float32 {
					gemm.Sgemm(false, false, rows, in, out, 1, g.Float32s(), out, w.Float32s(), in, 0, dx.Float32s(), in)
				} else {
					gemm.Dgemm(false, false, rows, in, out, 1, g.Float64s(), out, w.Float64s(), in, 0, dx.Float64s(), in)
				}
				return dx
			})
		}
		autodiff.Accumulate(w, func() *autodiff.Tensor {
			dw := autodiff.Empty(w.DType(), out, in)
			if tryDevice("linear", dev, func(d metal.Compute) error { return autodiff.MatMulDevice(d, dw, g, x, out, in, rows, true, false) }) {
				return dw
			}
			if x.DType() == autodiff.Float32 {
				gemm.Sgemm(true, false, out, in, rows, 1, g.Float32s(), out, x.Float32s(), in, 0, dw.Float32s(), in)
			} else {
				gemm.Dgemm(true, false, out, in, rows, 1, g.Float64s(), out, x.Float64s(), in, 0, dw.Float64s(), in)
			}
			return dw
		})
		if b != nil {
			autodiff.Accumulate(b, func() *autodiff.Tensor {
				db := autodiff.Zeros(b.DType(), out)
				if tryDevice("linear", dev, func(d metal.Compute) error {
					return metal.RunReduceCols(d, metal.ReduceSum, db.Buffer(), g.Buffer(), rows, out)
				}) {
					return db
				}
				if x.DType() == autodiff.Float32 {
					columnSums(db.Float32s(), g.Float32s(), rows, out)
				} else {
					columnSums(db.Float64s(), g.Float64s(), rows, out)
				}
				return db
			})
		}
	}, inputs...)
}

func linearForward[T autodiff.Float](y, x, w, b []T, rows, in, out int) {
	beta := T(0)
	if b != nil {
		for r := range rows {
			copy(y[r*out:(r+1)*out], b)
		}
		beta = 1
	}
	var z T
	switch any(z).(type) {
	case float32:
		gemm.Sgemm(false, true, rows, out, in, 1, any(x).([]float32), in, any(w).([]float32), in, float32(beta), any(y).([]float32), out)
	default:
		gemm.Dgemm(false, true, rows, out, in, 1, any(x).([]float64), in, any(w).([]float64), in, float64(beta), any(y).([]float64), out)
	}
}

// columnSums adds the column sums of the rows×cols matrix g to dst.
func columnSums[T autodiff.Float](dst, g []T, rows, cols int) {
	dst = dst[:cols]
	for r := range rows {
		row := g[r*cols : (r+1)*cols]
		for j, v := range row {
			dst[j] += v
		}
	}
}
