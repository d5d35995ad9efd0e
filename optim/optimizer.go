package optim

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// Optimizer updates a fixed list of parameters in place from their gradients.
// NewSGD, NewAdam, NewAdamW and NewLion make one; they differ only in the update
// rule and the state it keeps.
//
// Each [Optimizer.Step] takes the learning rate from the schedule at [Optimizer.Steps]
// (the number of steps taken before it, so the first step uses LR(0)), then counts
// the step. Every parameter also counts the updates it received, which is what its
// bias correction uses: a parameter whose gradient is nil is skipped entirely, its
// value, moments and count untouched, so a parameter that first gets a gradient at
// step 100 starts its moments as fresh ones.
//
// State is held in tensors of the parameter's dtype (float32 or float64) plus int32
// counters, all exposed by name through [Optimizer.State] for checkpoints.
type Optimizer struct {
	kind   string
	params []Param
	lr     Schedule
	rule   rule
	decay  []bool
	slots  []string
	bufs   [][]*autodiff.Tensor // bufs[i][s]: state slot s of parameter i
	counts []*autodiff.Tensor   // int32 scalars: updates parameter i received
	step   *autodiff.Tensor     // int32 scalar: steps taken
}

// rule is an optimizer's update: it changes p (and its state) in place given the
// gradient g, the learning rate, the parameter's update number t (1 for the first)
// and whether weight decay applies to it.
type rule interface {
	update(p, g *autodiff.Tensor, state []*autodiff.Tensor, lr float64, t int, decay bool)
}

// StepName is the state name of the optimizer's step counter; each parameter's own
// counter is named "<param>.step".
const StepName = "step"

func newOptimizer(kind string, params []Param, lr Schedule, mask func(Param) bool, r rule, slots ...string) (*Optimizer, error) {
	if lr == nil {
		return nil, fmt.Errorf("optim: %s: no learning rate schedule", kind)
	}
	if mask == nil {
		mask = DefaultDecayMask
	}
	// State names are "<param>.<slot>" with slots free of dots, and "step": they
	// are distinct exactly when the parameter names are.
	seen := make(map[string]bool, len(params))
	storage := make(map[*metal.Buffer]string, len(params))
	for i, p := range params {
		if p.Name == "" {
			return nil, fmt.Errorf("optim: %s: parameter %d has no name", kind, i)
		}
		if seen[p.Name] {
			return nil, fmt.Errorf("optim: %s: parameter name %q is used twice", kind, p.Name)
		}
		seen[p.Name] = true
		if p.Value == nil || p.Value.Released() {
			return nil, fmt.Errorf("optim: %s: parameter %q has no tensor", kind, p.Name)
		}
		if !p.Value.DType().IsFloat() {
			return nil, fmt.Errorf("optim: %s: parameter %q is %s; optimizers update float32 or float64 tensors", kind, p.Name, p.Value.DType())
		}
		// A tensor listed twice (tied weights under two names) would be updated twice.
		if other, dup := storage[p.Value.Buffer()]; dup && p.Value.Len() > 0 {
			return nil, fmt.Errorf("optim: %s: parameters %q and %q share storage; list tied weights once", kind, other, p.Name)
		}
		storage[p.Value.Buffer()] = p.Name
	}
	o := &Optimizer{
		kind:   kind,
		params: append([]Param(nil), params...),
		lr:     lr,
		rule:   r,
		slots:  slots,
		decay:  make([]bool, len(params)),
		bufs:   make([][]*autodiff.Tensor, len(params)),
		counts: make([]*autodiff.Tensor, len(params)),
		step:   autodiff.Zeros(autodiff.Int32),
	}
	for i, p := range params {
		o.decay[i] = mask(p)
		o.counts[i] = autodiff.Zeros(autodiff.Int32)
		o.bufs[i] = make([]*autodiff.Tensor, len(slots))
		for s := range slots {
			o.bufs[i][s] = autodiff.Zeros(p.Value.DType(), p.Value.Shape()...)
		}
	}
	return o, nil
}

// Kind names the update rule: "sgd", "adam", "adamw" or "lion".
func (o *Optimizer) Kind() string { return o.kind }

// Params returns the parameters the optimizer updates, in the order Step expects
// their gradients. The slice is the optimizer's own: do not modify it.
func (o *Optimizer) Params() []Param { return o.params }

// Decays reports whether weight decay applies to parameter i (the config's mask).
func (o *Optimizer) Decays(i int) bool { return o.decay[i] }

// Steps is the number of steps taken.
func (o *Optimizer) Steps() int { return int(o.step.Int32s()[0]) }

// Schedule returns the learning-rate schedule.
func (o *Optimizer) Schedule() Schedule { return o.lr }

// LearningRate is the rate the next Step will use: the schedule at Steps().
func (o *Optimizer) LearningRate() float64 { return o.lr.LR(o.Steps()) }

// Step updates every parameter whose gradient is not nil, in place, with the
// learning rate the schedule gives at Steps(), which it returns. grads lines up
// with Params (see [Grads]); each gradient must have its parameter's shape and
// dtype: a mismatch is a programmer error and panics before anything is updated.
func (o *Optimizer) Step(grads []*autodiff.Tensor) (lr float64) {
	lr = o.LearningRate()
	o.StepLR(grads, lr)
	return lr
}

// StepLR is Step with the learning rate given instead of taken from the schedule
// (the step still counts).
func (o *Optimizer) StepLR(grads []*autodiff.Tensor, lr float64) {
	if len(grads) != len(o.params) {
		panic(fmt.Sprintf("optim: %s: Step: %d gradients for %d parameters", o.kind, len(grads), len(o.params)))
	}
	var start time.Time
	profiling := metal.Profiling()
	if profiling {
		start = time.Now()
	}
	bytes := 0
	for i, g := range grads {
		if g == nil {
			continue
		}
		p := o.params[i].Value
		if g.DType() != p.DType() || !sameShape(g.Shape(), p.Shape()) {
			panic(fmt.Sprintf("optim: %s: Step: gradient %s %v for parameter %q %s %v", o.kind, g.DType(), g.Shape(), o.params[i].Name, p.DType(), p.Shape()))
		}
		bytes += (3 + 2*len(o.slots)) * p.Len() * p.DType().Size()
	}
	launched := deviceUpdates.Load()
	updates := 0
	for i, g := range grads {
		if g == nil {
			continue
		}
		updates++
		c := o.counts[i].Int32s()
		c[0]++
		o.rule.update(o.params[i].Value, g, o.bufs[i], lr, int(c[0]), o.decay[i])
	}
	o.step.Int32s()[0]++
	// Once per step, device work that failed while running disables the device
	// (with a warning) instead of going unnoticed.
	metal.CheckAccelerator()
	if profiling {
		path := metal.PathGo
		if updates > 0 && deviceUpdates.Load()-launched == int64(updates) {
			path = metal.PathMetal
		}
		metal.RecordOp("optim."+o.kind, path, time.Since(start), int64(bytes))
	}
}

// State returns the optimizer's state as named tensors: "step" (an int32 scalar,
// the steps taken) and for each parameter "<name>.step" (the updates it received)
// and its rule's slots: "<name>.exp_avg" and "<name>.exp_avg_sq" for Adam and
// AdamW, "<name>.exp_avg" for Lion, "<name>.momentum_buffer" for SGD with
// momentum. The tensors are the optimizer's own, not copies: save them before the
// next Step, and neither modify nor release them. Hyperparameters are not state:
// they come from the config.
func (o *Optimizer) State() []Param {
	out := make([]Param, 0, 1+len(o.params)*(1+len(o.slots)))
	out = append(out, Param{Name: StepName, Value: o.step})
	for i, p := range o.params {
		out = append(out, Param{Name: p.Name + ".step", Value: o.counts[i]})
		for s, slot := range o.slots {
			out = append(out, Param{Name: p.Name + "." + slot, Value: o.bufs[i][s]})
		}
	}
	return out
}

// LoadState restores state saved from State by an optimizer of the same kind over
// parameters of the same names, shapes and dtypes. It checks everything first —
// every expected name present once, no unknown names, each tensor's dtype and
// shape, counters in range — and changes nothing unless all is well; then it
// copies the values exactly, so training continues bit for bit.
func (o *Optimizer) LoadState(state []Param) error {
	given := make(map[string]*autodiff.Tensor, len(state))
	var errs []string
	for _, s := range state {
		if _, dup := given[s.Name]; dup {
			errs = append(errs, fmt.Sprintf("%q appears twice", s.Name))
			continue
		}
		if s.Value == nil || s.Value.Released() {
			errs = append(errs, fmt.Sprintf("%q has no tensor", s.Name))
		}
		given[s.Name] = s.Value
	}
	want := o.State()
	steps := -1
	for _, w := range want {
		t, ok := given[w.Name]
		if !ok {
			errs = append(errs, fmt.Sprintf("%q is missing", w.Name))
			continue
		}
		if t == nil || t.Released() {
			continue
		}
		if t.DType() != w.Value.DType() || !sameShape(t.Shape(), w.Value.Shape()) {
			errs = append(errs, fmt.Sprintf("%q is %s %v, want %s %v", w.Name, t.DType(), t.Shape(), w.Value.DType(), w.Value.Shape()))
			continue
		}
		if w.Value.DType() == autodiff.Int32 {
			n := int(t.Int32s()[0])
			if w.Name == StepName {
				steps = n
			}
			if n < 0 || steps >= 0 && n > steps {
				errs = append(errs, fmt.Sprintf("%q is %d, outside [0, %s]", w.Name, n, StepName))
			}
		}
	}
	if len(given) > len(want) || len(errs) > 0 {
		expected := make(map[string]bool, len(want))
		for _, w := range want {
			expected[w.Name] = true
		}
		var extra []string
		for name := range given {
			if !expected[name] {
				extra = append(extra, fmt.Sprintf("%q is not state of this optimizer", name))
			}
		}
		sort.Strings(extra)
		errs = append(errs, extra...)
	}
	if len(errs) > 0 {
		const show = 4
		msg := strings.Join(errs[:min(len(errs), show)], "; ")
		if len(errs) > show {
			msg += fmt.Sprintf("; and %d more", len(errs)-show)
		}
		return fmt.Errorf("optim: %s: LoadState: %s", o.kind, msg)
	}
	for _, w := range want {
		w.Value.CopyFrom(given[w.Name])
	}
	return nil
}

// Release gives the optimizer's state buffers back to the pool; the optimizer must
// not be used after. The parameters are the caller's and are left alone.
func (o *Optimizer) Release() {
	for i := range o.bufs {
		for _, b := range o.bufs[i] {
			b.Release()
		}
		o.counts[i].Release()
	}
	o.step.Release()
}
