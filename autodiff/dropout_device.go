package autodiff

import "github.com/mlxtrain/mlxtrain/metal"

// The device path of Dropout (dropout.metal): the kernel draws the CPU's Philox
// stream itself, so the mask is the same on both and never crosses over.

var dropoutOp = metal.Kernels.Register("dropout", []string{"n"}, metal.DeviceImpl("dropout", dropoutSelfTest), &metal.Impl{Path: metal.PathGo})

func dropoutSelfTest() error {
	return DeviceSelfTest(func(d metal.Compute) ([]*Tensor, error) {
		r := SelfTestRand()
		const n = 301
		x := RandomTensor(r, -2, 2, n)
		defer x.Release()
		var outs []*Tensor
		for _, c := range []struct {
			seed, off uint64
			p         float64
		}{{5, 3, 0.3}, {1 << 40, 1<<32 - 7, 0.8}} {
			out := Empty(Float32, n)
			outs = append(outs, out)
			if d == nil {
				keep := make([]uint64, (n+63)/64)
				DropoutMask(keep, c.seed, c.off, n, c.p)
				DropoutKernel(out.Float32s(), x.Float32s(), keep, float32(1/(1-c.p)))
				continue
			}
			if err := metal.RunDropout(d, out.buf, x.buf, n, c.seed, c.off, dropoutThreshold(c.p), float32(1/(1-c.p))); err != nil {
				return outs, err
			}
		}
		return outs, nil
	})()
}
