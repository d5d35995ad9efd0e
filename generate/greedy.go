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
// each step with a KV cache (the prompt is prefilled in one pass). It stops after
// emitting eos, which is included in the result; eos < 0 never stops early.
func Greedy(m *models.Model, prompt []int32, maxNew int, eos int32) ([]int32, error) {
	if len(prompt) == 0 {
		return nil, fmt.Errorf("generate: empty prompt")
	}
	if n := Context(m); n > 0 && len(prompt)+maxNew > n {
		if len(prompt) > n {
			return nil, &ContextError{len(prompt), maxNew, n}
		}
		maxNew = n - len(prompt) // the context bounds what can be generated
	}
	cache := models.NewCache(m)
	defer cache.Release()
	out := make([]int32, 0, maxNew)
	ids := autodiff.FromInt32(prompt, 1, len(prompt))
	for len(out) < maxNew {
		logits := m.ForwardCache(nil, ids, cache)
		ids.Release()
		best := argmaxLast(logits)
		logits.Release()
		out = append(out, int32(best))
		if int32(best) == eos {
			break
		}
		ids = autodiff.FromInt32([]int32{int32(best)}, 1, 1)
	}
	return out, nil
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
