package attention

import (
	"time"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// SDPAForward is the reference scaled dot-product attention: for every batch and
// query head it materialises the Tq×Tk scores, applies the mask, takes a softmax
// and multiplies by the values, written as plainly as possible. It is the oracle
// the flash kernels are tested against and is fine for tiny shapes; memory grows
// with Tq·Tk. q, k, v and out are laid out as opt.Layout says (see [Dims]).
func SDPAForward[T Float](out, q, k, v []T, d Dims, opt Options) {
	d.check("SDPAForward", len(q), len(k), len(v), len(out))
	r := newGeometry[T](d, opt)
	metal.ParallelFor(d.Batch*d.QHeads, 1, func(lo, hi int) {
		p := make([]T, d.QLen*d.KLen)
		for u := lo; u < hi; u++ {
			b, h := u/d.QHeads, u%d.QHeads
			r.probs(p, q, k, b, h)
			for i := range d.QLen {
				o := out[r.ov.at(b, i, h):][:d.VDim]
				clear(o)
				for j := range d.KLen {
					if w := p[i*d.KLen+j]; w != 0 {
						axpy(o, w, v[r.vv.at(b, j, h/r.group):][:d.VDim])
					}
				}
			}
		}
	})
}

// SDPABackward is the reference backward of [SDPAForward]: given q, k, v and the
// output gradient dout it overwrites dq, dk and dv, recomputing and materialising
// the attention probabilities P and using dS = P∘(dP − rowsum(P∘dP)).
func SDPABackward[T Float](dq, dk, dv, q, k, v, dout []T, d Dims, opt Options) {
	d.check("SDPABackward", len(q), len(k), len(v), len(dout))
	d.check("SDPABackward", len(dq), len(dk), len(dv), len(dout))
	r := newGeometry[T](d, opt)
	clear(dk)
	clear(dv)
	// One unit per (batch, key/value head) owns dk and dv of that head and dq of the
	// query heads in its group, so units never write the same element.
	metal.ParallelFor(d.Batch*d.KVHeads, 1, func(lo, hi int) {
		p := make([]T, d.QLen*d.KLen)
		ds := make([]T, d.QLen*d.KLen)
		for u := lo; u < hi; u++ {
			b, hk := u/d.KVHeads, u%d.KVHeads
			for h := hk * r.group; h < (hk+1)*r.group; h++ {
				r.probs(p, q, k, b, h)
				for i := range d.QLen {
					g := dout[r.ov.at(b, i, h):][:d.VDim]
					row := p[i*d.KLen : (i+1)*d.KLen]
					dsr := ds[i*d.KLen : (i+1)*d.KLen]
					var sum T
					for j := range d.KLen {
						dsr[j] = 0
						if row[j] != 0 { // masked: P = 0 makes dS = 0
							dsr[j] = dot(g, v[r.vv.at(b, j, hk):][:d.VDim]) // dP
							sum += row[j] * dsr[j]
						}
					}
					for j := range d.KLen {
						dsr[j] = row[j] * (dsr[j] - sum) * r.scale
					}
				}
				for i := range d.QLen {
					gq := dq[r.qv.at(b, i, h):][:d.HeadDim]
					clear(gq)
					for j := range d.KLen {
						axpy(gq, ds[i*d.KLen+j], k[r.kv.at(b, j, hk):][:d.HeadDim])
					}
				}
				for j := range d.KLen {
					gk := dk[r.kv.at(b, j, hk):][:d.HeadDim]
					gv := dv[r.vv.at(b, j, hk):][:d.VDim]
					for i := range d.QLen {
						if p[i*d.KLen+j] != 0 {
							axpy(gk, ds[i*d.KLen+j], q[r.qv.at(b, i, h):][:d.HeadDim])
							axpy(gv, p[i*d.KLen+j], dout[r.ov.at(b, i, h):][:d.VDim])
						}
					}
				}
			}
		}
	})
}

// probs fills p (Tq×Tk) with the attention probabilities of batch b, query head
// h: masked entries and rows without any key are 0.
func (r geometry[T]) probs(p, q, k []T, b, h int) {
	d := r.d
	for i := range d.QLen {
		row := p[i*d.KLen : (i+1)*d.KLen]
		lo, hi := r.sp.rows(i)
		qi := q[r.qv.at(b, i, h):][:d.HeadDim]
		m := negInf[T]()
		for j := range row {
			row[j] = negInf[T]()
			if j >= lo && j < hi {
				row[j] = dot(qi, k[r.kv.at(b, j, h/r.group):][:d.HeadDim]) * r.scale
				m = max(m, row[j])
			}
		}
		if lo == hi {
			clear(row)
			continue
		}
		var sum T
		for j := range row {
			row[j] = exp(row[j] - m)
			sum += row[j]
		}
		for j := range row {
			row[j] /= sum
		}
	}
}

// SDPA is reference attention as a differentiable op on (float32 or float64)
// tensors of the layout opt.Layout; see [SDPAForward]. Its backward is
// [SDPABackward]. Use [FlashAttention] for anything but tiny shapes.
func SDPA(q, k, v *autodiff.Tensor, opt Options) *autodiff.Tensor {
	return attentionOp("sdpa", q, k, v, opt, false)
}

// attentionOp runs the reference or the flash kernels and records their backward.
func attentionOp(op string, q, k, v *autodiff.Tensor, opt Options, flash bool) *autodiff.Tensor {
	d := ShapeDims(op, opt.Layout, q.Shape(), k.Shape(), v.Shape())
	dt := q.DType()
	if !dt.IsFloat() || k.DType() != dt || v.DType() != dt {
		panic("attention: " + op + ": want float32 or float64 q, k, v of one dtype, have " + dt.String() + ", " + k.DType().String() + ", " + v.DType().String())
	}
	if flash {
		if out := flashOnDevice(op, q, k, v, d, opt); out != nil {
			return out
		}
		// float32 runs the Block's tile kernels (AVX2 where the CPU has them): the
		// same flash algorithm, O(T) memory, several times the speed of the
		// generic loops below, which float64 and decoding steps keep.
		if dt == autodiff.Float32 && d.VDim == d.HeadDim && d.QLen >= tiledMinRows {
			return tiledAttention(q, k, v, opt)
		}
	}
	var start time.Time
	if metal.Profiling() {
		start = time.Now()
	}
	out := autodiff.Empty(dt, d.outShape(opt.Layout)...)
	// The log-sum-exp is what the flash backward needs of the forward: O(B·H·Tq).
	tracked := q.Tape() != nil || k.Tape() != nil || v.Tape() != nil
	var lse32 []float32
	var lse64 []float64
	if dt == autodiff.Float32 {
		if flash && tracked {
			lse32 = make([]float32, d.Batch*d.QHeads*d.QLen)
		}
		runForward(flash, out.Float32s(), lse32, q.Float32s(), k.Float32s(), v.Float32s(), d, opt)
	} else {
		if flash && tracked {
			lse64 = make([]float64, d.Batch*d.QHeads*d.QLen)
		}
		runForward(flash, out.Float64s(), lse64, q.Float64s(), k.Float64s(), v.Float64s(), d, opt)
	}
	path := metal.PathReference
	if flash {
		path = metal.PathGo
	}
	if !start.IsZero() {
		metal.RecordOp(op, path, time.Since(start), int64(q.Len()+k.Len()+v.Len()+out.Len())*int64(dt.Size()))
	}
	return autodiff.Record(out, op, func(g *autodiff.Tensor) {
		if !autodiff.NeedsGrad(q) && !autodiff.NeedsGrad(k) && !autodiff.NeedsGrad(v) {
			return
		}
		var start time.Time
		if metal.Profiling() {
			start = time.Now()
		}
		dq, dk, dv := autodiff.Empty(dt, q.Shape()...), autodiff.Empty(dt, k.Shape()...), autodiff.Empty(dt, v.Shape()...)
		if dt == autodiff.Float32 {
			runBackward(flash, dq.Float32s(), dk.Float32s(), dv.Float32s(), q.Float32s(), k.Float32s(), v.Float32s(), out.Float32s(), g.Float32s(), lse32, d, opt)
		} else {
			runBackward(flash, dq.Float64s(), dk.Float64s(), dv.Float64s(), q.Float64s(), k.Float64s(), v.Float64s(), out.Float64s(), g.Float64s(), lse64, d, opt)
		}
		if !start.IsZero() {
			metal.RecordOp(op+"_backward", path, time.Since(start), int64(2*(q.Len()+k.Len()+v.Len()+2*out.Len()))*int64(dt.Size()))
		}
		give := func(x, gx *autodiff.Tensor) {
			if autodiff.NeedsGrad(x) {
				autodiff.Accumulate(x, func() *autodiff.Tensor { return gx })
			} else {
				gx.Release()
			}
		}
		give(q, dq)
		give(k, dk)
		give(v, dv)
	}, q, k, v)
}

func runForward[T Float](flash bool, out, lse, q, k, v []T, d Dims, opt Options) {
	if flash {
		FlashForward(out, lse, q, k, v, d, opt)
	} else {
		SDPAForward(out, q, k, v, d, opt)
	}
}

func runBackward[T Float](flash bool, dq, dk, dv, q, k, v, out, dout, lse []T, d Dims, opt Options) {
	if flash {
		FlashBackward(dq, dk, dv, q, k, v, out, dout, lse, d, opt)
	} else {
		SDPABackward(dq, dk, dv, q, k, v, dout, d, opt)
	}
}
