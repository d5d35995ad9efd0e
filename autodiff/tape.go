package autodiff

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/mlxtrain/mlxtrain/metal"
)

// Tape records the ops applied to the tensors it tracks, so [Tape.Backward] can
// compute gradients. A tape is used by one goroutine at a time; separate tapes are
// independent. The zero Tape is not usable: call [NewTape].
type Tape struct {
	nodes     []node
	grads     []*Tensor
	watched   map[*Tensor]*Tensor // a parameter → its alias on this tape
	owned     []*Tensor           // saved tensors handed over with Own
	inBack    bool
	backwards int
}

type node struct {
	op   string
	out  *Tensor
	back func(g *Tensor)
	leaf bool
	keep bool // survives Release (the caller took it with Keep)
}

// NewTape returns an empty tape.
func NewTape() *Tape { return &Tape{watched: map[*Tensor]*Tensor{}} }

// Watch returns a tensor tracked by the tape that shares t's storage: ops on it are
// recorded, and its gradient is [Tape.Grad] of t (or of the alias). Watching the
// same tensor twice returns the same alias; t itself is not modified, so other
// goroutines may keep using it without a tape.
func (tp *Tape) Watch(t *Tensor) *Tensor {
	if t.tape == tp {
		return t
	}
	if t.tape != nil {
		panic("autodiff: Watch of a tensor tracked by another tape")
	}
	if a, ok := tp.watched[t]; ok {
		return a
	}
	if t.buf == nil {
		panic("autodiff: Watch of a released tensor " + shapeString(t.shape))
	}
	t.buf.Retain()
	a := &Tensor{shape: t.shape, dtype: t.dtype, buf: t.buf, tape: tp, id: int32(len(tp.nodes))}
	tp.nodes = append(tp.nodes, node{op: "leaf", out: a, leaf: true})
	tp.watched[t] = a
	return a
}

// Len is the number of nodes recorded, leaves included.
func (tp *Tape) Len() int { return len(tp.nodes) }

// Keep excludes t, an output of an op on this tape, from [Tape.Release]: the caller
// owns it from then on.
func (tp *Tape) Keep(t *Tensor) *Tensor {
	if t.tape == tp && t.id >= 0 && !tp.nodes[t.id].leaf {
		tp.nodes[t.id].keep = true
	}
	return t
}

// Own hands the tape tensors that a VJP saved (statistics, masks) so that
// [Tape.Release] frees them together with the op outputs.
func (tp *Tape) Own(ts ...*Tensor) { tp.owned = append(tp.owned, ts...) }

// Grad returns the gradient accumulated for t after [Tape.Backward]: t may be a
// watched tensor or its alias. It is nil when the loss does not depend on t. The
// tape owns the gradient until [Tape.Release].
func (tp *Tape) Grad(t *Tensor) *Tensor {
	if a, ok := tp.watched[t]; ok {
		t = a
	}
	if t.tape != tp || int(t.id) >= len(tp.grads) {
		return nil
	}
	return tp.grads[t.id]
}

// Backward computes the gradient of loss, a one-element tensor, with respect to
// every tensor the tape tracks, and accumulates it into the leaves (calling
// Backward again adds to their gradients). Gradients of intermediates are freed as
// soon as they have been propagated.
func (tp *Tape) Backward(loss *Tensor) {
	if loss.Len() != 1 {
		panic("autodiff: Backward of a non-scalar of shape " + shapeString(loss.shape) + "; use BackwardWith")
	}
	seed := Full(loss.dtype, 1, loss.shape...)
	tp.BackwardWith(loss, seed)
}

// BackwardWith is Backward for an output of any shape, seeded with its gradient.
// The tape takes ownership of seed.
func (tp *Tape) BackwardWith(out, seed *Tensor) {
	if out.tape != tp {
		panic("autodiff: Backward of a tensor this tape does not track")
	}
	if !sameShape(out.shape, seed.shape) || out.dtype != seed.dtype {
		panic(fmt.Sprintf("autodiff: BackwardWith: seed %s %s for output %s %s", seed.dtype, shapeString(seed.shape), out.dtype, shapeString(out.shape)))
	}
	if len(tp.grads) < len(tp.nodes) {
		tp.grads = append(tp.grads, make([]*Tensor, len(tp.nodes)-len(tp.grads))...)
	}
	tp.inBack = true
	defer func() { tp.inBack = false }()
	tp.addGrad(out, seed)
	for i := int(out.id); i >= 0; i-- {
		g := tp.grads[i]
		n := &tp.nodes[i]
		if g == nil || n.leaf {
			continue
		}
		if n.back != nil {
			n.back(g)
		}
		tp.grads[i] = nil
		g.Release()
	}
	tp.backwards++
}

// addGrad adds g (owned by the tape from here) to t's gradient.
func (tp *Tape) addGrad(t *Tensor, g *Tensor) {
	if !sameShape(t.shape, g.shape) {
		panic(fmt.Sprintf("autodiff: gradient of shape %s for a tensor of shape %s (op %s)", shapeString(g.shape), shapeString(t.shape), tp.nodes[t.id].op))
	}
	if g.dtype != t.dtype {
		c := Cast(g, t.dtype)
		g.Release()
		g = c
	}
	cur := tp.grads[t.id]
	if cur == nil {
		tp.grads[t.id] = g
		return
	}
	addInPlace(cur, g)
	g.Release()
}

// Release gives back every tensor the tape's ops produced (except those taken with
// Keep), the gradients, and the aliases of watched tensors. The tape is empty after
// and may record again. Tensors released here must not be used afterwards: reading
// one panics.
func (tp *Tape) Release() {
	for i := range tp.nodes {
		n := &tp.nodes[i]
		if !n.keep {
			n.out.Release()
		} else {
			n.out.tape, n.out.id = nil, -1
		}
		n.out, n.back = nil, nil
	}
	for i, g := range tp.grads {
		if g != nil {
			g.Release()
			tp.grads[i] = nil
		}
	}
	for i, t := range tp.owned {
		t.Release()
		tp.owned[i] = nil
	}
	tp.owned = tp.owned[:0]
	tp.nodes = tp.nodes[:0]
	tp.grads = tp.grads[:0]
	clear(tp.watched)
}

// needsGrad reports whether backward must compute a gradient for t.
func needsGrad(t *Tensor) bool { return t.tape != nil && t.tape.inBack }

// accumulate adds the gradient that grad computes to t, when t needs one. Backward
// closures call it for each input so no work is done for constants.
func accumulate(t *Tensor, grad func() *Tensor) {
	if !needsGrad(t) {
		return
	}
	t.tape.addGrad(t, grad())
}

// record registers out as the result of op on inputs: when an input is tracked by
// a tape that is not running backward, a node with the VJP back is added there and
// the tape owns out. With MLXTRAIN_CHECK_NAN on it also checks out for NaN and Inf.
func record(out *Tensor, op string, back func(g *Tensor), inputs ...*Tensor) *Tensor {
	if metal.CheckingNaN() {
		checkFinite(op, out, inputs)
	}
	var tp *Tape
	for _, in := range inputs {
		if in.tape != nil {
			if tp != nil && in.tape != tp {
				panic("autodiff: " + op + ": inputs tracked by different tapes")
			}
			tp = in.tape
		}
	}
	if tp == nil || tp.inBack {
		return out
	}
	out.tape = tp
	out.id = int32(len(tp.nodes))
	tp.nodes = append(tp.nodes, node{op: op, out: out, back: back})
	return out
}

// NaNError is the panic value MLXTRAIN_CHECK_NAN raises at the first op whose output
// holds a NaN or an Inf.
type NaNError struct {
	Op          string
	InputShapes [][]int
	Index       int
	Value       float64
}

func (e *NaNError) Error() string {
	shapes := make([]string, len(e.InputShapes))
	for i, s := range e.InputShapes {
		shapes[i] = shapeString(s)
	}
	return fmt.Sprintf("op %s produced %v at element %d (inputs %s)", e.Op, e.Value, e.Index, strings.Join(shapes, ", "))
}

func checkFinite(op string, out *Tensor, inputs []*Tensor) {
	if !out.dtype.IsFloat() && out.dtype != Float16 && out.dtype != BFloat16 {
		return
	}
	for i := range out.Len() {
		v := out.At(i)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			e := &NaNError{Op: op, Index: i, Value: v}
			for _, in := range inputs {
				e.InputShapes = append(e.InputShapes, in.shape)
			}
			panic(e)
		}
	}
}

// opTimer measures one op call for MLXTRAIN_PROFILE; it costs an atomic load when off.
type opTimer struct{ start time.Time }

func startOp() opTimer {
	if metal.Profiling() {
		return opTimer{time.Now()}
	}
	return opTimer{}
}

func (o opTimer) done(op string, path metal.Path, bytes int) {
	if !o.start.IsZero() {
		metal.RecordOp(op, path, time.Since(o.start), int64(bytes))
	}
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
