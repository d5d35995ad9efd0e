package layers

import (
	"time"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/autodiff/gemm"
	"github.com/mlxtrain/mlxtrain/metal"
)

// The device (Metal, or the simulator) paths of the fused layer ops: each asks
// its registry entry and, when the device implementation applies and the
// tensors live in the device's memory, records its launches without waiting.

var (
	rmsNormOp   = metal.Kernels.Register("rms_norm", []string{"rows", "dim"}, metal.DeviceImpl("rms_norm", normSelfTest(false)), &metal.Impl{Path: metal.PathGo})
	layerNormOp = metal.Kernels.Register("layer_norm", []string{"rows", "dim"}, metal.DeviceImpl("layer_norm", normSelfTest(true)), &metal.Impl{Path: metal.PathGo})
	swigluOp    = metal.Kernels.Register("swiglu", []string{"n"}, metal.DeviceImpl("swiglu", swigluSelfTest), &metal.Impl{Path: metal.PathGo})
)

func buf(t *autodiff.Tensor) *metal.Buffer {
	if t == nil {
		return nil
	}
	return t.Buffer()
}

// linearDevice writes y = x·Wᵀ + b on d: the product into y (no bias) or into a
// scratch tensor that the bias row is then added to.
func linearDevice(d metal.Compute, y, x, w, b *autodiff.Tensor, rows, in, out int) error {
	if b == nil {
		return autodiff.MatMulDevice(d, y, x, w, rows, out, in, false, true)
	}
	t := autodiff.Empty(autodiff.Float32, rows, out)
	defer t.Release() // back to the pool once the launches using it complete
	if err := autodiff.MatMulDevice(d, t, x, w, rows, out, in, false, true); err != nil {
		return err
	}
	return metal.RunBinary(d, metal.BinaryAdd, y.Buffer(), t.Buffer(), b.Buffer(), rows*out, out)
}

// linearOnDevice returns the device for a linear op of these sizes, or nil.
func linearOnDevice(rows, in, out int, ts ...*autodiff.Tensor) metal.Compute {
	return autodiff.DeviceFor(gemm.MatMulOp(), ts, rows, out, in)
}

func normDevice(d metal.Compute, layer bool, y, x, w, b, mean, rstd *autodiff.Tensor, rows, dim int, eps float64) error {
	if layer {
		return metal.RunLayerNorm(d, y.Buffer(), mean.Buffer(), rstd.Buffer(), x.Buffer(), buf(w), buf(b), rows, dim, float32(eps))
	}
	return metal.RunRMSNorm(d, y.Buffer(), rstd.Buffer(), x.Buffer(), buf(w), rows, dim, float32(eps))
}

func normBackwardDevice(d metal.Compute, layer bool, dx, dw, db, g, x, w, mean, rstd *autodiff.Tensor, rows, dim int) error {
	if layer {
		return metal.RunLayerNormBackward(d, buf(dx), buf(dw), buf(db), g.Buffer(), x.Buffer(), buf(w), mean.Buffer(), rstd.Buffer(), rows, dim)
	}
	return metal.RunRMSNormBackward(d, buf(dx), buf(dw), g.Buffer(), x.Buffer(), buf(w), rstd.Buffer(), rows, dim)
}

// tryDevice runs a device path: true when its launches were recorded.
func tryDevice(op string, d metal.Compute, run func(metal.Compute) error) bool {
	return d != nil && autodiff.Launched(op, run(d))
}

func normSelfTest(layer bool) func() error {
	return func() error {
		return autodiff.DeviceSelfTest(func(d metal.Compute) ([]*autodiff.Tensor, error) {
			r := autodiff.SelfTestRand()
			const rows, dim = 75, 37 // two chunks of rows for the weight gradient
			x, g := autodiff.RandomTensor(r, -2, 2, rows, dim), autodiff.RandomTensor(r, -1, 1, rows, dim)
			w, b := autodiff.RandomTensor(r, 0.5, 1.5, dim), autodiff.RandomTensor(r, -1, 1, dim)
			defer func() {
				for _, t := range []*autodiff.Tensor{x, g, w, b} {
					t.Release()
				}
			}()
			if !layer {
				b.Release()
				b = autodiff.Empty(autodiff.Float32, 1) // not used
			}
			y, dx, dw := autodiff.Empty(autodiff.Float32, rows, dim), autodiff.Empty(autodiff.Float32, rows, dim), autodiff.Zeros(autodiff.Float32, dim)
			db, mean, rstd := autodiff.Zeros(autodiff.Float32, dim), autodiff.Empty(autodiff.Float32, rows), autodiff.Empty(autodiff.Float32, rows)
			defer mean.Release()
			defer rstd.Release()
			outs := []*autodiff.Tensor{y, dx, dw}
			bias := b
			if layer {
				outs = append(outs, db)
			} else {
				db.Release()
				db, bias = nil, nil
			}
			if d == nil {
				if layer {
					LayerNormForward(y.Float32s(), x.Float32s(), w.Float32s(), bias.Float32s(), mean.Float32s(), rstd.Float32s(), dim, 1e-5)
					LayerNormBackward(dx.Float32s(), dw.Float32s(), db.Float32s(), g.Float32s(), x.Float32s(), w.Float32s(), mean.Float32s(), rstd.Float32s(), dim)
				} else {
					RMSNormForward(y.Float32s(), x.Float32s(), w.Float32s(), rstd.Float32s(), dim, 1e-5)
					RMSNormBackward(dx.Float32s(), dw.Float32s(), g.Float32s(), x.Float32s(), w.Float32s(), rstd.Float32s(), dim)
				}
				return outs, nil
			}
			if err := normDevice(d, layer, y, x, w, bias, mean, rstd, rows, dim, 1e-5); err != nil {
				return outs, err
			}
			return outs, normBackwardDevice(d, layer, dx, dw, db, g, x, w, mean, rstd, rows, dim)
		})()
	}
}

func swigluSelfTest() error {
	return autodiff.DeviceSelfTest(func(d metal.Compute) ([]*autodiff.Tensor, error) {
		r := autodiff.SelfTestRand()
		const n = 301
		gate, up, g := autodiff.RandomTensor(r, -4, 4, n), autodiff.RandomTensor(r, -2, 2, n), autodiff.RandomTensor(r, -1, 1, n)
		defer func() {
			for _, t := range []*autodiff.Tensor{gate, up, g} {
				t.Release()
			}
		}()
		y, dg, du := autodiff.Empty(autodiff.Float32, n), autodiff.Empty(autodiff.Float32, n), autodiff.Empty(autodiff.Float32, n)
		outs := []*autodiff.Tensor{y, dg, du}
		if d == nil {
			SwiGLUForward(y.Float32s(), gate.Float32s(), up.Float32s())
			SwiGLUBackward(dg.Float32s(), du.Float32s(), g.Float32s(), gate.Float32s(), up.Float32s())
			return outs, nil
		}
		if err := metal.RunSwiGLU(d, y.Buffer(), gate.Buffer(), up.Buffer(), n); err != nil {
			return outs, err
		}
		return outs, metal.RunSwiGLUBackward(d, dg.Buffer(), du.Buffer(), g.Buffer(), gate.Buffer(), up.Buffer(), n)
	})()
}

// opTimer times an op for the profile (MLXTRAIN_PROFILE).
type opTimer struct{ start time.Time }

func startOp() opTimer {
	if metal.Profiling() {
		return opTimer{time.Now()}
	}
	return opTimer{}
}

// done records the op on the device path when onDevice, else on the Go path.
func (o opTimer) done(op string, onDevice bool, bytes int) {
	if o.start.IsZero() {
		return
	}
	path := metal.PathGo
	if onDevice {
		path = metal.PathMetal
	}
	metal.RecordOp(op, path, time.Since(o.start), int64(bytes))
}
