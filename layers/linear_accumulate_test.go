package layers

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	ad "github.com/mlxtrain/mlxtrain/autodiff"
)

// The input gradient of LinearOp goes straight into x's gradient: written when
// it is the first (x used once) and added with β = 1 when another use of x,
// recorded later, has left one. Both against finite differences (float64) and
// float32 against float64.
func TestLinearInputGradientAccumulates(t *testing.T) {
	uses := map[string]func(x, w, w2, b *ad.Tensor) *ad.Tensor{
		"once": func(x, w, w2, b *ad.Tensor) *ad.Tensor { return LinearOp(x, w, b) },
		"twice": func(x, w, w2, b *ad.Tensor) *ad.Tensor {
			y := LinearOp(x, w, b)
			return ad.Add(y, LinearOp(ad.MulScalar(x, 0.5), w2, nil)) // x's other use runs its VJP first
		},
	}
	for _, sh := range [][2]int{{1, 1}, {7, 3}, {33, 17}, {127, 8}} {
		rows, in := sh[0], sh[1]
		const out = 5
		x, w, w2, b := rnd(1, -1, 1, rows, in), rnd(2, -1, 1, out, in), rnd(3, -1, 1, out, in), rnd(4, -1, 1, out)
		for name, f := range uses {
			label := fmt.Sprintf("%s %d×%d", name, rows, in)
			require.NoError(t, ad.GradCheck{}.Check(func(in []*ad.Tensor) *ad.Tensor { return f(in[0], in[1], in[2], in[3]) }, x, w, w2, b), label)
			grads := func(dt ad.DType) []float64 {
				tp := ad.NewTape()
				defer tp.Release()
				xs := tp.Watch(ad.Cast(x, dt))
				y := f(xs, tp.Watch(ad.Cast(w, dt)), tp.Watch(ad.Cast(w2, dt)), tp.Watch(ad.Cast(b, dt)))
				tp.BackwardWith(y, ad.Cast(rnd(5, -1, 1, rows, out), dt))
				return tp.Grad(xs).Float64Values()
			}
			near(t, grads(ad.Float64), grads(ad.Float32), 1e-5, label)
		}
	}
}
