package attention

import (
	"time"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// The device (Metal, or the simulator) paths of flash attention and RoPE, and
// the composite ops: attention.Block's packed CPU kernels run, on a device, as
// the separate projections, RoPE and flash attention, each with its kernel.

var (
	flashOp  = metal.Kernels.Register("flash_attention", []string{"rows", "keys"}, metal.DeviceImpl("flash_attention", flashSelfTest), &metal.Impl{Path: metal.PathGo})
	ropeOp   = metal.Kernels.Register("rope", []string{"n"}, metal.DeviceImpl("rope", ropeSelfTest), &metal.Impl{Path: metal.PathGo})
	packedOp = metal.Kernels.Register("packed_attention", []string{"rows"}, metal.CompositeImpl("packed_attention"), &metal.Impl{Path: metal.PathAsm})
)

func (d Dims) device(opt Options) metal.Attention {
	return metal.Attention{
		Batch: d.Batch, QLen: d.QLen, KLen: d.KLen, QHeads: d.QHeads, KVHeads: d.KVHeads, HeadDim: d.HeadDim, VDim: d.VDim,
		Scale: float32(opt.scale(d.HeadDim)), Causal: opt.Causal, Window: opt.Window, Layout: metal.AttentionLayout(opt.Layout),
	}
}

func (o RoPEOptions) device() metal.RoPEConfig {
	return metal.RoPEConfig{Base: o.base(), Dims: o.Dims, Interleaved: o.Interleaved, Offset: o.Offset, Scale: o.Scale, Layout: metal.AttentionLayout(o.Layout)}
}

// tryDevice runs a device path: true when its launches were recorded.
func tryDevice(op string, d metal.Compute, run func(metal.Compute) error) bool {
	return d != nil && autodiff.Launched(op, run(d))
}

func flashSelfTest() error {
	return autodiff.DeviceSelfTest(func(dev metal.Compute) ([]*autodiff.Tensor, error) {
		r := autodiff.SelfTestRand()
		d := Dims{Batch: 2, QLen: 19, KLen: 19, QHeads: 4, KVHeads: 2, HeadDim: 16, VDim: 16}
		opt := Options{Causal: true}
		q, k, v := autodiff.RandomTensor(r, -1, 1, 2, 19, 4, 16), autodiff.RandomTensor(r, -1, 1, 2, 19, 2, 16), autodiff.RandomTensor(r, -1, 1, 2, 19, 2, 16)
		dout := autodiff.RandomTensor(r, -1, 1, 2, 19, 4, 16)
		lse := autodiff.Empty(autodiff.Float32, 2*4*19)
		defer func() {
			for _, t := range []*autodiff.Tensor{q, k, v, dout, lse} {
				t.Release()
			}
		}()
		out := autodiff.Empty(autodiff.Float32, q.Shape()...)
		dq, dk, dv := autodiff.Empty(autodiff.Float32, q.Shape()...), autodiff.Empty(autodiff.Float32, k.Shape()...), autodiff.Empty(autodiff.Float32, v.Shape()...)
		outs := []*autodiff.Tensor{out, dq, dk, dv}
		if dev == nil {
			FlashForward(out.Float32s(), lse.Float32s(), q.Float32s(), k.Float32s(), v.Float32s(), d, opt)
			FlashBackward(dq.Float32s(), dk.Float32s(), dv.Float32s(), q.Float32s(), k.Float32s(), v.Float32s(), out.Float32s(), dout.Float32s(), lse.Float32s(), d, opt)
			return outs, nil
		}
		a := d.device(opt)
		if err := metal.RunFlashAttention(dev, out.Buffer(), lse.Buffer(), q.Buffer(), k.Buffer(), v.Buffer(), a); err != nil {
			return outs, err
		}
		return outs, metal.RunFlashAttentionBackward(dev, dq.Buffer(), dk.Buffer(), dv.Buffer(), q.Buffer(), k.Buffer(), v.Buffer(), out.Buffer(), dout.Buffer(), lse.Buffer(), a)
	})()
}

func ropeSelfTest() error {
	return autodiff.DeviceSelfTest(func(dev metal.Compute) ([]*autodiff.Tensor, error) {
		r := autodiff.SelfTestRand()
		const b, s, h, d = 2, 7, 3, 10
		x := autodiff.RandomTensor(r, -1, 1, b, s, h, d)
		defer x.Release()
		var outs []*autodiff.Tensor
		for _, opt := range []RoPEOptions{{Offset: 3}, {Dims: 6, Interleaved: true, Base: 500}} {
			y, dx := autodiff.Empty(autodiff.Float32, b, s, h, d), autodiff.Empty(autodiff.Float32, b, s, h, d)
			outs = append(outs, y, dx)
			if dev == nil {
				rope(y.Float32s(), x.Float32s(), b, s, h, d, opt, 1)
				rope(dx.Float32s(), x.Float32s(), b, s, h, d, opt, -1)
				continue
			}
			if err := metal.RunRoPE(dev, y.Buffer(), x.Buffer(), b, s, h, d, opt.device()); err != nil {
				return outs, err
			}
			if err := metal.RunRoPEBackward(dev, dx.Buffer(), x.Buffer(), b, s, h, d, opt.device()); err != nil {
				return outs, err
			}
		}
		return outs, nil
	})()
}

// flashOnDevice is flash attention on the device, recorded with its backward,
// or nil when the CPU runs it.
func flashOnDevice(op string, q, k, v *autodiff.Tensor, d Dims, opt Options) *autodiff.Tensor {
	dev := autodiff.DeviceFor(flashOp, []*autodiff.Tensor{q, k, v}, d.Batch*d.QHeads*d.QLen, d.KLen)
	if dev == nil {
		return nil
	}
	a := d.device(opt)
	var start time.Time
	if metal.Profiling() {
		start = time.Now()
	}
	out := autodiff.Empty(autodiff.Float32, d.outShape(opt.Layout)...)
	lse := autodiff.Empty(autodiff.Float32, d.Batch*d.QHeads*d.QLen)
	if !tryDevice(op, dev, func(dev metal.Compute) error {
		return metal.RunFlashAttention(dev, out.Buffer(), lse.Buffer(), q.Buffer(), k.Buffer(), v.Buffer(), a)
	}) {
		out.Release()
		lse.Release()
		return nil
	}
	if !start.IsZero() {
		metal.RecordOp(op, metal.PathMetal, time.Since(start), int64(q.Len()+k.Len()+v.Len()+out.Len())*4)
	}
	res := autodiff.Record(out, op, func(g *autodiff.Tensor) {
		if !autodiff.NeedsGrad(q) && !autodiff.NeedsGrad(k) && !autodiff.NeedsGrad(v) {
			return
		}
		var start time.Time
		if metal.Profiling() {
			start = time.Now()
		}
		dq, dk, dv := autodiff.Empty(autodiff.Float32, q.Shape()...), autodiff.Empty(autodiff.Float32, k.Shape()...), autodiff.Empty(autodiff.Float32, v.Shape()...)
		path := metal.PathMetal
		if !tryDevice(op, autodiff.DeviceFor(flashOp, []*autodiff.Tensor{g}, d.Batch*d.QHeads*d.QLen, d.KLen), func(dev metal.Compute) error {
			return metal.RunFlashAttentionBackward(dev, dq.Buffer(), dk.Buffer(), dv.Buffer(), q.Buffer(), k.Buffer(), v.Buffer(), out.Buffer(), g.Buffer(), lse.Buffer(), a)
		}) {
			path = metal.PathGo
			FlashBackward(dq.Float32s(), dk.Float32s(), dv.Float32s(), q.Float32s(), k.Float32s(), v.Float32s(), out.Float32s(), g.Float32s(), lse.Float32s(), d, opt)
		}
		if !start.IsZero() {
			metal.RecordOp(op+"_backward", path, time.Since(start), int64(2*(q.Len()+k.Len()+v.Len()+2*out.Len()))*4)
		}
		for _, p := range [][2]*autodiff.Tensor{{q, dq}, {k, dk}, {v, dv}} {
			x, gx := p[0], p[1]
			if autodiff.NeedsGrad(x) {
				autodiff.Accumulate(x, func() *autodiff.Tensor { return gx })
			} else {
				gx.Release()
			}
		}
	}, q, k, v)
	autodiff.Own(res, lse)
	return res
}

// ropeOnDevice is RoPE on the device, recorded with its backward, or nil when
// the CPU runs it.
func ropeOnDevice(x *autodiff.Tensor, b, s, h, d int, opt RoPEOptions) *autodiff.Tensor {
	dev := autodiff.DeviceFor(ropeOp, []*autodiff.Tensor{x}, x.Len())
	if dev == nil {
		return nil
	}
	var start time.Time
	if metal.Profiling() {
		start = time.Now()
	}
	c := opt.device()
	out := autodiff.Empty(autodiff.Float32, x.Shape()...)
	if !tryDevice("rope", dev, func(dev metal.Compute) error { return metal.RunRoPE(dev, out.Buffer(), x.Buffer(), b, s, h, d, c) }) {
		out.Release()
		return nil
	}
	if !start.IsZero() {
		metal.RecordOp("rope", metal.PathMetal, time.Since(start), int64(2*x.Len()*4))
	}
	return autodiff.Record(out, "rope", func(g *autodiff.Tensor) {
		autodiff.Accumulate(x, func() *autodiff.Tensor {
			dx := autodiff.Empty(autodiff.Float32, x.Shape()...)
			if !tryDevice("rope", autodiff.DeviceFor(ropeOp, []*autodiff.Tensor{g}, x.Len()), func(dev metal.Compute) error {
				return metal.RunRoPEBackward(dev, dx.Buffer(), g.Buffer(), b, s, h, d, c)
			}) {
				rope(dx.Float32s(), g.Float32s(), b, s, h, d, opt, -1)
			}
			return dx
		})
	}, x)
}
