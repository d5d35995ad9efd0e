package advanced

import (
	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// "linear_scan" (n elements): the device path of LinearRecurrence, forward and
// backward (the affine scan of shaders/scan.metal).
var linearOp = metal.Kernels.Register("linear_scan", []string{"n"},
	metal.DeviceImpl("linear_scan", linearSelfTest), &metal.Impl{Path: metal.PathGo})

// linearDevice records h = the recurrence on the device, if it takes it.
func linearDevice(h, a, b, h0 *autodiff.Tensor, outer, n, inner int) bool {
	d := autodiff.DeviceFor(linearOp, []*autodiff.Tensor{h, a, b, h0}, a.Len())
	if d == nil {
		return false
	}
	start := profileStart()
	if !autodiff.Launched("linear_scan", metal.RunLinearScan(d, h.Buffer(), a.Buffer(), b.Buffer(), bufOf(h0),
		metal.ScanLayout{Outer: outer, N: n, Inner: inner})) {
		return false
	}
	profiled("linear_scan", start, 3*a.Len()*4)
	return true
}

// linearBackwardDevice records the gradients on the device, if it takes them.
func linearBackwardDevice(da, db, dh0, g, a, h, h0 *autodiff.Tensor, outer, n, inner int) bool {
	d := autodiff.DeviceFor(linearOp, []*autodiff.Tensor{da, db, dh0, g, a, h, h0}, a.Len())
	if d == nil {
		return false
	}
	start := profileStart()
	if !autodiff.Launched("linear_scan", metal.RunLinearScanBackward(d, da.Buffer(), db.Buffer(), bufOf(dh0), g.Buffer(), a.Buffer(),
		h.Buffer(), bufOf(h0), metal.ScanLayout{Outer: outer, N: n, Inner: inner})) {
		return false
	}
	profiled("linear_scan_backward", start, 5*a.Len()*4)
	return true
}

// linearSelfTest compares the kernels with the CPU on a strided recurrence
// longer than a threadgroup's block, with h0, forward and every gradient.
func linearSelfTest() error {
	return autodiff.DeviceSelfTest(func(d metal.Compute) ([]*autodiff.Tensor, error) {
		r := autodiff.SelfTestRand()
		const outer, n, inner = 2, 1100, 3
		a, b := autodiff.RandomTensor(r, -1, 1, outer, n, inner), autodiff.RandomTensor(r, -1, 1, outer, n, inner)
		g, h0 := autodiff.RandomTensor(r, -1, 1, outer, n, inner), autodiff.RandomTensor(r, -1, 1, outer, inner)
		defer func() {
			for _, t := range []*autodiff.Tensor{a, b, g, h0} {
				t.Release()
			}
		}()
		h, da, db := autodiff.Empty(autodiff.Float32, outer, n, inner), autodiff.Empty(autodiff.Float32, outer, n, inner), autodiff.Empty(autodiff.Float32, outer, n, inner)
		dh0 := autodiff.Empty(autodiff.Float32, outer, inner)
		outs := []*autodiff.Tensor{h, da, db, dh0}
		if d == nil {
			linearForward(h.Float32s(), a.Float32s(), b.Float32s(), h0.Float32s(), outer, n, inner)
			linearBackward(da.Float32s(), db.Float32s(), dh0.Float32s(), g.Float32s(), a.Float32s(), h.Float32s(), h0.Float32s(), outer, n, inner)
			return outs, nil
		}
		l := metal.ScanLayout{Outer: outer, N: n, Inner: inner}
		if err := metal.RunLinearScan(d, h.Buffer(), a.Buffer(), b.Buffer(), h0.Buffer(), l); err != nil {
			return outs, err
		}
		return outs, metal.RunLinearScanBackward(d, da.Buffer(), db.Buffer(), dh0.Buffer(), g.Buffer(), a.Buffer(), h.Buffer(), h0.Buffer(), l)
	})()
}
