package advanced

import (
	"time"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// The device (Metal, or the simulator) paths of this package's ops: the kernels
// of shaders/conv1d.metal, on tensors in the device's memory (all of them while
// an accelerator is open).
//
// "causal_conv1d" (rows = batch·length, channels): the forward and its three
// gradients. The thresholds are metal.Tunings' estimates (no Mac has measured
// them); MLXTRAIN_CAUSAL_CONV1D_MIN_ROWS and MLXTRAIN_METAL_MIN override them.
var convOp = metal.Kernels.Register("causal_conv1d", []string{"rows", "channels"},
	metal.DeviceImpl("causal_conv1d", convSelfTest), &metal.Impl{Path: metal.PathGo})

// profiled records a device op's encoding time for MLXTRAIN_PROFILE.
func profiled(op string, start time.Time, bytes int) {
	if !start.IsZero() {
		metal.RecordOp(op, metal.PathMetal, time.Since(start), int64(bytes))
	}
}

func profileStart() time.Time {
	if metal.Profiling() {
		return time.Now()
	}
	return time.Time{}
}

// convDevice records y = conv(x, w) + bias on the device, if it takes it.
func convDevice(y, x, w, bias *autodiff.Tensor, batch, length, channels, k int) bool {
	d := autodiff.DeviceFor(convOp, []*autodiff.Tensor{y, x, w, bias}, batch*length, channels)
	if d == nil {
		return false
	}
	start := profileStart()
	var bb *metal.Buffer
	if bias != nil {
		bb = bias.Buffer()
	}
	if !autodiff.Launched("causal_conv1d", metal.RunConv1d(d, y.Buffer(), x.Buffer(), w.Buffer(), bb, batch, length, channels, k)) {
		return false
	}
	profiled("causal_conv1d", start, 8*x.Len())
	return true
}

// convBackwardDevice records the gradients on the device, if it takes them.
// db is required with dw (the kernel computes both; a nil db gets scratch).
func convBackwardDevice(dx, dw, db, g, x, w *autodiff.Tensor, batch, length, channels, k int) bool {
	if dw != nil && k > metal.Conv1dMaxK {
		return false
	}
	d := autodiff.DeviceFor(convOp, []*autodiff.Tensor{dx, dw, db, g, x, w}, batch*length, channels)
	if d == nil {
		return false
	}
	start := profileStart()
	buf := func(t *autodiff.Tensor) *metal.Buffer {
		if t == nil {
			return nil
		}
		return t.Buffer()
	}
	if dw != nil && db == nil {
		scratch := autodiff.Empty(autodiff.Float32, channels)
		defer scratch.Release() // back to the pool once the launch is done
		db = scratch
	}
	if dw == nil && db != nil {
		scratch := autodiff.Empty(autodiff.Float32, channels, k)
		defer scratch.Release()
		dw = scratch
	}
	if !autodiff.Launched("causal_conv1d", metal.RunConv1dBackward(d, buf(dx), buf(dw), buf(db), g.Buffer(), x.Buffer(), w.Buffer(), batch, length, channels, k)) {
		return false
	}
	profiled("causal_conv1d_backward", start, 12*x.Len())
	return true
}

// convSelfTest compares the kernels with the CPU on a small convolution with
// bias, forward and every gradient.
func convSelfTest() error {
	return autodiff.DeviceSelfTest(func(d metal.Compute) ([]*autodiff.Tensor, error) {
		r := autodiff.SelfTestRand()
		const batch, length, channels, k = 2, 37, 19, 4
		x, g := autodiff.RandomTensor(r, -1, 1, batch, length, channels), autodiff.RandomTensor(r, -1, 1, batch, length, channels)
		w, bias := autodiff.RandomTensor(r, -1, 1, channels, k), autodiff.RandomTensor(r, -1, 1, channels)
		defer func() {
			for _, t := range []*autodiff.Tensor{x, g, w, bias} {
				t.Release()
			}
		}()
		y, dx := autodiff.Empty(autodiff.Float32, batch, length, channels), autodiff.Empty(autodiff.Float32, batch, length, channels)
		dw, db := autodiff.Empty(autodiff.Float32, channels, k), autodiff.Empty(autodiff.Float32, channels)
		outs := []*autodiff.Tensor{y, dx, dw, db}
		if d == nil {
			CausalConv1dForward(y.Float32s(), x.Float32s(), w.Float32s(), bias.Float32s(), nil, batch, length, channels, k)
			CausalConv1dBackward(dx.Float32s(), dw.Float32s(), db.Float32s(), g.Float32s(), x.Float32s(), w.Float32s(), batch, length, channels, k)
			return outs, nil
		}
		if err := metal.RunConv1d(d, y.Buffer(), x.Buffer(), w.Buffer(), bias.Buffer(), batch, length, channels, k); err != nil {
			return outs, err
		}
		return outs, metal.RunConv1dBackward(d, dx.Buffer(), dw.Buffer(), db.Buffer(), g.Buffer(), x.Buffer(), w.Buffer(), batch, length, channels, k)
	})()
}

// "selective_scan_metal" (rows = batch·inner, state): the device path of
// SelectiveScan, forward and backward (the CPU paths are op selective_scan's).
var ssmDevOp = metal.Kernels.Register("selective_scan_metal", []string{"channels", "state"},
	metal.DeviceImpl("selective_scan_metal", ssmSelfTest), &metal.Impl{Path: metal.PathGo})

func bufOf(t *autodiff.Tensor) *metal.Buffer {
	if t == nil {
		return nil
	}
	return t.Buffer()
}

func ssmBuffers(x, dt, A, B, C, D, h0 *autodiff.Tensor) *metal.SSMBuffers {
	return &metal.SSMBuffers{X: x.Buffer(), Dt: dt.Buffer(), A: A.Buffer(), B: B.Buffer(), C: C.Buffer(), D: bufOf(D), H0: bufOf(h0)}
}

// ssmDevice returns the device for a float32 scan of dims, or nil.
func ssmDevice(d SSMDims, ts ...*autodiff.Tensor) metal.Compute {
	if d.State > metal.SSMMaxState || d.Batch*d.Len*d.Inner == 0 || d.State == 0 {
		return nil
	}
	return autodiff.DeviceFor(ssmDevOp, ts, d.Batch*d.Inner, d.State)
}

// ssmSelfTest compares the kernels with the CPU on a small scan with a skip,
// several chunks and a state wider than a SIMD group.
func ssmSelfTest() error {
	return autodiff.DeviceSelfTest(func(dev metal.Compute) ([]*autodiff.Tensor, error) {
		r := autodiff.SelfTestRand()
		d := SSMDims{Batch: 2, Len: 21, Inner: 5, State: 36}
		const chunk = 8
		x, g := autodiff.RandomTensor(r, -1, 1, d.Batch, d.Len, d.Inner), autodiff.RandomTensor(r, -1, 1, d.Batch, d.Len, d.Inner)
		dt := autodiff.RandomTensor(r, 0.01, 0.5, d.Batch, d.Len, d.Inner)
		A := autodiff.RandomTensor(r, -2, -0.1, d.Inner, d.State)
		B, C := autodiff.RandomTensor(r, -1, 1, d.Batch, d.Len, d.State), autodiff.RandomTensor(r, -1, 1, d.Batch, d.Len, d.State)
		D := autodiff.RandomTensor(r, -1, 1, d.Inner)
		ins := []*autodiff.Tensor{x, dt, A, B, C, D}
		defer func() {
			for _, t := range append(ins, g) {
				t.Release()
			}
		}()
		y, ckpt := autodiff.Empty(autodiff.Float32, x.Shape()...), autodiff.Empty(autodiff.Float32, SSMCheckpointLen(d, chunk))
		grads := make([]*autodiff.Tensor, len(ins))
		for i, t := range ins {
			grads[i] = autodiff.Empty(autodiff.Float32, t.Shape()...)
		}
		outs := append([]*autodiff.Tensor{y, ckpt}, grads...)
		if dev == nil {
			in := ssmInputs(f32s, x, dt, A, B, C, D, nil)
			SelectiveScanForward(y.Float32s(), ckpt.Float32s(), nil, in, d, chunk)
			SelectiveScanBackward(ssmGrads(f32s, grads), g.Float32s(), ckpt.Float32s(), in, d, chunk)
			return outs, nil
		}
		in := ssmBuffers(x, dt, A, B, C, D, nil)
		if err := metal.RunSelectiveScan(dev, y.Buffer(), ckpt.Buffer(), nil, in, d.Batch, d.Len, d.Inner, d.State, chunk); err != nil {
			return outs, err
		}
		gr := &metal.SSMGradBuffers{X: grads[0].Buffer(), Dt: grads[1].Buffer(), A: grads[2].Buffer(), B: grads[3].Buffer(), C: grads[4].Buffer(), D: grads[5].Buffer()}
		return outs, metal.RunSelectiveScanBackward(dev, gr, g.Buffer(), ckpt.Buffer(), in, d.Batch, d.Len, d.Inner, d.State, chunk)
	})()
}
