package autodiff

// The hooks below let ops defined in other packages (attention, layers, advanced,
// quant) take part in the tape exactly as the ops of this package do: compute the
// output with their own kernel, then Record it with its VJP. Inside the VJP,
// Accumulate hands a gradient to an input (computed only when that input needs
// one) and NeedsGrad lets a fused backward skip gradients nobody asked for.

// Record registers out as the result of a custom op (in another package) with its VJP.
// When no input is tracked by a tape, or the tape is running backward, nothing is
// recorded and out is returned as is. Otherwise the tape owns out from here.
func Record(out *Tensor, op string, back func(g *Tensor), inputs ...*Tensor) *Tensor {
	return record(out, op, back, inputs...)
}

// Accumulate adds grad() to t's gradient when t needs one (call inside a VJP).
// grad runs only then; the tensor it returns is owned by the tape from then on.
func Accumulate(t *Tensor, grad func() *Tensor) { accumulate(t, grad) }

// AccumulateInPlace adds a gradient to t, when t needs one (call inside a VJP),
// by letting write put it straight into t's gradient: with fresh set, dst is a
// new tensor of t's shape and dtype whose every element write must set (the
// tape owns it after); otherwise dst is the gradient accumulated so far, which
// write must add to. A kernel that can add as it writes so saves the separate
// gradient tensor and the pass that adds it.
func AccumulateInPlace(t *Tensor, write func(dst *Tensor, fresh bool)) {
	if !needsGrad(t) {
		return
	}
	tp := t.tape
	if cur := tp.grads[t.id]; cur != nil {
		write(cur, false)
		return
	}
	dst := Empty(t.dtype, t.shape...)
	write(dst, true)
	tp.addGrad(t, dst)
}

// NeedsGrad reports whether backward needs a gradient for t (call inside a VJP).
func NeedsGrad(t *Tensor) bool { return needsGrad(t) }
