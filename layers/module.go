package layers

import (
	"github.com/mlxtrain/mlxtrain/autodiff"
)

// Ctx carries what a forward pass needs besides its input. A nil *Ctx, or one with
// no Tape, runs inference: nothing is recorded, so generation can use the same
// parameters while another goroutine trains them.
type Ctx struct {
	Tape  *autodiff.Tape // records ops for backward; nil for inference
	Train bool           // training mode: dropout is active
	RNG   *autodiff.RNG  // draws dropout masks; required when Train and dropout > 0
	// Frozen parameters are not watched, so no gradient is computed for them (the
	// base weights of a LoRA fine-tune). Nil freezes nothing.
	Frozen map[*autodiff.Tensor]bool
}

// Param returns p as the forward pass should use it: watched by the tape when
// there is one, so its gradient is collected, else p itself.
func (c *Ctx) Param(p *autodiff.Tensor) *autodiff.Tensor {
	if c == nil || c.Tape == nil || p == nil || c.Frozen[p] {
		return p
	}
	return c.Tape.Watch(p)
}

// Training reports whether dropout and other train-only behaviour apply.
func (c *Ctx) Training() bool { return c != nil && c.Train }

// Module is anything with named parameters. Params lists them with prefix (which
// ends in "." unless empty) prepended, in a stable order.
type Module interface {
	Params(prefix string) []autodiff.Param
}

// ParamMap indexes a module's parameters by name.
func ParamMap(m Module) map[string]*autodiff.Tensor {
	out := map[string]*autodiff.Tensor{}
	for _, p := range m.Params("") {
		out[p.Name] = p.Value
	}
	return out
}

// CountParams is the number of scalar parameters of m.
func CountParams(m Module) int {
	n := 0
	for _, p := range m.Params("") {
		n += p.Value.Len()
	}
	return n
}

func param(prefix, name string, t *autodiff.Tensor) autodiff.Param {
	return autodiff.Param{Name: prefix + name, Value: t}
}
