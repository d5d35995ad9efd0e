package quant

import (
	"fmt"
	"time"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/autodiff/gemm"
	"github.com/mlxtrain/mlxtrain/metal"
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
	x.check(in, b, offsets)
	return x.groupedLinear(in, b, func() []int { return offsets }, nil)
}

// GroupedLinearOffsets is [Experts.GroupedLinear] with the offsets in a device
// tensor (int32, at least E+1 entries, as advanced's device routing keeps
// them): the device paths read them there, and only a CPU path calls offsets
// for the host's, so a forward on the device reads nothing back.
func (x *Experts) GroupedLinearOffsets(in, b *autodiff.Tensor, offsets func() []int, dev *autodiff.Tensor) *autodiff.Tensor {
	if dev == nil || dev.DType() != autodiff.Int32 || dev.Len() < x.E+1 {
		return x.GroupedLinear(in, b, offsets())
	}
	x.check(in, b, nil)
	return x.groupedLinear(in, b, func() []int {
		o := offsets()
		x.check(in, b, o)
		return o
	}, dev)
}

// check panics unless in, b and offsets (when not nil) fit the stack.
func (x *Experts) check(in, b *autodiff.Tensor, offsets []int) {
	if in.Rank() != 2 || in.Dim(1) != x.Cols || !in.DType().IsFloat() || offsets != nil && (len(offsets) != x.E+1 || offsets[0] != 0 || offsets[x.E] != in.Dim(0)) {
		panic(fmt.Sprintf("quant: Experts.GroupedLinear: input %s %v, offsets %v for %d experts of %d×%d", in.DType(), in.Shape(), offsets, x.E, x.Rows, x.Cols))
	}
	if b != nil && (b.Rank() != 2 || b.Dim(0) != x.E || b.Dim(1) != x.Rows || b.DType() != in.DType()) {
		panic(fmt.Sprintf("quant: Experts.GroupedLinear: bias %v for %d experts of %d outputs", b.Shape(), x.E, x.Rows))
	}
}

// groupedLinear is GroupedLinear with the offsets from offsets (a CPU path)
// or dev (the device paths; nil: an upload of offsets()).
func (x *Experts) groupedLinear(in, b *autodiff.Tensor, offsets func() []int, dev *autodiff.Tensor) *autodiff.Tensor {
	rows := in.Dim(0)
	y := autodiff.Empty(in.DType(), rows, x.Rows)
	start, path := profileStart(), metal.PathMetal
	if !x.groupedDevice(y, in, b, offsets, dev) {
		path = metal.PathGo
		x.groupedForward(y, in, b, offsets())
	}
	x.record("quantized_grouped_linear", path, start, rows)
	inputs := []*autodiff.Tensor{in}
	if b != nil {
		inputs = append(inputs, b)
	}
	return autodiff.Record(y, "quantized_grouped_linear", func(g *autodiff.Tensor) {
		needX, needB := autodiff.NeedsGrad(in), b != nil && autodiff.NeedsGrad(b)
		if !needX && !needB {
			return
		}
		var dx, db *autodiff.Tensor
		if needX {
			dx = autodiff.Empty(in.DType(), in.Shape()...)
		}
		if needB {
			db = autodiff.Zeros(b.DType(), x.E, x.Rows)
		}
		start, path := profileStart(), metal.PathMetal
		if !x.groupedBackwardDevice(dx, db, g, offsets, dev) {
			path = metal.PathGo
			x.groupedBackward(dx, db, g, offsets())
		}
		x.record("quantized_grouped_linear_backward", path, start, rows)
		if needX {
			autodiff.Accumulate(in, func() *autodiff.Tensor { return dx })
		}
		if needB {
			autodiff.Accumulate(b, func() *autodiff.Tensor { return db })
		}
	}, inputs...)
}

// record profiles a grouped product of rows rows since start (zero: not
// profiling).
func (x *Experts) record(op string, path metal.Path, start time.Time, rows int) {
	if !start.IsZero() {
		metal.RecordOp(op, path, time.Since(start), 4*int64(rows*(x.Rows+x.Cols))+x.Bytes())
	}
}

// groupedForward is the CPU path of GroupedLinear: y = in·W_eᵀ + b_e per
// expert with the CPU kernel "quantized_matmul" picks (float32), or through
// the dequantized matrix (float64).
func (x *Experts) groupedForward(y, in, b *autodiff.Tensor, offsets []int) {
	R, C := x.Rows, x.Cols
	for e := range x.E {
		lo, hi := offsets[e], offsets[e+1]
		if hi == lo {
			continue
		}
		if in.DType() == autodiff.Float32 {
			ys := y.Float32s()[lo*R : hi*R]
			m := &x.mats[e]
			cpuImpl(qmmOp, hi-lo, R, C).Fn.(matmulFunc)(ys, in.Float32s()[lo*C:hi*C], hi-lo, m)
			if b != nil {
				addRows(ys, b.Float32s()[e*R:(e+1)*R])
			}
		} else {
			d64 := x.dequantized64(e)
			ys := y.Float64s()[lo*R : hi*R]
			gemm.Dgemm(false, true, hi-lo, R, C, 1, in.Float64s()[lo*C:hi*C], C, d64.Float64s(), C, 0, ys, R)
			d64.Release()
			if b != nil {
				addRows(ys, b.Float64s()[e*R:(e+1)*R])
			}
		}
	}
}

// groupedBackward is the CPU path of GroupedLinear's gradients: dx = g·W_e
// per expert and db_e the sum of the expert's rows of g (either may be nil;
// db is zero on entry).
func (x *Experts) groupedBackward(dx, db, g *autodiff.Tensor, offsets []int) {
	R, C := x.Rows, x.Cols
	for e := range x.E { // the groups cover every row: dx needs no clearing
		lo, hi := offsets[e], offsets[e+1]
		if hi == lo {
			continue
		}
		if dx != nil && g.DType() == autodiff.Float32 {
			MatMul(dx.Float32s()[lo*C:hi*C], g.Float32s()[lo*R:hi*R], hi-lo, &x.mats[e])
		} else if dx != nil {
			d64 := x.dequantized64(e)
			gemm.Dgemm(false, false, hi-lo, C, R, 1, g.Float64s()[lo*R:hi*R], R, d64.Float64s(), C, 0, dx.Float64s()[lo*C:hi*C], C)
			d64.Release()
		}
		if db != nil && g.DType() == autodiff.Float32 {
			sumRows(db.Float32s()[e*R:(e+1)*R], g.Float32s()[lo*R:hi*R])
		} else if db != nil {
			sumRows(db.Float64s()[e*R:(e+1)*R], g.Float64s()[lo*R:hi*R])
		}
	}
}

// dequantized64 is expert e's matrix dequantized to float64.
func (x *Experts) dequantized64(e int) *autodiff.Tensor {
	d := autodiff.FromFloat32(x.mats[e].Dequantize(), x.Rows, x.Cols)
	defer d.Release()
	return autodiff.Cast(d, autodiff.Float64)
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
