package optim

import (
	"math"
	"sync/atomic"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// deviceUpdates counts the parameter updates launched on the device, so that a
// step's profile entry can say which path it took.
var deviceUpdates atomic.Int64

// adamwOnDevice launches one AdamW update of p (and its moments m, v) on the
// device when adamwOp picks it and every tensor lives there; false means the
// CPU runs it. The hyperparameters are rounded to float32 as AdamWKernel[float32]
// rounds them.
func adamwOnDevice(p, g, m, v *autodiff.Tensor, s metal.AdamWStep) bool {
	d := autodiff.DeviceFor(adamwOp, []*autodiff.Tensor{p, g, m, v}, p.Len())
	if d == nil || p.DType() != autodiff.Float32 {
		return false
	}
	if !autodiff.Launched("adamw", metal.RunAdamW(d, p.Buffer(), g.Buffer(), m.Buffer(), v.Buffer(), p.Len(), s)) {
		return false
	}
	deviceUpdates.Add(1)
	return true
}

func adamwSelfTest() error {
	return autodiff.DeviceSelfTest(func(d metal.Compute) ([]*autodiff.Tensor, error) {
		r := autodiff.SelfTestRand()
		const n = 301
		p, g := autodiff.RandomTensor(r, -1, 1, n), autodiff.RandomTensor(r, -1, 1, n)
		m, v := autodiff.RandomTensor(r, -0.1, 0.1, n), autodiff.RandomTensor(r, 0, 0.01, n)
		defer g.Release()
		s := metal.AdamWStep{LR: 1e-2, Beta1: 0.9, Beta2: 0.98, Eps: 1e-8, WeightDecay: 0.1, BC1: 0.1, BC2: 0.02}
		outs := []*autodiff.Tensor{p, m, v}
		if d == nil {
			adamwGo(p.Float32s(), g.Float32s(), m.Float32s(), v.Float32s(), s.LR/s.BC1, s.Beta1, s.Beta2, s.Eps,
				1/float32(math.Sqrt(float64(s.BC2))), 1-s.LR*s.WeightDecay)
			return outs, nil
		}
		return outs, metal.RunAdamW(d, p.Buffer(), g.Buffer(), m.Buffer(), v.Buffer(), n, s)
	})()
}
