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
	return checkpoint(Float32, fn, inputs)
}

// CheckpointStored is Checkpoint keeping its inputs for the recompute in the
// 16-bit storage dtype store (Float16 or BFloat16) instead of their own: each
// input is rounded to store (exactly, when its values are representable, which
// the caller ensures for an exact recompute), and the storage of each input
// that is an op output on the tape is released at once, so the caller must
// not read those inputs after the call (the tape still routes their gradients),
// and the ops that produced them must not read their outputs in backward (Add
// does not; Exp does).
// Watched parameters and untracked inputs are left alone. With the residual
// stream rounded to half at each block's output, this halves the memory that
// checkpointing keeps.
func CheckpointStored(store DType, fn func(tp *Tape, in []*Tensor) *Tensor, inputs ...*Tensor) *Tensor {
	if store != Float16 && store != BFloat16 {
		panic("autodiff: CheckpointStored: store must be float16 or bfloat16, not " + store.String())
	}
	return checkpoint(store, fn, inputs)
}

// checkpoint is Checkpoint, with the float32 inputs kept in store when it is a
// 16-bit dtype.
func checkpoint(store DType, fn func(tp *Tape, in []*Tensor) *Tensor, inputs []*Tensor) *Tensor {
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
	var stored []*Tensor // the inputs in store, when set
	if store == Float16 || store == BFloat16 {
		stored = make([]*Tensor, len(inputs))
		for i, in := range inputs {
			if in.tape != outer || outer.nodes[in.id].leaf || in.dtype != Float32 {
				continue
			}
			h := Empty(store, in.shape...)
			castInto(h, in)
			outer.Own(h)
			stored[i] = h
		}
	}
	out = record(res, "checkpoint", func(g *Tensor) {
		inner := NewTape()
		defer inner.Release()
		w := make([]*Tensor, len(inputs))
		for i, in := range inputs {
			var src *Tensor
			if stored != nil && stored[i] != nil {
				src = Empty(in.dtype, in.shape...)
				castInto(src, stored[i])
			} else {
				src = in.Detached()
			}
			w[i] = inner.Watch(src)
			defer w[i].Release()
			defer src.Release()
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
	for i, in := range inputs {
		if stored != nil && stored[i] != nil {
			in.buf.Release() // the tape keeps the tensor (shape, gradient slot), not its data
			in.buf = nil
		}
	}
	return out
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
