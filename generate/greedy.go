package generate

import (
	"fmt"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/models"
)

// ContextError reports a prompt that does not fit the model's context.
type ContextError struct {
	Prompt, MaxNew, Context int
}

func (e *ContextError) Error() string {
	return fmt.Sprintf("prompt of %d tokens plus %d new ones exceeds the model's context of %d tokens", e.Prompt, e.MaxNew, e.Context)
}

// Context is the longest sequence m can process: its learned position table, or
// unlimited (0) for RoPE and position-free models.
func Context(m *models.Model) int {
	if m.Positions != nil {
		return m.Positions.Weight.Dim(0)
	}
	return 0
}

// Greedy decodes up to maxNew tokens after prompt, taking the most likely token at
// each step with a KV cache. It stops after emitting eos, which is included in
// the result; eos < 0 never stops early. It is [Generate] with the zero sampler.
func Greedy(m *models.Model, prompt []int32, maxNew int, eos int32) ([]int32, error) {
	o := Options{MaxTokens: maxNew}
	if eos >= 0 {
		o.EOS = []int32{eos}
	}
	var out []int32
	_, err := Generate(m, prompt, o, func(t int32) bool { out = append(out, t); return true })
	return out, err
}

// argmaxLast is the index of the largest logit of the last position (the lowest
// index among equals).
func argmaxLast(logits *autodiff.Tensor) int {
	v := logits.Dim(-1)
	best := 0
	if logits.DType() == autodiff.Float32 {
		last := logits.Float32s()[logits.Len()-v:]
		for j, x := range last {
			if x > last[best] {
				best = j
			}
		}
		return best
	}
	last := logits.Float64Values()[logits.Len()-v:]
	for j, x := range last {
		if x > last[best] {
			best = j
		}
	}
	return best
}
