package metal

import "fmt"

func init() {
	// "causal_conv1d" (rows = batch·length, channels)
	Tunings["causal_conv1d"] = Tuning{0: {256, 64}}
	// "causal_conv1d_step" (batch·channels): a decoding step is one small
	// launch; it pays for the state staying on the device
	Tunings["causal_conv1d_step"] = Tuning{0: {1024}, 9: {512}}
	// "causal_conv1d_continue" (rows = batch·length, channels): a prompt's
	Tunings["causal_conv1d_continue"] = Tuning{0: {256, 64}}
}

type conv1dParams struct{ Batch, Length, Channels, K, HasBias uint32 }

// Conv1dMaxK is the widest kernel [RunConv1dBackward] takes for dw.
const Conv1dMaxK = 16

func conv1dCheck(kernel string, batch, length, channels, k int) (conv1dParams, error) {
	if err := checkCount(kernel, batch, length, channels); err != nil {
		return conv1dParams{}, err
	}
	if k < 1 {
		return conv1dParams{}, fmt.Errorf("%s: kernel width %d", kernel, k)
	}
	if err := checkCount(kernel, channels, k); err != nil {
		return conv1dParams{}, err
	}
	return conv1dParams{uint32(batch), uint32(length), uint32(channels), uint32(k), 0}, nil
}

func conv1dGrid(rows, channels int) (groups, threads [3]int) {
	t := min(256, max(1, groupsFor(channels, 32))*32)
	return [3]int{groupsFor(channels, t), rows, 1}, [3]int{t, 1, 1}
}

// RunConv1d writes the causal depthwise convolution y (batch, length,
// channels) of x (same shape) with w (channels, k) plus bias (channels; nil for
// none). One launch (conv1d_fwd_f32).
func RunConv1d(d Compute, y, x, w, bias *Buffer, batch, length, channels, k int) error {
	const kernel = "conv1d_fwd_f32"
	p, err := conv1dCheck(kernel, batch, length, channels, k)
	if err != nil {
		return err
	}
	n := batch * length * channels
	if err := checkBuffers(kernel, need{"y", y, n, false}, need{"x", x, n, false}, need{"w", w, channels * k, false},
		need{"bias", bias, channels, true}); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	if bias != nil {
		p.HasBias = 1
	} else {
		bias = w // a placeholder the kernel does not read
	}
	groups, threads := conv1dGrid(batch*length, channels)
	return d.Dispatch(&Launch{Kernel: kernel, Groups: groups, Threads: threads,
		Args: []Arg{Out(0, y), In(1, x), In(2, w), In(3, bias), Params(4, p)}})
}

// RunConv1dBackward writes the gradients of [RunConv1d] from g = ∂L/∂y: dx
// (batch, length, channels), dw (channels, k) and db (channels), overwriting
// them; dx, or dw and db together, may be nil (db needs dw; k ≤ Conv1dMaxK for
// them). One launch each (conv1d_bwd_dx_f32, conv1d_bwd_dw_f32).
func RunConv1dBackward(d Compute, dx, dw, db, g, x, w *Buffer, batch, length, channels, k int) error {
	const kernel = "conv1d_bwd_f32"
	p, err := conv1dCheck(kernel, batch, length, channels, k)
	if err != nil {
		return err
	}
	n := batch * length * channels
	if (dw == nil) != (db == nil) {
		return fmt.Errorf("%s: dw and db go together", kernel)
	}
	if dw != nil && k > Conv1dMaxK {
		return fmt.Errorf("%s: kernel width %d above %d", kernel, k, Conv1dMaxK)
	}
	if err := checkBuffers(kernel, need{"dx", dx, n, true}, need{"dw", dw, channels * k, true}, need{"db", db, channels, true},
		need{"g", g, n, false}, need{"x", x, n, false}, need{"w", w, channels * k, false}); err != nil {
		return err
	}
	if dx != nil && n > 0 {
		groups, threads := conv1dGrid(batch*length, channels)
		if err := d.Dispatch(&Launch{Kernel: "conv1d_bwd_dx_f32", Groups: groups, Threads: threads,
			Args: []Arg{Out(0, dx), In(1, g), In(2, w), Params(3, p)}}); err != nil {
			return err
		}
	}
	if dw != nil && channels > 0 {
		return d.Dispatch(&Launch{Kernel: "conv1d_bwd_dw_f32", Groups: [3]int{channels, 1, 1}, Threads: [3]int{256, 1, 1},
			Args: []Arg{Out(0, dw), Out(1, db), In(2, g), In(3, x), Params(4, p)}})
	}
	return nil
}

// RunConv1dStep runs one decoding step of [RunConv1d]: y and x are (batch,
// channels), state (batch, k−1, channels) the k−1 previous inputs, oldest
// first, which the step then moves on by x in place; bias may be nil. One
// launch (conv1d_step_f32).
func RunConv1dStep(d Compute, y, state, x, w, bias *Buffer, batch, channels, k int) error {
	c, err := conv1dFromState(d, "conv1d_step_f32", y, state, x, w, bias, batch, 1, channels, k)
	if c == nil || err != nil {
		return err
	}
	defer c.release() // back to the pool once the launch is done
	groups, threads := conv1dGrid(batch, channels)
	return d.Dispatch(&Launch{Kernel: "conv1d_step_f32", Groups: groups, Threads: threads,
		Args: []Arg{Out(0, y), InOut(1, c.state), In(2, x), In(3, w), In(4, c.bias), Params(5, c.p)}})
}

// RunConv1dContinue is [RunConv1d] continuing a sequence: the k−1 inputs
// before x[b,0] come from state (batch, k−1, channels, oldest first), which
// then moves on past x in place (as [RunConv1dStep] on each input would). Two
// launches (conv1d_fwd_prev_f32, conv1d_advance_f32).
func RunConv1dContinue(d Compute, y, state, x, w, bias *Buffer, batch, length, channels, k int) error {
	c, err := conv1dFromState(d, "conv1d_fwd_prev_f32", y, state, x, w, bias, batch, length, channels, k)
	if c == nil || err != nil {
		return err
	}
	defer c.release() // back to the pool once the launches are done
	groups, threads := conv1dGrid(batch*length, channels)
	if err := d.Dispatch(&Launch{Kernel: "conv1d_fwd_prev_f32", Groups: groups, Threads: threads,
		Args: []Arg{Out(0, y), In(1, x), In(2, w), In(3, c.bias), Params(4, c.p), In(5, c.state)}}); err != nil {
		return err
	}
	if k == 1 {
		return nil // no state to move on
	}
	groups, threads = conv1dGrid(batch, channels)
	return d.Dispatch(&Launch{Kernel: "conv1d_advance_f32", Groups: groups, Threads: threads,
		Args: []Arg{InOut(0, c.state), In(1, x), Params(2, c.p)}})
}

// conv1dStateCall is a checked convolution from a decoding state: its
// parameters, and the bias and state to bind (placeholders for a missing bias
// and for the empty state of k = 1).
type conv1dStateCall struct {
	p           conv1dParams
	bias, state *Buffer
	keep        []*Buffer
}

func (c *conv1dStateCall) release() { releaseBuffers(c.keep) }

// conv1dFromState checks the operands of RunConv1dStep and RunConv1dContinue;
// it returns nil (and no error) when there is nothing to compute.
func conv1dFromState(d Compute, kernel string, y, state, x, w, bias *Buffer, batch, length, channels, k int) (*conv1dStateCall, error) {
	p, err := conv1dCheck(kernel, batch, length, channels, k)
	if err != nil {
		return nil, err
	}
	n := batch * length * channels
	if err := checkBuffers(kernel, need{"y", y, n, false}, need{"state", state, batch * (k - 1) * channels, k == 1},
		need{"x", x, n, false}, need{"w", w, channels * k, false}, need{"bias", bias, channels, true}); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	c := &conv1dStateCall{p: p, bias: bias, state: state}
	if bias != nil {
		c.p.HasBias = 1
	}
	if c.bias, err = placeholder(d, bias, &c.keep); err != nil {
		c.release()
		return nil, err
	}
	if k == 1 || state == nil {
		if c.state, err = placeholder(d, nil, &c.keep); err != nil {
			c.release()
			return nil, err
		}
	}
	return c, nil
}
