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
// gradients. The thresholds are estimates (no Mac has measured them);
// MLXTRAIN_CAUSAL_CONV1D_MIN_ROWS and MLXTRAIN_METAL_MIN override them.
var convOp = metal.Kernels.Register("causal_conv1d", []string{"rows", "channels"},
	&metal.Impl{Path: metal.PathMetal, Available: metal.Offloading, Min: []int{256, 64}, SelfTest: convSelfTest},
	&metal.Impl{Path: metal.PathGo})

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
