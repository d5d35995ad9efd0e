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

// "moe_dispatch" and "moe_combine" (tokens, dim): the gather into expert order
// and the weighted scatter back (shaders/moe.metal), forward and backward. The
// routing's index arrays are uploaded per call (tokens·k int32s).
var (
	moeDispatchOp = metal.Kernels.Register("moe_dispatch", []string{"tokens", "dim"},
		&metal.Impl{Path: metal.PathMetal, Available: metal.Offloading, Min: []int{64, 64}, SelfTest: moeSelfTest},
		&metal.Impl{Path: metal.PathGo})
	moeCombineOp = metal.Kernels.Register("moe_combine", []string{"tokens", "dim"},
		&metal.Impl{Path: metal.PathMetal, Available: metal.Offloading, Min: []int{64, 64}, SelfTest: moeSelfTest},
		&metal.Impl{Path: metal.PathGo})
)

// indices uploads a routing's index array as an int32 tensor (device memory
// while an accelerator is open).
func indices(v []int32) *autodiff.Tensor { return autodiff.FromInt32(v, len(v)) }

func moeDevice(op *metal.Op, r *Routing, dim int, ts ...*autodiff.Tensor) metal.Compute {
	if r.Rows() == 0 || r.Tokens == 0 || dim == 0 {
		return nil
	}
	return autodiff.DeviceFor(op, ts, r.Tokens, dim)
}

// moeSelfTest compares the dispatch and combine kernels with the CPU on a
// small routing with dropped pairs.
func moeSelfTest() error {
	return autodiff.DeviceSelfTest(func(dev metal.Compute) ([]*autodiff.Tensor, error) {
		rng := autodiff.SelfTestRand()
		const tokens, k, dim = 13, 2, 37
		experts := make([]int32, tokens*k)
		for i := range experts {
			experts[i] = int32(rng.IntN(4))
		}
		r := NewRouting(experts, tokens, k, 4, 5)
		rows := r.Rows()
		x, dxs := autodiff.RandomTensor(rng, -1, 1, tokens, dim), autodiff.RandomTensor(rng, -1, 1, rows, dim)
		ys, gates, dy := autodiff.RandomTensor(rng, -1, 1, rows, dim), autodiff.RandomTensor(rng, 0, 1, tokens, k), autodiff.RandomTensor(rng, -1, 1, tokens, dim)
		pos, tok := indices(r.Pos), indices(r.Token)
		defer func() {
			for _, t := range []*autodiff.Tensor{x, dxs, ys, gates, dy, pos, tok} {
				t.Release()
			}
		}()
		xs, dx, y := autodiff.Empty(autodiff.Float32, rows, dim), autodiff.Empty(autodiff.Float32, tokens, dim), autodiff.Empty(autodiff.Float32, tokens, dim)
		dys, dg := autodiff.Empty(autodiff.Float32, rows, dim), autodiff.Empty(autodiff.Float32, tokens, k)
		outs := []*autodiff.Tensor{xs, dx, y, dys, dg}
		if dev == nil {
			DispatchForward(xs.Float32s(), x.Float32s(), r.Token, dim)
			DispatchBackward(dx.Float32s(), dxs.Float32s(), r.Pos, k, dim)
			CombineForward(y.Float32s(), ys.Float32s(), gates.Float32s(), r.Pos, k, dim)
			CombineBackward(dys.Float32s(), dg.Float32s(), dy.Float32s(), ys.Float32s(), gates.Float32s(), r.Pos, k, dim)
			return outs, nil
		}
		for _, err := range []error{
			metal.RunMoEDispatch(dev, xs.Buffer(), x.Buffer(), tok.Buffer(), tokens, rows, dim),
			metal.RunMoEDispatchBackward(dev, dx.Buffer(), dxs.Buffer(), pos.Buffer(), tokens, k, rows, dim),
			metal.RunMoECombine(dev, y.Buffer(), ys.Buffer(), gates.Buffer(), pos.Buffer(), tokens, k, rows, dim),
			metal.RunMoECombineBackward(dev, dys.Buffer(), dg.Buffer(), dy.Buffer(), ys.Buffer(), gates.Buffer(), pos.Buffer(), tokens, k, rows, dim),
		} {
			if err != nil {
				return outs, err
			}
		}
		return outs, nil
	})()
}

// "moe_grouped_linear" (rows, out): the experts' grouped products (a matmul
// launch per group), bias and GELU, and their gradients on the device.
var groupedOp = metal.Kernels.Register("moe_grouped_linear", []string{"rows", "out"},
	&metal.Impl{Path: metal.PathMetal, Available: metal.Offloading, Min: []int{64, 64}, SelfTest: groupedSelfTest},
	&metal.Impl{Path: metal.PathGo})

// rowExperts is each row's group, as an int32 tensor.
func rowExperts(offsets []int) *autodiff.Tensor {
	rows := offsets[len(offsets)-1]
	v := make([]int32, max(rows, 1))
	for e := range len(offsets) - 1 {
		for i := offsets[e]; i < offsets[e+1]; i++ {
			v[i] = int32(e)
		}
	}
	return indices(v)
}

func offsets32(offsets []int) *autodiff.Tensor {
	v := make([]int32, len(offsets))
	for i, o := range offsets {
		v[i] = int32(o)
	}
	return indices(v)
}

// groupedForwardDevice records y = act(x·W_eᵀ + b_e) per group on dev.
func groupedForwardDevice(dev metal.Compute, y, deriv, x, w, b *autodiff.Tensor, offsets []int, gelu bool) error {
	E, out, in := w.Dim(0), w.Dim(1), w.Dim(2)
	if err := metal.RunGroupedMatMul(dev, y.Buffer(), x.Buffer(), w.Buffer(), offsets, in, out); err != nil {
		return err
	}
	if !gelu && b == nil {
		return nil
	}
	ex := rowExperts(offsets)
	defer ex.Release() // back to the pool once the launch is done
	return metal.RunMoEBiasAct(dev, y.Buffer(), bufOf(deriv), bufOf(b), ex.Buffer(), x.Dim(0), out, E, gelu)
}

// groupedBackwardDevice records the gradients on dev: dy = g·GELU′ (into the
// scratch dy when gelu), db per group, dx and dw per group.
func groupedBackwardDevice(dev metal.Compute, dx, dw, db, dy, g, deriv, x, w *autodiff.Tensor, offsets []int, gelu bool) error {
	E, out, in := w.Dim(0), w.Dim(1), w.Dim(2)
	rows := x.Dim(0)
	if gelu && rows*out > 0 {
		if err := metal.RunBinary(dev, metal.BinaryMul, dy.Buffer(), g.Buffer(), deriv.Buffer(), rows*out, rows*out); err != nil {
			return err
		}
	}
	if db != nil {
		off := offsets32(offsets)
		defer off.Release()
		if err := metal.RunMoEGroupColSum(dev, db.Buffer(), dy.Buffer(), off.Buffer(), rows, out, E); err != nil {
			return err
		}
	}
	return metal.RunGroupedMatMulBackward(dev, bufOf(dx), bufOf(dw), dy.Buffer(), x.Buffer(), w.Buffer(), offsets, in, out)
}

// groupedSelfTest compares the grouped kernels with the CPU on 3 groups (one
// empty) with bias and GELU, forward and every gradient.
func groupedSelfTest() error {
	return autodiff.DeviceSelfTest(func(dev metal.Compute) ([]*autodiff.Tensor, error) {
		r := autodiff.SelfTestRand()
		offsets := []int{0, 7, 7, 19}
		const in, out = 23, 17
		x, w := autodiff.RandomTensor(r, -1, 1, 19, in), autodiff.RandomTensor(r, -1, 1, 3, out, in)
		b, g := autodiff.RandomTensor(r, -1, 1, 3, out), autodiff.RandomTensor(r, -1, 1, 19, out)
		defer func() {
			for _, t := range []*autodiff.Tensor{x, w, b, g} {
				t.Release()
			}
		}()
		y, deriv, dy := autodiff.Empty(autodiff.Float32, 19, out), autodiff.Empty(autodiff.Float32, 19, out), autodiff.Empty(autodiff.Float32, 19, out)
		dx, dw, db := autodiff.Empty(autodiff.Float32, 19, in), autodiff.Empty(autodiff.Float32, 3, out, in), autodiff.Zeros(autodiff.Float32, 3, out)
		outs := []*autodiff.Tensor{y, deriv, dx, dw, db}
		defer dy.Release()
		if dev == nil {
			GroupedMatMulForward(y.Float32s(), x.Float32s(), w.Float32s(), offsets, in, out)
			groupBiasAct(y.Float32s(), deriv.Float32s(), b.Float32s(), offsets, out, true)
			groupedBackward(dx, dw, db, dy.Float32s(), g.Float32s(), deriv.Float32s(), x.Float32s(), w.Float32s(), offsets, in, out)
			return outs, nil
		}
		if err := groupedForwardDevice(dev, y, deriv, x, w, b, offsets, true); err != nil {
			return outs, err
		}
		return outs, groupedBackwardDevice(dev, dx, dw, db, dy, g, deriv, x, w, offsets, true)
	})()
}
