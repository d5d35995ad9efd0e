package autodiff

import "github.com/mlxtrain/mlxtrain/metal"

// The device path of Cumsum, forward and backward (a cumsum the other way):
// the sum scan of shaders/scan.metal over the axis viewed as (a, n, b).

var cumsumOp = metal.Kernels.Register("cumsum", []string{"n"}, metal.DeviceImpl("cumsum", cumsumSelfTest), &metal.Impl{Path: metal.PathGo})

// cumsumDevice records out = cumsum(x) on the device, if it takes it.
func cumsumDevice(out, x *Tensor, a, n, b int, reverse bool) bool {
	return tryDevice("cumsum", DeviceFor(cumsumOp, []*Tensor{out, x}, x.Len()), func(d metal.Compute) error {
		return metal.RunScan(d, metal.ScanSum, out.buf, x.buf, metal.ScanLayout{Outer: a, N: n, Inner: b, Reverse: reverse})
	})
}

// cumsumSelfTest compares the device with the CPU on a middle axis longer than
// a threadgroup's block and on many strided rows (a thread each), both ways.
func cumsumSelfTest() error {
	return DeviceSelfTest(func(d metal.Compute) ([]*Tensor, error) {
		r := SelfTestRand()
		var outs []*Tensor
		for _, s := range [][3]int{{2, 1500, 3}, {1, 40, 1100}} {
			a, n, b := s[0], s[1], s[2]
			x := RandomTensor(r, -1, 1, a, n, b)
			defer x.Release()
			for _, reverse := range []bool{false, true} {
				out := Empty(Float32, a, n, b)
				outs = append(outs, out)
				if d == nil {
					CumsumAxis(out.Float32s(), x.Float32s(), a, n, b, reverse)
					continue
				}
				if err := metal.RunScan(d, metal.ScanSum, out.buf, x.buf, metal.ScanLayout{Outer: a, N: n, Inner: b, Reverse: reverse}); err != nil {
					return outs, err
				}
			}
		}
		return outs, nil
	})()
}
