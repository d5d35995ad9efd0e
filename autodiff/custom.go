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

// NeedsGrad reports whether backward needs a gradient for t (call inside a VJP).
func NeedsGrad(t *Tensor) bool { return needsGrad(t) }
