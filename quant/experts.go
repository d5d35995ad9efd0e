package quant

import (
	"fmt"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/autodiff/gemm"
)

// Experts is a stack of E quantized matrices (E, rows, cols), a mixture of
// experts' projection, in MLX's QuantizedSwitchLinear layout: "weight"
// (uint32, (E, rows, cols·bits/32)), "scales" and "biases" (float32, (E, rows,
// cols/group_size)); each expert's matrix is quantized as [Quantize] does. It
// implements advanced.PackedExperts.
type Experts struct {
	Quant                  Params
	E, Rows, Cols          int
	Packed, Scales, Biases *autodiff.Tensor
	mats                   []Matrix // expert e's view of the tensors
}

// NewExperts returns an all-zero stack, to be filled by loading a checkpoint.
func NewExperts(p Params, experts, rows, cols int) (*Experts, error) {
	if err := p.CheckShape(rows, cols); err != nil {
		return nil, err
	}
	if experts <= 0 {
		return nil, fmt.Errorf("quant: %d experts", experts)
	}
	x := &Experts{Quant: p, E: experts, Rows: rows, Cols: cols,
		Packed: autodiff.Zeros(autodiff.Uint32, experts, rows, p.PackedCols(cols)),
		Scales: autodiff.Zeros(autodiff.Float32, experts, rows, cols/p.GroupSize),
		Biases: autodiff.Zeros(autodiff.Float32, experts, rows, cols/p.GroupSize),
	}
	w, s, b := x.Packed.Uint32s(), x.Scales.Float32s(), x.Biases.Float32s()
	nw, ns := rows*p.PackedCols(cols), rows*(cols/p.GroupSize)
	for e := range experts {
		x.mats = append(x.mats, Matrix{Params: p, Rows: rows, Cols: cols,
			Packed: w[e*nw : (e+1)*nw], Scales: s[e*ns : (e+1)*ns], Biases: b[e*ns : (e+1)*ns]})
	}
	return x, nil
}

// QuantizeExperts quantizes a float stack (E, rows, cols), float32 or float64.
func QuantizeExperts(p Params, t *autodiff.Tensor) (*Experts, error) {
	if t.Rank() != 3 || !t.DType().IsFloat() {
		return nil, fmt.Errorf("quant: can only quantize a float stack of matrices, not %s %v", t.DType(), t.Shape())
	}
	x, err := NewExperts(p, t.Dim(0), t.Dim(1), t.Dim(2))
	if err != nil {
		return nil, err
	}
	src := t
	if t.DType() != autodiff.Float32 {
		src = autodiff.Cast(t, autodiff.Float32)
		defer src.Release()
	}
	f := src.Float32s()
	n := x.Rows * x.Cols
	for e := range x.E {
		m, err := Quantize(p, f[e*n:(e+1)*n], x.Rows, x.Cols)
		if err != nil {
			return nil, fmt.Errorf("expert %d: %w", e, err)
		}
		copy(x.mats[e].Packed, m.Packed)
		copy(x.mats[e].Scales, m.Scales)
		copy(x.mats[e].Biases, m.Biases)
	}
	return x, nil
}

// Expert returns expert e's quantized matrix (a view of the tensors).
func (x *Experts) Expert(e int) *Matrix { return &x.mats[e] }

// Dims is (experts, rows, cols).
func (x *Experts) Dims() (experts, rows, cols int) { return x.E, x.Rows, x.Cols }

// Bytes is the storage of the three tensors.
func (x *Experts) Bytes() int64 {
	return 4 * int64(x.Packed.Len()+x.Scales.Len()+x.Biases.Len())
}

// Params lists weight, scales and biases under prefix, MLX's names.
func (x *Experts) Params(prefix string) []autodiff.Param {
	return []autodiff.Param{
		{Name: prefix + "weight", Value: x.Packed},
		{Name: prefix + "scales", Value: x.Scales},
		{Name: prefix + "biases", Value: x.Biases},
	}
}

// Dequantize returns the float stack (E, rows, cols) in dtype.
func (x *Experts) Dequantize(dtype autodiff.DType) *autodiff.Tensor {
	out := make([]float32, 0, x.E*x.Rows*x.Cols)
	for e := range x.E {
		out = append(out, x.mats[e].Dequantize()...)
	}
	f := autodiff.FromFloat32(out, x.E, x.Rows, x.Cols)
	if dtype == autodiff.Float32 {
		return f
	}
	defer f.Release()
	return autodiff.Cast(f, dtype)
}

// GroupedLinear is x·W_eᵀ + b_e on each expert's rows, as advanced.GroupedLinear
// computes it with a float stack: in (rows, cols) in expert order, b (E, rows)
// or nil, offsets (E+1) the experts' row ranges. It is differentiable with
// respect to in and b (the weights are frozen).
func (x *Experts) GroupedLinear(in, b *autodiff.Tensor, offsets []int) *autodiff.Tensor {
	if in.Rank() != 2 || in.Dim(1) != x.Cols || !in.DType().IsFloat() || len(offsets) != x.E+1 || offsets[0] != 0 || offsets[x.E] != in.Dim(0) {
		panic(fmt.Sprintf("quant: Experts.GroupedLinear: input %s %v, offsets %v for %d experts of %d×%d", in.DType(), in.Shape(), offsets, x.E, x.Rows, x.Cols))
	}
	if b != nil && (b.Rank() != 2 || b.Dim(0) != x.E || b.Dim(1) != x.Rows || b.DType() != in.DType()) {
		panic(fmt.Sprintf("quant: Experts.GroupedLinear: bias %v for %d experts of %d outputs", b.Shape(), x.E, x.Rows))
	}
	R, C := x.Rows, x.Cols
	y := autodiff.Empty(in.DType(), in.Dim(0), R)
	for e := range x.E {
		lo, hi := offsets[e], offsets[e+1]
		if hi == lo {
			continue
		}
		if in.DType() == autodiff.Float32 {
			ys := y.Float32s()[lo*R : hi*R]
			MatMulT(ys, in.Float32s()[lo*C:hi*C], hi-lo, &x.mats[e])
			if b != nil {
				addRows(ys, b.Float32s()[e*R:(e+1)*R])
			}
		} else {
			d := autodiff.FromFloat32(x.mats[e].Dequantize(), R, C)
			d64 := autodiff.Cast(d, autodiff.Float64)
			ys := y.Float64s()[lo*R : hi*R]
			gemm.Dgemm(false, true, hi-lo, R, C, 1, in.Float64s()[lo*C:hi*C], C, d64.Float64s(), C, 0, ys, R)
			d.Release()
			d64.Release()
			if b != nil {
				addRows(ys, b.Float64s()[e*R:(e+1)*R])
			}
		}
	}
	inputs := []*autodiff.Tensor{in}
	if b != nil {
		inputs = append(inputs, b)
	}
	return autodiff.Record(y, "quantized_grouped_linear", func(g *autodiff.Tensor) {
		autodiff.Accumulate(in, func() *autodiff.Tensor {
			dx := autodiff.Zeros(in.DType(), in.Shape()...)
			for e := range x.E {
				lo, hi := offsets[e], offsets[e+1]
				if hi == lo {
					continue
				}
				if in.DType() == autodiff.Float32 {
					MatMul(dx.Float32s()[lo*C:hi*C], g.Float32s()[lo*R:hi*R], hi-lo, &x.mats[e])
				} else {
					d := autodiff.FromFloat32(x.mats[e].Dequantize(), R, C)
					d64 := autodiff.Cast(d, autodiff.Float64)
					gemm.Dgemm(false, false, hi-lo, C, R, 1, g.Float64s()[lo*R:hi*R], R, d64.Float64s(), C, 0, dx.Float64s()[lo*C:hi*C], C)
					d.Release()
					d64.Release()
				}
			}
			return dx
		})
		if b != nil {
			autodiff.Accumulate(b, func() *autodiff.Tensor {
				db := autodiff.Zeros(b.DType(), x.E, R)
				for e := range x.E {
					lo, hi := offsets[e], offsets[e+1]
					if b.DType() == autodiff.Float32 {
						sumRows(db.Float32s()[e*R:(e+1)*R], g.Float32s()[lo*R:hi*R])
					} else {
						sumRows(db.Float64s()[e*R:(e+1)*R], g.Float64s()[lo*R:hi*R])
					}
				}
				return db
			})
		}
	}, inputs...)
}

// Requantize quantizes a float stack of the same shape with x's parameters.
func (x *Experts) Requantize(t *autodiff.Tensor) (*Experts, error) {
	if t.Rank() != 3 || t.Dim(0) != x.E || t.Dim(1) != x.Rows || t.Dim(2) != x.Cols {
		return nil, fmt.Errorf("quant: Requantize: %v for %d experts of %d×%d", t.Shape(), x.E, x.Rows, x.Cols)
	}
	return QuantizeExperts(x.Quant, t)
}

// addRows adds b to every row (of len(b)) of y.
func addRows[T float32 | float64](y, b []T) {
	for r := 0; r < len(y); r += len(b) {
		row := y[r : r+len(b)]
		for j, v := range b {
			row[j] += v
		}
	}
}

// sumRows adds the rows (of len(dst)) of g to dst.
func sumRows[T float32 | float64](dst, g []T) {
	for r := 0; r < len(g); r += len(dst) {
		for j, v := range g[r : r+len(dst)] {
			dst[j] += v
		}
	}
}
