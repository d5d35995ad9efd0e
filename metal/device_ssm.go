package metal

import "fmt"

func init() {
	// "selective_scan_metal" (channels = batch·inner, state)
	Tunings["selective_scan_metal"] = Tuning{0: {256, 1}}
	// "selective_scan_step" (channels = batch·inner, state)
	Tunings["selective_scan_step"] = Tuning{0: {256, 1}}
}

// SSMMaxState is the largest state size the selective-scan kernels take.
const SSMMaxState = 128

// SSMBuffers are the operands of the selective-scan kernels (float32 device
// buffers): X, Dt (batch, len, inner), A (inner, state), B, C (batch, len,
// state), D (inner) or nil, H0 (batch, inner, state) or nil.
type SSMBuffers struct {
	X, Dt, A, B, C, D, H0 *Buffer
}

// SSMGradBuffers receive the gradients, in the shapes of the matching
// [SSMBuffers]; D only when the inputs have one.
type SSMGradBuffers struct {
	X, Dt, A, B, C, D *Buffer
}

type ssmParams struct {
	Batch, Len, Inner, State, Chunk, NChunks, Flags, C, Ck, NBlk uint32
}

func ssmCheck(kernel string, in *SSMBuffers, batch, length, inner, state, chunk int) (ssmParams, error) {
	if err := checkCount(kernel, batch, length, inner); err != nil {
		return ssmParams{}, err
	}
	if err := checkCount(kernel, batch, length, max(state, 1)); err != nil {
		return ssmParams{}, err
	}
	if state < 1 || state > SSMMaxState || chunk < 1 {
		return ssmParams{}, fmt.Errorf("%s: state %d (1 to %d), chunk %d", kernel, state, SSMMaxState, chunk)
	}
	bld, bln := batch*length*inner, batch*length*state
	if err := checkBuffers(kernel, need{"x", in.X, bld, false}, need{"dt", in.Dt, bld, false}, need{"A", in.A, inner * state, false},
		need{"B", in.B, bln, false}, need{"C", in.C, bln, false}, need{"D", in.D, inner, true},
		need{"h0", in.H0, batch * inner * state, true}); err != nil {
		return ssmParams{}, err
	}
	p := ssmParams{Batch: uint32(batch), Len: uint32(length), Inner: uint32(inner), State: uint32(state), Chunk: uint32(chunk),
		NChunks: uint32(groupsFor(length, chunk))}
	if in.D != nil {
		p.Flags |= 1
	}
	if in.H0 != nil {
		p.Flags |= 2
	}
	return p, nil
}

// placeholder returns b, or a small buffer of d for an absent operand the
// kernel does not touch.
func placeholder(d Compute, b *Buffer, keep *[]*Buffer) (*Buffer, error) {
	if b != nil {
		return b, nil
	}
	nb, err := d.NewBuffer(16)
	if err != nil {
		return nil, err
	}
	*keep = append(*keep, nb)
	return nb, nil
}

func releaseBuffers(bs []*Buffer) {
	for _, b := range bs {
		b.Release()
	}
}

// RunSelectiveScan writes y (batch, len, inner) of the selective scan, and,
// when not nil, the states at the start of every chunk of `chunk` steps into
// ckpt (batch, ⌈len/chunk⌉, inner, state) and the state after the last step
// into final (batch, inner, state), which may be in.H0 (the state moves on in
// place). One launch (ssm_fwd_f32): a SIMD group per
// channel walks the time axis.
func RunSelectiveScan(d Compute, y, ckpt, final *Buffer, in *SSMBuffers, batch, length, inner, state, chunk int) error {
	const kernel = "ssm_fwd_f32"
	p, err := ssmCheck(kernel, in, batch, length, inner, state, chunk)
	if err != nil {
		return err
	}
	if err := checkBuffers(kernel, need{"y", y, batch * length * inner, false},
		need{"ckpt", ckpt, batch * int(p.NChunks) * inner * state, true}, need{"final", final, batch * inner * state, true}); err != nil {
		return err
	}
	if ckpt != nil {
		p.Flags |= 4
	}
	if final != nil {
		p.Flags |= 8
	}
	if batch*inner == 0 {
		return nil
	}
	finalAccess, h0 := Write, in.H0
	if h0 != nil && h0 == final {
		// in place: the kernel reads each state before it overwrites it
		p.Flags |= 16
		finalAccess, h0 = ReadWrite, nil
	}
	var keep []*Buffer
	defer func() { releaseBuffers(keep) }() // back to the pool once the launch is done
	bufs := []*Buffer{ckpt, final, in.D, h0}
	for i := range bufs {
		if bufs[i], err = placeholder(d, bufs[i], &keep); err != nil {
			return err
		}
	}
	return d.Dispatch(&Launch{
		Kernel: kernel, Groups: [3]int{groupsFor(batch*inner, 8), 1, 1}, Threads: [3]int{256, 1, 1},
		Args: []Arg{Out(0, y), Out(1, bufs[0]), {Index: 2, Buffer: bufs[1], Access: finalAccess}, In(3, in.X), In(4, in.Dt), In(5, in.A), In(6, in.B), In(7, in.C),
			In(8, bufs[2]), In(9, bufs[3]), Params(10, p)},
	})
}

// RunSelectiveScanBackward writes the gradients of [RunSelectiveScan] from g =
// ∂L/∂y and the checkpoints its forward kept (same chunk), overwriting gr. Per
// chunk, last first, one launch recomputes the chunk's states and walks the
// adjoint back through them (ssm_bwd_chunk_f32) and one sums ∂L/∂B and ∂L/∂C
// over the channel blocks (ssm_bwd_bc_f32); ∂L/∂A and ∂L/∂D are per-row sums
// added over the batch at the end. Scratch: (batch·inner, chunk+1, state) for
// the recomputed states and (batch, ⌈inner/8⌉, chunk, 2, state) for the parts.
func RunSelectiveScanBackward(d Compute, gr *SSMGradBuffers, g, ckpt *Buffer, in *SSMBuffers, batch, length, inner, state, chunk int) error {
	const kernel = "ssm_bwd_chunk_f32"
	p, err := ssmCheck(kernel, in, batch, length, inner, state, chunk)
	if err != nil {
		return err
	}
	bld, bln := batch*length*inner, batch*length*state
	hasD := in.D != nil
	if err := checkBuffers(kernel, need{"g", g, bld, false}, need{"ckpt", ckpt, batch * int(p.NChunks) * inner * state, false},
		need{"dx", gr.X, bld, false}, need{"ddt", gr.Dt, bld, false}, need{"dA", gr.A, inner * state, false},
		need{"dB", gr.B, bln, false}, need{"dC", gr.C, bln, false}, need{"dD", gr.D, inner, !hasD}); err != nil {
		return err
	}
	if in.H0 != nil {
		return fmt.Errorf("%s: h0 is not supported by the backward", kernel)
	}
	if batch*inner*length == 0 {
		return fmt.Errorf("%s: empty scan", kernel)
	}
	ck := min(chunk, length)
	nblk := groupsFor(inner, 8)
	p.Ck, p.NBlk = uint32(ck), uint32(nblk)
	var keep []*Buffer
	defer func() { releaseBuffers(keep) }()
	scratch := func(n int, zero bool) (*Buffer, error) {
		b, err := d.NewBuffer(4 * n)
		if err != nil {
			return nil, err
		}
		if zero {
			clear(b.Bytes())
		}
		keep = append(keep, b)
		return b, nil
	}
	var mu, hs, part, dapart, ddpart *Buffer
	for _, s := range []struct {
		b    **Buffer
		n    int
		zero bool
	}{{&mu, batch * inner * state, false}, {&hs, batch * inner * (ck + 1) * state, false},
		{&part, batch * nblk * ck * 2 * state, false}, {&dapart, batch * inner * state, true}, {&ddpart, batch * inner, true}} {
		if *s.b, err = scratch(s.n, s.zero); err != nil {
			return err
		}
	}
	dskip, err := placeholder(d, in.D, &keep)
	if err != nil {
		return err
	}
	for c := int(p.NChunks) - 1; c >= 0; c-- {
		pc := p
		pc.C = uint32(c)
		if err := d.Dispatch(&Launch{
			Kernel: kernel, Groups: [3]int{nblk, batch, 1}, Threads: [3]int{256, 1, 1},
			Args: []Arg{InOut(0, gr.X), InOut(1, gr.Dt), InOut(2, dapart), InOut(3, ddpart), InOut(4, part), InOut(5, mu), InOut(6, hs),
				In(7, g), In(8, ckpt), In(9, in.X), In(10, in.Dt), In(11, in.A), In(12, in.B), In(13, in.C), In(14, dskip), Params(15, pc)},
		}); err != nil {
			return err
		}
		steps := min(length, (c+1)*chunk) - c*chunk
		if err := d.Dispatch(&Launch{
			Kernel: "ssm_bwd_bc_f32", Groups: [3]int{groupsFor(steps*state, 256), batch, 1}, Threads: [3]int{256, 1, 1},
			Args: []Arg{InOut(0, gr.B), InOut(1, gr.C), In(2, part), Params(3, pc)},
		}); err != nil {
			return err
		}
	}
	if err := RunReduceCols(d, ReduceSum, gr.A, dapart, batch, inner*state); err != nil {
		return err
	}
	if hasD {
		return RunReduceCols(d, ReduceSum, gr.D, ddpart, batch, inner)
	}
	return nil
}

// RunSelectiveScanStep advances the state h (batch, inner, state) by one step
// of the selective scan and writes y (batch, inner): x and dt are (batch,
// inner), B and C (batch, state); in.H0 is ignored (the state is h, updated in
// place). It is [RunSelectiveScan] over one step from h into h: one launch
// (ssm_fwd_f32), a SIMD group per channel.
func RunSelectiveScanStep(d Compute, y, h *Buffer, in *SSMBuffers, batch, inner, state int) error {
	if h == nil {
		return fmt.Errorf("ssm_fwd_f32: the step needs a state")
	}
	step := *in
	step.H0 = h
	return RunSelectiveScan(d, y, nil, h, &step, batch, 1, inner, state, 1)
}
