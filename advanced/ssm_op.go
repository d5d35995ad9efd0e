package advanced

import (
	"fmt"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// SSMOptions tunes [SelectiveScan].
type SSMOptions struct {
	// Chunk is the checkpoint interval of the backward (0: [SSMChunk] of the
	// length). It changes memory and speed, not the result.
	Chunk int
	// H0 (batch, inner, state) is the state before the first step; nil means zeros.
	// It is a constant: it must not be tracked by a tape.
	H0 *autodiff.Tensor
	// Final, when not nil (batch, inner, state), receives the state after the last
	// step, to continue the sequence with [SelectiveScanStep] or another scan.
	Final *autodiff.Tensor
}

// SelectiveScan is the differentiable selective scan (see [SelectiveScanForward]):
// x and dt (batch, length, inner), A (inner, state), B and C (batch, length,
// state), D (inner) or nil; it returns y (batch, length, inner). The backward is
// fused ([SelectiveScanBackward]) and keeps only chunk-start states.
func SelectiveScan(x, dt, A, B, C, D *autodiff.Tensor, opt SSMOptions) *autodiff.Tensor {
	d := ssmCheckTensors(x, dt, A, B, C, D, opt)
	chunk := opt.Chunk
	if chunk <= 0 {
		chunk = SSMChunk(d.Len)
	}
	inputs := []*autodiff.Tensor{x, dt, A, B, C}
	if D != nil {
		inputs = append(inputs, D)
	}
	tape := recordingTape(inputs...)
	tm := startTimer()
	y := autodiff.Empty(x.DType(), x.Shape()...)
	var ckpt *autodiff.Tensor
	if tape != nil {
		ckpt = autodiff.Empty(x.DType(), SSMCheckpointLen(d, chunk))
		tape.Own(ckpt)
	}
	dev := ssmDevice(d, x, dt, A, B, C, D, opt.H0, opt.Final, y, ckpt)
	switch {
	case dev != nil && autodiff.Launched("selective_scan", metal.RunSelectiveScan(dev, y.Buffer(), bufOf(ckpt), bufOf(opt.Final),
		ssmBuffers(x, dt, A, B, C, D, opt.H0), d.Batch, d.Len, d.Inner, d.State, chunk)):
		tm.doneOn("selective_scan", metal.PathMetal, (3*x.Len()+2*B.Len())*4)
	case x.DType() == autodiff.Float32:
		SelectiveScanForward(y.Float32s(), optional(ckpt, f32s), optional(opt.Final, f32s), ssmInputs(f32s, x, dt, A, B, C, D, opt.H0), d, chunk)
		tm.done("selective_scan", (3*x.Len()+2*B.Len())*x.DType().Size())
	default:
		SelectiveScanForward(y.Float64s(), optional(ckpt, f64s), optional(opt.Final, f64s), ssmInputs(f64s, x, dt, A, B, C, D, opt.H0), d, chunk)
		tm.done("selective_scan", (3*x.Len()+2*B.Len())*x.DType().Size())
	}
	if tape == nil {
		return y
	}
	return autodiff.Record(y, "selective_scan", func(g *autodiff.Tensor) {
		grads := make([]*autodiff.Tensor, len(inputs))
		need := false
		for i, t := range inputs {
			grads[i] = autodiff.Empty(t.DType(), t.Shape()...)
			need = need || autodiff.NeedsGrad(t)
		}
		if need {
			tm := startTimer()
			dev := ssmDevice(d, append(append([]*autodiff.Tensor{g, ckpt}, inputs...), grads...)...)
			if opt.H0 == nil && dev != nil && autodiff.Launched("selective_scan", ssmBackwardDevice(dev, grads, g, ckpt, x, dt, A, B, C, D, d, chunk)) {
				tm.doneOn("selective_scan_backward", metal.PathMetal, (6*x.Len()+4*B.Len())*4)
			} else if x.DType() == autodiff.Float32 {
				SelectiveScanBackward(ssmGrads(f32s, grads), g.Float32s(), ckpt.Float32s(), ssmInputs(f32s, x, dt, A, B, C, D, opt.H0), d, chunk)
			} else {
				SelectiveScanBackward(ssmGrads(f64s, grads), g.Float64s(), ckpt.Float64s(), ssmInputs(f64s, x, dt, A, B, C, D, opt.H0), d, chunk)
				tm.done("selective_scan_backward", (6*x.Len()+4*B.Len())*x.DType().Size())
			}
		}
		for i, t := range inputs {
			if autodiff.NeedsGrad(t) {
				hand(t, grads[i])
			} else {
				grads[i].Release()
			}
		}
	}, inputs...)
}

// ssmBackwardDevice records the scan's backward on the device.
func ssmBackwardDevice(dev metal.Compute, grads []*autodiff.Tensor, g, ckpt, x, dt, A, B, C, D *autodiff.Tensor, d SSMDims, chunk int) error {
	gr := &metal.SSMGradBuffers{X: grads[0].Buffer(), Dt: grads[1].Buffer(), A: grads[2].Buffer(), B: grads[3].Buffer(), C: grads[4].Buffer()}
	if len(grads) > 5 {
		gr.D = grads[5].Buffer()
	}
	return metal.RunSelectiveScanBackward(dev, gr, g.Buffer(), ckpt.Buffer(), ssmBuffers(x, dt, A, B, C, D, nil), d.Batch, d.Len, d.Inner, d.State, chunk)
}

var (
	f32s = (*autodiff.Tensor).Float32s
	f64s = (*autodiff.Tensor).Float64s
)

func ssmInputs[T autodiff.Float](get func(*autodiff.Tensor) []T, x, dt, A, B, C, D, h0 *autodiff.Tensor) SSMInputs[T] {
	return SSMInputs[T]{X: get(x), Dt: get(dt), A: get(A), B: get(B), C: get(C), D: optional(D, get), H0: optional(h0, get)}
}

func ssmGrads[T autodiff.Float](get func(*autodiff.Tensor) []T, g []*autodiff.Tensor) SSMGrads[T] {
	gr := SSMGrads[T]{X: get(g[0]), Dt: get(g[1]), A: get(g[2]), B: get(g[3]), C: get(g[4])}
	if len(g) > 5 {
		gr.D = get(g[5])
	}
	return gr
}

// recordingTape returns the tape that an op on these inputs records on, or nil.
func recordingTape(ts ...*autodiff.Tensor) *autodiff.Tape {
	for _, t := range ts {
		if t != nil && t.Tape() != nil && !autodiff.NeedsGrad(t) {
			return t.Tape()
		}
	}
	return nil
}

func ssmCheckTensors(x, dt, A, B, C, D *autodiff.Tensor, opt SSMOptions) SSMDims {
	shape := func(t *autodiff.Tensor) string {
		if t == nil {
			return "none"
		}
		return fmt.Sprint(t.DType(), t.Shape())
	}
	fail := func(why string) {
		panic(fmt.Sprintf("advanced: selective_scan: %s: x %s, dt %s, A %s, B %s, C %s, D %s, h0 %s, final %s", why,
			shape(x), shape(dt), shape(A), shape(B), shape(C), shape(D), shape(opt.H0), shape(opt.Final)))
	}
	if x.Rank() != 3 || A.Rank() != 2 || !x.DType().IsFloat() {
		fail("want x (batch, length, inner) and A (inner, state) of a float dtype")
	}
	d := SSMDims{Batch: x.Dim(0), Len: x.Dim(1), Inner: x.Dim(2), State: A.Dim(1)}
	same := func(t *autodiff.Tensor, shape ...int) bool {
		if t.DType() != x.DType() || t.Rank() != len(shape) {
			return false
		}
		for i, s := range shape {
			if t.Dim(i) != s {
				return false
			}
		}
		return true
	}
	switch {
	case !same(dt, d.Batch, d.Len, d.Inner) || !same(A, d.Inner, d.State):
		fail("dt must match x, A must be (inner, state)")
	case !same(B, d.Batch, d.Len, d.State) || !same(C, d.Batch, d.Len, d.State):
		fail("B and C must be (batch, length, state)")
	case D != nil && !same(D, d.Inner):
		fail("D must be (inner)")
	case opt.H0 != nil && !same(opt.H0, d.Batch, d.Inner, d.State), opt.Final != nil && !same(opt.Final, d.Batch, d.Inner, d.State):
		fail("states must be (batch, inner, state)")
	case opt.H0 != nil && opt.H0.Tape() != nil:
		fail("h0 is tracked by a tape, but the scan gives it no gradient")
	}
	return d
}
