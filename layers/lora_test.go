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

// TestLoRAOp checks the fused adapter against y + scale·(x·A)·B written with
// separate ops, in value and gradient, for several row counts.
func TestLoRAOp(t *testing.T) {
	for _, rows := range []int{1, 7, 33} {
		x := rnd(uint64(rows), -1, 1, rows, 5)
		y := rnd(uint64(rows)+1, -1, 1, rows, 3)
		a := rnd(uint64(rows)+2, -1, 1, 5, 2)
		b := rnd(uint64(rows)+3, -1, 1, 2, 3)
		ref := ad.Add(y, ad.MulScalar(ad.MatMul(ad.MatMul(x, a), b), 0.7))
		got := LoRAOp(y, x, a, b, 0.7)
		assert.InDeltaSlice(t, ref.Float64s(), got.Float64s(), 1e-12, "rows %d", rows)
		f := func(in []*ad.Tensor) *ad.Tensor { return LoRAOp(in[0], in[1], in[2], in[3], 0.7) }
		assert.NoError(t, ad.GradCheck{}.Check(f, y, x, a, b), "rows %d", rows)
	}
	// A 3-d input, float32.
	x := ad.Cast(rnd(5, -1, 1, 2, 3, 4), ad.Float32)
	y := ad.Cast(rnd(6, -1, 1, 2, 3, 6), ad.Float32)
	a := ad.Cast(rnd(7, -1, 1, 4, 2), ad.Float32)
	b := ad.Cast(rnd(8, -1, 1, 2, 6), ad.Float32)
	ref := ad.Add(y, ad.MulScalar(ad.MatMul(ad.MatMul(x, a), b), 2))
	assert.InDeltaSlice(t, ref.Float32s(), LoRAOp(y, x, a, b, 2).Float32s(), 1e-5)
	assert.Panics(t, func() { LoRAOp(y, x, b, a, 2) })
}
