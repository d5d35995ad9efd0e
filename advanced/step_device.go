package advanced

import (
	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// The device paths of Mamba's decoding steps (Mamba.Step): the convolution
// step (conv1d_step_f32) and the selective scan step (ssm_fwd_f32 over one
// step), each moving its state on in place, so a generation's states stay in
// the device's memory.

var (
	// "causal_conv1d_step" (channels = batch·channels)
	convStepOp = metal.Kernels.Register("causal_conv1d_step", []string{"channels"},
		metal.DeviceImpl("causal_conv1d_step", convStepSelfTest), &metal.Impl{Path: metal.PathGo})
	// "causal_conv1d_continue" (rows = batch·length, channels): the
	// convolution of a prompt continuing from a decoding state, which it moves on
	convContinueOp = metal.Kernels.Register("causal_conv1d_continue", []string{"rows", "channels"},
		metal.DeviceImpl("causal_conv1d_continue", convContinueSelfTest), &metal.Impl{Path: metal.PathGo})
	// "selective_scan_step" (channels = batch·inner, state)
	ssmStepOp = metal.Kernels.Register("selective_scan_step", []string{"channels", "state"},
		metal.DeviceImpl("selective_scan_step", ssmStepSelfTest), &metal.Impl{Path: metal.PathGo})
)

// convStep runs CausalConv1dStep on tensors: on the device when it takes it.
func convStep(y, state, x, w, bias *autodiff.Tensor, batch, channels, k int) {
	tm := startTimer()
	if d := autodiff.DeviceFor(convStepOp, []*autodiff.Tensor{y, state, x, w, bias}, batch*channels); d != nil &&
		autodiff.Launched("causal_conv1d_step", metal.RunConv1dStep(d, y.Buffer(), state.Buffer(), x.Buffer(), w.Buffer(), bufOf(bias), batch, channels, k)) {
		tm.doneOn("causal_conv1d_step", metal.PathMetal, (2*k+2)*batch*channels*4)
		return
	}
	if x.DType() == autodiff.Float32 {
		CausalConv1dStep(y.Float32s(), state.Float32s(), x.Float32s(), w.Float32s(), optional(bias, f32s), batch, channels, k)
	} else {
		CausalConv1dStep(y.Float64s(), state.Float64s(), x.Float64s(), w.Float64s(), optional(bias, f64s), batch, channels, k)
	}
	tm.done("causal_conv1d_step", (2*k+2)*batch*channels*x.DType().Size())
}

// convContinueDevice records y = the convolution of x after state, and state
// moved on past x, on the device, if it takes them.
func convContinueDevice(y, state, x, w, bias *autodiff.Tensor, batch, length, channels, k int) bool {
	d := autodiff.DeviceFor(convContinueOp, []*autodiff.Tensor{y, state, x, w, bias}, batch*length, channels)
	if d == nil {
		return false
	}
	start := profileStart()
	if !autodiff.Launched("causal_conv1d_continue", metal.RunConv1dContinue(d, y.Buffer(), state.Buffer(), x.Buffer(), w.Buffer(), bufOf(bias), batch, length, channels, k)) {
		return false
	}
	profiled("causal_conv1d_continue", start, 3*x.Len()*4)
	return true
}

// ssmStep runs SelectiveScanStep on tensors: on the device when it takes it.
func ssmStep(y, h, x, dt, A, B, C, D *autodiff.Tensor, batch, inner, state int) {
	tm := startTimer()
	bytes := (2*batch*inner*state + 4*batch*inner + 2*batch*state) * x.DType().Size()
	if state <= metal.SSMMaxState && batch*inner > 0 && state > 0 {
		if d := autodiff.DeviceFor(ssmStepOp, []*autodiff.Tensor{y, h, x, dt, A, B, C, D}, batch*inner, state); d != nil &&
			autodiff.Launched("selective_scan_step", metal.RunSelectiveScanStep(d, y.Buffer(), h.Buffer(), ssmBuffers(x, dt, A, B, C, D, nil), batch, inner, state)) {
			tm.doneOn("selective_scan_step", metal.PathMetal, bytes)
			return
		}
	}
	if x.DType() == autodiff.Float32 {
		SelectiveScanStep(y.Float32s(), h.Float32s(), x.Float32s(), dt.Float32s(), A.Float32s(), B.Float32s(), C.Float32s(), optional(D, f32s), batch, inner, state)
	} else {
		SelectiveScanStep(y.Float64s(), h.Float64s(), x.Float64s(), dt.Float64s(), A.Float64s(), B.Float64s(), C.Float64s(), optional(D, f64s), batch, inner, state)
	}
	tm.done("selective_scan_step", bytes)
}

// convStepSelfTest compares the kernel with the CPU over two steps with bias.
func convStepSelfTest() error {
	return autodiff.DeviceSelfTest(func(d metal.Compute) ([]*autodiff.Tensor, error) {
		r := autodiff.SelfTestRand()
		const batch, channels, k = 2, 37, 4
		w, bias := autodiff.RandomTensor(r, -1, 1, channels, k), autodiff.RandomTensor(r, -1, 1, channels)
		x1, x2 := autodiff.RandomTensor(r, -1, 1, batch, channels), autodiff.RandomTensor(r, -1, 1, batch, channels)
		state := autodiff.RandomTensor(r, -1, 1, batch, k-1, channels)
		defer func() {
			for _, t := range []*autodiff.Tensor{w, bias, x1, x2} {
				t.Release()
			}
		}()
		y1, y2 := autodiff.Empty(autodiff.Float32, batch, channels), autodiff.Empty(autodiff.Float32, batch, channels)
		outs := []*autodiff.Tensor{y1, y2, state}
		if d == nil {
			CausalConv1dStep(y1.Float32s(), state.Float32s(), x1.Float32s(), w.Float32s(), bias.Float32s(), batch, channels, k)
			CausalConv1dStep(y2.Float32s(), state.Float32s(), x2.Float32s(), w.Float32s(), bias.Float32s(), batch, channels, k)
			return outs, nil
		}
		if err := metal.RunConv1dStep(d, y1.Buffer(), state.Buffer(), x1.Buffer(), w.Buffer(), bias.Buffer(), batch, channels, k); err != nil {
			return outs, err
		}
		return outs, metal.RunConv1dStep(d, y2.Buffer(), state.Buffer(), x2.Buffer(), w.Buffer(), bias.Buffer(), batch, channels, k)
	})()
}

// convContinueSelfTest compares the kernels with the CPU over a prompt
// shorter than the state and one longer, with bias.
func convContinueSelfTest() error {
	return autodiff.DeviceSelfTest(func(d metal.Compute) ([]*autodiff.Tensor, error) {
		r := autodiff.SelfTestRand()
		const batch, channels, k = 2, 37, 4
		w, bias := autodiff.RandomTensor(r, -1, 1, channels, k), autodiff.RandomTensor(r, -1, 1, channels)
		state := autodiff.RandomTensor(r, -1, 1, batch, k-1, channels)
		outs := []*autodiff.Tensor{state}
		var xs []*autodiff.Tensor
		defer func() {
			for _, t := range append(xs, w, bias) {
				t.Release()
			}
		}()
		for _, length := range []int{2, 9} {
			x := autodiff.RandomTensor(r, -1, 1, batch, length, channels)
			y := autodiff.Empty(autodiff.Float32, batch, length, channels)
			xs, outs = append(xs, x), append(outs, y)
			if d == nil {
				CausalConv1dForward(y.Float32s(), x.Float32s(), w.Float32s(), bias.Float32s(), state.Float32s(), batch, length, channels, k)
				CausalConv1dAdvance(state.Float32s(), x.Float32s(), batch, length, channels, k)
				continue
			}
			if err := metal.RunConv1dContinue(d, y.Buffer(), state.Buffer(), x.Buffer(), w.Buffer(), bias.Buffer(), batch, length, channels, k); err != nil {
				return outs, err
			}
		}
		return outs, nil
	})()
}

// ssmStepSelfTest compares the kernel with the CPU over two steps with a skip
// and a state wider than a SIMD group.
func ssmStepSelfTest() error {
	return autodiff.DeviceSelfTest(func(d metal.Compute) ([]*autodiff.Tensor, error) {
		r := autodiff.SelfTestRand()
		const batch, inner, state = 2, 5, 36
		A, D := autodiff.RandomTensor(r, -2, -0.1, inner, state), autodiff.RandomTensor(r, -1, 1, inner)
		h := autodiff.RandomTensor(r, -1, 1, batch, inner, state)
		var ins []*autodiff.Tensor
		defer func() {
			for _, t := range append(ins, A, D) {
				t.Release()
			}
		}()
		outs := []*autodiff.Tensor{h}
		for range 2 {
			x, dt := autodiff.RandomTensor(r, -1, 1, batch, inner), autodiff.RandomTensor(r, 0.01, 0.5, batch, inner)
			B, C := autodiff.RandomTensor(r, -1, 1, batch, state), autodiff.RandomTensor(r, -1, 1, batch, state)
			ins = append(ins, x, dt, B, C)
			y := autodiff.Empty(autodiff.Float32, batch, inner)
			outs = append(outs, y)
			if d == nil {
				SelectiveScanStep(y.Float32s(), h.Float32s(), x.Float32s(), dt.Float32s(), A.Float32s(), B.Float32s(), C.Float32s(), D.Float32s(), batch, inner, state)
				continue
			}
			if err := metal.RunSelectiveScanStep(d, y.Buffer(), h.Buffer(), ssmBuffers(x, dt, A, B, C, D, nil), batch, inner, state); err != nil {
				return outs, err
			}
		}
		return outs, nil
	})()
}
