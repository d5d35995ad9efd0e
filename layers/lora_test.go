package layers

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	ad "github.com/mlxtrain/mlxtrain/autodiff"
)

// TestLoRAFrozenBase checks that freezing the base weight (a LoRA fine-tune)
// leaves the adapter's gradients as they are and computes none for the base.
func TestLoRAFrozenBase(t *testing.T) {
	rng := ad.NewRNG(3)
	l := NewLinear(rng, ad.Float64, 5, 3, true, Init{})
	_, err := AttachLoRA(rng, []NamedLinear{{"model.layers.0.self_attn.q_proj", l}}, LoRAConfig{Rank: 2, Scale: 1.5, Keys: []string{"q_proj"}})
	require.NoError(t, err)
	copy(l.LoRA.B.Float64s(), rnd(7, -1, 1, 2, 3).Float64s())
	x := rnd(8, -1, 1, 4, 5)
	grads := func(frozen map[*ad.Tensor]bool) (w, a, b *ad.Tensor) {
		tp := ad.NewTape()
		c := &Ctx{Tape: tp, Frozen: frozen}
		tp.Backward(ad.Sum(ad.Mul(l.Forward(c, x), l.Forward(c, x)), nil, false))
		clone := func(t *ad.Tensor) *ad.Tensor {
			if t == nil {
				return nil
			}
			return t.Clone()
		}
		w, a, b = clone(tp.Grad(l.Weight)), clone(tp.Grad(l.LoRA.A)), clone(tp.Grad(l.LoRA.B))
		tp.Release()
		return
	}
	w0, a0, b0 := grads(nil)
	require.NotNil(t, w0)
	w1, a1, b1 := grads(map[*ad.Tensor]bool{l.Weight: true, l.Bias: true})
	assert.Nil(t, w1, "a frozen weight gets no gradient")
	assert.Equal(t, a0.Float64s(), a1.Float64s())
	assert.Equal(t, b0.Float64s(), b1.Float64s())
}
