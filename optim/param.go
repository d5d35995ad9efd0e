package optim

import (
	"strings"

	"github.com/mlxtrain/mlxtrain/autodiff"
)

// Param is a named trainable tensor ([autodiff.Param], so the layers' parameter
// lists pass straight to an optimizer). Names are the parameter's path in the
// model, as checkpoints spell it ("model.layers.0.self_attn.q_proj.weight");
// optimizers name their state after them.
type Param = autodiff.Param

// DefaultDecayMask is the rule that decides which parameters weight decay applies
// to when a config leaves DecayMask nil. It decays matrices and skips what decay
// would only hurt: biases (a name that is "bias" or ends in ".bias"), norm scales
// (a name containing "norm"), embeddings (a name containing "embed"), and any
// parameter of rank 0 or 1 (gains and biases whatever their names). Names are
// compared case-insensitively.
func DefaultDecayMask(p Param) bool {
	if p.Value.Rank() <= 1 {
		return false
	}
	n := strings.ToLower(p.Name)
	switch {
	case n == "bias", strings.HasSuffix(n, ".bias"), strings.Contains(n, "norm"), strings.Contains(n, "embed"):
		return false
	}
	return true
}

// DecayAll is a decay mask that applies weight decay to every parameter, as
// PyTorch's optimizers do when given a single parameter group.
func DecayAll(Param) bool { return true }

// Grads collects, from a tape after Backward, the gradient of each parameter in
// order: the slice lines up with params, and a parameter the loss does not depend
// on gets nil (which optimizers skip). The tape still owns the gradients.
func Grads(tp *autodiff.Tape, params []Param) []*autodiff.Tensor {
	out := make([]*autodiff.Tensor, len(params))
	for i, p := range params {
		out[i] = tp.Grad(p.Value)
	}
	return out
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
