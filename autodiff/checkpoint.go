package autodiff

// Detached returns an untracked tensor sharing t's storage: ops on it record
// nothing. The caller owns it (Release drops its reference, not t's).
func (t *Tensor) Detached() *Tensor {
	if t.buf == nil {
		panic("autodiff: Detached of a released tensor " + shapeString(t.shape))
	}
	t.buf.Retain()
	return newTensor(t.dtype, t.buf, t.shape)
}

// Checkpoint runs fn without keeping its intermediates and recomputes them during
// backward: activation checkpointing. fn gets a tape (nil in the forward run, a
// private tape in the recompute) and inputs to compute on; it must be
// deterministic (give dropout the same RNG state both times) and take its
// parameters through the tape it is given (Watch), so their gradients reach this
// tape's leaves.
//
// The result is recorded on the tape tracking the inputs, as one node whose
// backward re-runs fn and back-propagates through it. Peak activation memory
// drops from everything fn makes to what one recompute makes.
func Checkpoint(fn func(tp *Tape, in []*Tensor) *Tensor, inputs ...*Tensor) *Tensor {
	var outer *Tape
	for _, in := range inputs {
		if in.tape != nil && !in.tape.inBack {
			outer = in.tape
		}
	}
	det := make([]*Tensor, len(inputs))
	for i, in := range inputs {
		det[i] = in.Detached()
	}
	out := fn(nil, det)
	if out.tape != nil {
		panic("autodiff: Checkpoint: fn recorded on a tape in its forward run")
	}
	// out may share storage with a detached input (a reshape): keep its own reference.
	res := out.Detached()
	out.Release()
	for _, d := range det {
		d.Release()
	}
	if outer == nil {
		return res
	}
	return record(res, "checkpoint", func(g *Tensor) {
		inner := NewTape()
		defer inner.Release()
		w := make([]*Tensor, len(inputs))
		for i, in := range inputs {
			w[i] = inner.Watch(in.Detached())
			defer w[i].Release()
		}
		y := fn(inner, w)
		if y.tape != inner {
			return // fn's output does not depend on anything tracked
		}
		inner.BackwardWith(y, g.Clone())
		for i, in := range inputs {
			if gi := inner.Grad(w[i]); gi != nil {
				accumulate(in, gi.Clone)
			}
		}
		// parameters fn watched: hand their gradients to this tape's leaves
		for orig, alias := range inner.watched {
			if isCheckpointInput(alias, w) {
				continue
			}
			if gp := inner.grads[alias.id]; gp != nil {
				outer.addLeafGrad(orig, gp.Clone())
			}
		}
	}, inputs...)
}

func isCheckpointInput(alias *Tensor, w []*Tensor) bool {
	for _, x := range w {
		if x == alias {
			return true
		}
	}
	return false
}

// addLeafGrad adds g to the gradient of the watched tensor orig, watching it now if
// the tape had not (backward is running, so the new leaf only holds a gradient).
func (tp *Tape) addLeafGrad(orig, g *Tensor) {
	leaf := tp.Watch(orig)
	if len(tp.grads) < len(tp.nodes) {
		tp.grads = append(tp.grads, make([]*Tensor, len(tp.nodes)-len(tp.grads))...)
	}
	tp.addGrad(leaf, g)
}
