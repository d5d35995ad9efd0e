package autodiff

import "github.com/mlxtrain/mlxtrain/metal"

// The device path of the reductions the row and column kernels do not cover:
// maxima, minima and variances, sums and means over middle or several separate
// axes, SumTo over any broadcast axes, and the backward of every reduction
// (reduce2.metal).

var reduceStridedOp = metal.Kernels.Register("reduce_strided", []string{"n"}, metal.DeviceImpl("reduce_strided", reduceStridedSelfTest), &metal.Impl{Path: metal.PathGo})

var redMetalOps = [...]metal.ReduceOp{redSum: metal.ReduceSum, redMean: metal.ReduceMean, redMax: metal.ReduceMax, redMin: metal.ReduceMin, redVar: metal.ReduceVar}

// redAux returns the tensor a reduction's backward needs from its device
// forward: the winners' indices (int32) of a maximum or minimum, the means of a
// variance; nil for sums and means.
func redAux(kind redKind, p *redPlan) *Tensor {
	switch kind {
	case redMax, redMin:
		return Empty(Int32, p.k)
	case redVar:
		return Empty(Float32, p.k)
	}
	return nil
}

// reduceStridedDevice runs the reduction of x over the plan's axes into out (and
// aux, from redAux) on d; errNotHere when its layout does not fit the kernels.
func reduceStridedDevice(kind redKind, p *redPlan, out, x, aux *Tensor, ddof int, d metal.Compute) error {
	if !metal.ReduceLayoutFits(p.in, p.mask) {
		return errNotHere
	}
	if kind == redVar {
		return metal.RunVarStrided(d, out.buf, aux.buf, x.buf, p.in, p.mask, ddof)
	}
	var arg *metal.Buffer
	if aux != nil {
		arg = aux.buf
	}
	return metal.RunReduceStrided(d, redMetalOps[kind], out.buf, arg, x.buf, p.in, p.mask)
}

// reduceBackwardDevice writes dx, the gradient of the reduction for g, on d.
func reduceBackwardDevice(kind redKind, p *redPlan, dx, g, x, aux *Tensor, ddof int, d metal.Compute) error {
	if !metal.ReduceLayoutFits(p.in, p.mask) {
		return errNotHere
	}
	var ab *metal.Buffer
	if aux != nil {
		ab = aux.buf
	}
	return metal.RunReduceStridedBackward(d, redMetalOps[kind], dx.buf, g.buf, x.buf, ab, p.in, p.mask, ddof)
}

// redSavedFrom reads what the CPU backward needs from a device forward's aux.
func redSavedFrom(kind redKind, aux *Tensor) redSaved {
	var s redSaved
	switch kind {
	case redMax, redMin:
		s.arg = append([]int32(nil), aux.Int32s()...)
	case redVar:
		s.mean = aux.Float64Values()
	}
	return s
}

// sumToMask marks the axes of from that SumTo to shape sums over.
func sumToMask(from, shape []int) []bool {
	lead := len(from) - len(shape)
	mask := make([]bool, len(from))
	for i, d := range from {
		mask[i] = i < lead || shape[i-lead] == 1 && d != 1
	}
	return mask
}

func reduceStridedSelfTest() error {
	return DeviceSelfTest(func(d metal.Compute) ([]*Tensor, error) {
		r := SelfTestRand()
		x := RandomTensor(r, -2, 2, 5, 9, 7)
		defer x.Release()
		var outs []*Tensor
		for _, axes := range [][]int{{1}, {0, 2}} {
			for _, kind := range []redKind{redSum, redMax, redVar} {
				p := newRedPlan("self-test", x.shape, axes, false)
				out, dx := Empty(Float32, p.out...), Empty(Float32, x.shape...)
				g := RandomTensor(r, -1, 1, p.out...)
				outs = append(outs, out, dx, g)
				if d == nil {
					s := redForward(kind, p, x.Float32s(), out.Float32s(), 1)
					redBackward(kind, p, dx.Float32s(), g.Float32s(), x.Float32s(), s, 1)
					continue
				}
				aux := redAux(kind, p)
				if aux != nil {
					defer aux.Release()
				}
				if err := reduceStridedDevice(kind, p, out, x, aux, 1, d); err != nil {
					return outs, err
				}
				if err := reduceBackwardDevice(kind, p, dx, g, x, aux, 1, d); err != nil {
					return outs, err
				}
			}
		}
		return outs, nil
	})()
}
