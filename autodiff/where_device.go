package autodiff

import "github.com/mlxtrain/mlxtrain/metal"

// The device path of Where and MaskedFill, forward and backward (where.metal):
// the mask stays on the device (float32 or int32), so neither pass waits for it.

var whereOp = metal.Kernels.Register("where", []string{"n"}, metal.DeviceImpl("where", whereSelfTest), &metal.Impl{Path: metal.PathGo})

// whereDevice returns the device for a selection into out from the mask and the
// operands (nil entries skipped), or nil: out's rank must be within the kernel's.
func whereDevice(out, mask *Tensor, ops ...*Tensor) metal.Compute {
	if len(out.shape) > metal.BroadcastMaxRank || mask.dtype != Float32 && mask.dtype != Int32 {
		return nil
	}
	return DeviceFor(whereOp, append([]*Tensor{out, mask}, ops...), out.Len())
}

// whereOn writes out = mask ? a : b on d; a nil operand is the scalar v.
func whereOn(d metal.Compute, out, mask, a, b *Tensor, v float64, sm, sa, sb []int) error {
	if a == nil || b == nil {
		s := Full(Float32, v)
		defer s.Release() // back to the pool once the launch completes
		if a == nil {
			a = s
		} else {
			b = s
		}
	}
	return metal.RunWhere(d, out.buf, mask.buf, a.buf, b.buf, mask.dtype == Float32, out.shape, sm, sa, sb)
}

// maskedGradOn returns g where mask (strides sm in g) is set (keep) or clear,
// 0 elsewhere, summed down to shape, on the device; nil when it cannot run there.
func maskedGradOn(g, mask *Tensor, sm []int, keep bool, shape []int) *Tensor {
	z := Empty(g.dtype, g.shape...)
	d := whereDevice(z, mask, g)
	gs := broadcastStrides(g.shape, g.shape)
	zero := make([]int, len(g.shape))
	if !tryDevice("where", d, func(d metal.Compute) error {
		if keep {
			return whereOn(d, z, mask, g, nil, 0, sm, gs, zero)
		}
		return whereOn(d, z, mask, nil, g, 0, sm, zero, gs)
	}) {
		z.Release()
		return nil
	}
	s := SumTo(z, shape)
	if s != z {
		z.Release()
	}
	return s
}

func whereSelfTest() error {
	return DeviceSelfTest(func(d metal.Compute) ([]*Tensor, error) {
		r := SelfTestRand()
		a, b := RandomTensor(r, -2, 2, 5, 37), RandomTensor(r, -2, 2, 37)
		mf := RandomTensor(r, -1, 1, 5, 1)
		mi := Empty(Int32, 37)
		for i := range mi.Int32s() {
			mi.Int32s()[i] = int32(i % 3)
		}
		mf.Float32s()[2] = 0
		defer releaseAll([]*Tensor{a, b, mf, mi})
		var outs []*Tensor
		for _, m := range []*Tensor{mf, mi} {
			out := Empty(Float32, 5, 37)
			outs = append(outs, out)
			sm, sa, sb := broadcastStrides(m.shape, out.shape), broadcastStrides(a.shape, out.shape), broadcastStrides(b.shape, out.shape)
			if d == nil {
				idxWhereKernel(out.Float32s(), idxMask("self-test", m), a.Float32s(), b.Float32s(), 0, out.shape, sm, sa, sb)
				continue
			}
			if err := whereOn(d, out, m, a, b, 0, sm, sa, sb); err != nil {
				return outs, err
			}
		}
		return outs, nil
	})()
}
