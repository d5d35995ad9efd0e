package quant

import (
	"fmt"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/autodiff/gemm"
	"github.com/mlxtrain/mlxtrain/layers"
)

// Weight is a quantized matrix held as the three tensors MLX stores:
// "weight" (uint32, (rows, cols·bits/32)), "scales" and "biases" (float32,
// (rows, cols/group_size)). Its Matrix views their storage, so loading new
// values into the tensors (a state dict) updates it. It implements
// layers.PackedWeight: a layers.Linear or layers.Embedding with one as its
// Packed weight runs the quantized kernels.
//
// Scales and biases are float32 (MLX keeps them in the dtype of the weights it
// quantized; ours train in float32, and float32 keeps MLX's float32 arithmetic
// exact).
type Weight struct {
	Matrix
	Packed, Scales, Biases *autodiff.Tensor
}

var _ layers.Requantizer = (*Weight)(nil)

// NewWeight returns an all-zero quantized weight of the given shape, to be
// filled by loading a checkpoint.
func NewWeight(p Params, rows, cols int) (*Weight, error) {
	if err := p.CheckShape(rows, cols); err != nil {
		return nil, err
	}
	w := &Weight{
		Packed: autodiff.Zeros(autodiff.Uint32, rows, p.PackedCols(cols)),
		Scales: autodiff.Zeros(autodiff.Float32, rows, cols/p.GroupSize),
		Biases: autodiff.Zeros(autodiff.Float32, rows, cols/p.GroupSize),
	}
	w.Matrix = Matrix{Params: p, Rows: rows, Cols: cols,
		Packed: w.Packed.Uint32s(), Scales: w.Scales.Float32s(), Biases: w.Biases.Float32s()}
	return w, nil
}

// QuantizeTensor quantizes a float matrix (rows, cols) (float32 or float64;
// float64 is rounded to float32 first, as MLX computes in float32).
func QuantizeTensor(p Params, t *autodiff.Tensor) (*Weight, error) {
	if t.Rank() != 2 || !t.DType().IsFloat() {
		return nil, fmt.Errorf("quant: can only quantize a float matrix, not %s %v", t.DType(), t.Shape())
	}
	rows, cols := t.Dim(0), t.Dim(1)
	var src []float32
	if t.DType() == autodiff.Float32 {
		src = t.Float32s()
	} else {
		c := autodiff.Cast(t, autodiff.Float32)
		defer c.Release()
		src = c.Float32s()
	}
	m, err := Quantize(p, src, rows, cols)
	if err != nil {
		return nil, err
	}
	w, err := NewWeight(p, rows, cols)
	if err != nil {
		return nil, err
	}
	copy(w.Matrix.Packed, m.Packed)
	copy(w.Matrix.Scales, m.Scales)
	copy(w.Matrix.Biases, m.Biases)
	return w, nil
}

// Dims is (rows, cols) of the float matrix the weight stands for.
func (w *Weight) Dims() (rows, cols int) { return w.Rows, w.Cols }

// Params lists weight, scales and biases under prefix (which ends in "." unless
// empty), MLX's names.
func (w *Weight) Params(prefix string) []autodiff.Param {
	return []autodiff.Param{
		{Name: prefix + "weight", Value: w.Packed},
		{Name: prefix + "scales", Value: w.Scales},
		{Name: prefix + "biases", Value: w.Biases},
	}
}

// Dequantize returns the float matrix (rows, cols) in dtype (Float32 or Float64).
func (w *Weight) Dequantize(dtype autodiff.DType) *autodiff.Tensor {
	f := autodiff.FromFloat32(w.Matrix.Dequantize(), w.Rows, w.Cols)
	if dtype == autodiff.Float32 {
		return f
	}
	defer f.Release()
	return autodiff.Cast(f, dtype)
}

// Requantize quantizes a float matrix of the same shape with w's parameters:
// a LoRA adapter merged into a quantized base (layers.Linear.Merge).
func (w *Weight) Requantize(t *autodiff.Tensor) (layers.PackedWeight, error) {
	if t.Rank() != 2 || t.Dim(0) != w.Rows || t.Dim(1) != w.Cols {
		return nil, fmt.Errorf("quant: Requantize: %v for a %d×%d weight", t.Shape(), w.Rows, w.Cols)
	}
	return QuantizeTensor(w.Matrix.Params, t)
}

// MatMulT is x·Wᵀ for x (..., cols) float32 or float64: (..., rows). It is
// differentiable with respect to x (the weights are frozen): dx = g·W. Float32
// runs the quantized kernels (see MatMulT); float64, for gradient checks,
// multiplies the dequantized matrix.
func (w *Weight) MatMulT(x *autodiff.Tensor) *autodiff.Tensor {
	if x.Rank() == 0 || x.Dim(-1) != w.Cols || !x.DType().IsFloat() {
		panic(fmt.Sprintf("quant: MatMulT: input %s %v for a quantized %d×%d matrix", x.DType(), x.Shape(), w.Rows, w.Cols))
	}
	rows := x.Len() / w.Cols
	shape := append(append([]int(nil), x.Shape()[:x.Rank()-1]...), w.Rows)
	y := autodiff.Empty(x.DType(), shape...)
	if x.DType() == autodiff.Float32 {
		if rows > 0 && !w.matMulTDevice(y, x, rows) {
			MatMulT(y.Float32s(), x.Float32s(), rows, &w.Matrix)
		}
	} else if rows > 0 {
		d := w.Dequantize(autodiff.Float64)
		gemm.Dgemm(false, true, rows, w.Rows, w.Cols, 1, x.Float64s(), w.Cols, d.Float64s(), w.Cols, 0, y.Float64s(), w.Rows)
		d.Release()
	}
	return autodiff.Record(y, "quantized_matmul", func(g *autodiff.Tensor) {
		autodiff.Accumulate(x, func() *autodiff.Tensor {
			dx := autodiff.Empty(x.DType(), x.Shape()...)
			if x.DType() == autodiff.Float32 {
				if rows == 0 || !w.matMulDevice(dx, g, rows) {
					MatMul(dx.Float32s(), g.Float32s(), rows, &w.Matrix)
				}
			} else if rows > 0 {
				d := w.Dequantize(autodiff.Float64)
				gemm.Dgemm(false, false, rows, w.Cols, w.Rows, 1, g.Float64s(), w.Rows, d.Float64s(), w.Cols, 0, dx.Float64s(), w.Cols)
				d.Release()
			}
			return dx
		})
	}, x)
}

// Gather looks token ids (int32, any shape) up in the quantized table: (...,
// cols) float32, the dequantized rows. No gradient flows (ids are integers and
// the table is frozen).
func (w *Weight) Gather(ids *autodiff.Tensor) *autodiff.Tensor {
	if ids.DType() != autodiff.Int32 {
		panic(fmt.Sprintf("quant: Gather: ids are %s %v, want int32", ids.DType(), ids.Shape()))
	}
	for i, v := range ids.Int32s() {
		if v < 0 || int(v) >= w.Rows {
			panic(fmt.Sprintf("quant: Gather: token id %d at position %d is outside [0, %d)", v, i, w.Rows))
		}
	}
	out := autodiff.Empty(autodiff.Float32, append(append([]int(nil), ids.Shape()...), w.Cols)...)
	if ids.Len() > 0 && w.gatherDevice(out, ids) {
		return out
	}
	Gather(out.Float32s(), &w.Matrix, ids.Int32s())
	return out
}

// QuantizeLinear replaces l's float weight by its quantization (the bias, if
// any, stays float; an attached LoRA adapter stays as it is).
func QuantizeLinear(l *layers.Linear, p Params) error {
	if l.Packed != nil {
		return fmt.Errorf("quant: the linear layer is already quantized")
	}
	w, err := QuantizeTensor(p, l.Weight)
	if err != nil {
		return err
	}
	l.Weight.Release()
	l.Weight, l.Packed = nil, w
	return nil
}

// QuantizeEmbedding replaces e's float table by its quantization.
func QuantizeEmbedding(e *layers.Embedding, p Params) error {
	if e.Packed != nil {
		return fmt.Errorf("quant: the embedding is already quantized")
	}
	w, err := QuantizeTensor(p, e.Weight)
	if err != nil {
		return err
	}
	e.Weight.Release()
	e.Weight, e.Packed = nil, w
	return nil
}

// DequantizeLinear turns a quantized linear back into a float one (float32).
func DequantizeLinear(l *layers.Linear) {
	if w, ok := l.Packed.(*Weight); ok {
		l.Weight, l.Packed = w.Dequantize(autodiff.Float32), nil
	}
}

// DequantizeEmbedding turns a quantized embedding back into a float one.
func DequantizeEmbedding(e *layers.Embedding) {
	if w, ok := e.Packed.(*Weight); ok {
		e.Weight, e.Packed = w.Dequantize(autodiff.Float32), nil
	}
}
