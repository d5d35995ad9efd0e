package quant

import (
	"errors"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// "quantized_grouped_linear" (rows, out): Experts.GroupedLinear, the grouped
// products of a quantized mixture of experts (MLX's gather_qmm). Its device
// implementation runs the forward (with the bias) and the input gradient as one
// launch over every expert each (shaders/quant.metal: qgather_mm_t_f32,
// qgather_mm_f32) and the bias gradient with moe_group_colsum_f32; the CPU
// runs the "quantized_matmul" kernels expert by expert. Thresholds:
// metal.Tunings.
var groupedOp = metal.Kernels.Register("quantized_grouped_linear", []string{"rows", "out"},
	metal.DeviceImpl("quantized_grouped_linear", expertsSelfTest), &metal.Impl{Path: metal.PathGo})

// device returns the accelerator when groupedOp picks its device path for rows
// and every tensor (the stack's included) lives in its memory, else nil.
func (x *Experts) device(ts []*autodiff.Tensor, rows int) metal.Compute {
	d := autodiff.DeviceFor(groupedOp, append(ts, x.Scales, x.Biases), rows, x.Rows)
	if d == nil || !metal.Owns(d, x.Packed.Buffer()) {
		return nil
	}
	return d
}

// onDevice is expert 0's matrix of the stack in device buffers.
func (x *Experts) onDevice() *metal.QuantMatrix {
	return &metal.QuantMatrix{Packed: x.Packed.Buffer(), Scales: x.Scales.Buffer(), Biases: x.Biases.Buffer(),
		N: x.Rows, K: x.Cols, Bits: x.Quant.Bits, GroupSize: x.Quant.GroupSize}
}

// launchGrouped records launch with the offsets of dev, or else uploaded
// from offsets() as int32s; false (after a warning) when it fails, for the
// caller to run the CPU path.
func launchGrouped(op string, offsets func() []int, dev *autodiff.Tensor, launch func(off *metal.Buffer) error) bool {
	if dev == nil {
		o := offsets()
		dev = autodiff.FromInt32(int32s(o), len(o))
		defer dev.Release() // back to the pool once the launches are done
	}
	return autodiff.Launched(op, launch(dev.Buffer()))
}

// groupedDevice records y = in·W_eᵀ + b_e on the device, if it takes it.
func (x *Experts) groupedDevice(y, in, b *autodiff.Tensor, offsets func() []int, off *autodiff.Tensor) bool {
	rows := in.Dim(0)
	d := x.device([]*autodiff.Tensor{y, in, b, off}, rows)
	if d == nil {
		return false
	}
	return launchGrouped("quantized_grouped_linear", offsets, off, func(off *metal.Buffer) error {
		return metal.RunQuantGatherMM(d, y.Buffer(), in.Buffer(), off, bufOf(b), x.onDevice(), rows, x.E)
	})
}

// groupedBackwardDevice records dx = g·W_e and db_e = Σ g_e (either may be
// nil) on the device, if it takes them.
func (x *Experts) groupedBackwardDevice(dx, db, g *autodiff.Tensor, offsets func() []int, off *autodiff.Tensor) bool {
	rows := g.Dim(0)
	d := x.device([]*autodiff.Tensor{dx, db, g, off}, rows)
	if d == nil {
		return false
	}
	return launchGrouped("quantized_grouped_linear_backward", offsets, off, func(off *metal.Buffer) error {
		var err error
		if dx != nil {
			err = metal.RunQuantGatherMMBackward(d, dx.Buffer(), g.Buffer(), off, x.onDevice(), rows, x.E)
		}
		if db != nil && err == nil {
			err = metal.RunMoEGroupColSum(d, db.Buffer(), g.Buffer(), off, rows, x.Rows, x.E)
		}
		return err
	})
}

func int32s(v []int) []int32 {
	out := make([]int32, len(v))
	for i, o := range v {
		out[i] = int32(o)
	}
	return out
}

func bufOf(t *autodiff.Tensor) *metal.Buffer {
	if t == nil {
		return nil
	}
	return t.Buffer()
}

// expertsSelfTest runs the grouped kernels on a stack of 3 experts of 3 and 4
// bits (one without rows, one over a 16-row tile) against the CPU: the forward
// with a bias, the input gradient and the bias gradient.
func expertsSelfTest() error {
	return autodiff.DeviceSelfTest(func(d metal.Compute) ([]*autodiff.Tensor, error) {
		r := autodiff.SelfTestRand()
		offsets := []int{0, 5, 5, 23}
		const rows, n, k = 23, 19, 64
		var outs []*autodiff.Tensor
		for _, p := range []Params{{GroupSize: 32, Bits: 3}, {GroupSize: 64, Bits: 4}} {
			f := autodiff.RandomTensor(r, -1, 1, 3, n, k)
			x, err := QuantizeExperts(p, f)
			f.Release()
			if err != nil {
				return outs, err
			}
			in, g, b := autodiff.RandomTensor(r, -1, 1, rows, k), autodiff.RandomTensor(r, -1, 1, rows, n), autodiff.RandomTensor(r, -1, 1, 3, n)
			y, dx, db := autodiff.Empty(autodiff.Float32, rows, n), autodiff.Empty(autodiff.Float32, rows, k), autodiff.Zeros(autodiff.Float32, 3, n)
			outs = append(outs, y, dx, db)
			if d == nil {
				x.groupedForward(y, in, b, offsets)
				x.groupedBackward(dx, db, g, offsets)
			} else {
				off := autodiff.FromInt32(int32s(offsets), len(offsets))
				err = errors.Join(metal.RunQuantGatherMM(d, y.Buffer(), in.Buffer(), off.Buffer(), b.Buffer(), x.onDevice(), rows, 3),
					metal.RunQuantGatherMMBackward(d, dx.Buffer(), g.Buffer(), off.Buffer(), x.onDevice(), rows, 3),
					metal.RunMoEGroupColSum(d, db.Buffer(), g.Buffer(), off.Buffer(), rows, n, 3),
					d.Synchronize()) // the launches read the stack: release it once they are done
				off.Release()
			}
			in.Release()
			g.Release()
			b.Release()
			x.Packed.Release()
			x.Scales.Release()
			x.Biases.Release()
			if err != nil {
				return outs, err
			}
		}
		return outs, nil
	})()
}
