package autodiff

// Record registers out as the result of a custom op (in another package) with its VJP.
func Record(out *Tensor, op string, back func(g *Tensor), inputs ...*Tensor) *Tensor {
	return record(out, op, back, inputs...)
}

// Accumulate adds grad() to t's gradient when t needs one (call inside a VJP).
func Accumulate(t *Tensor, grad func() *Tensor) { accumulate(t, grad) }

// NeedsGrad reports whether backward needs a gradient for t (call inside a VJP).
func NeedsGrad(t *Tensor) bool { return needsGrad(t) }
