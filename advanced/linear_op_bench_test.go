package advanced

import (
	"fmt"
	"testing"

	ad "github.com/mlxtrain/mlxtrain/autodiff"
)

// BenchmarkLinearRecurrence times LinearRecurrence forward and backward in
// float32 over (batch, steps, channels), on the path the registry picks (the
// CPU's unless an accelerator is open).
func BenchmarkLinearRecurrence(b *testing.B) {
	for _, s := range [][3]int{{1, 4096, 8}, {4, 1024, 512}} {
		b.Run(fmt.Sprintf("%dx%dx%d", s[0], s[1], s[2]), func(b *testing.B) {
			rng := ad.NewRNG(1)
			normal := func() *ad.Tensor {
				t := ad.Empty(ad.Float32, s[0], s[1], s[2])
				rng.Normal32(t.Float32s(), 0, 1)
				return t
			}
			a, x, g := ad.Tanh(normal()), normal(), normal()
			b.SetBytes(int64(4 * 4 * a.Len())) // forward and backward, about 4 floats an element
			b.ResetTimer()
			for range b.N {
				tp := ad.NewTape()
				ai := tp.Watch(a.Clone()) // the tape owns what it watches
				h := tp.Keep(LinearRecurrence(ai, tp.Watch(x.Clone()), nil, 1))
				tp.BackwardWith(h, g.Clone())
				tp.Grad(ai).Float32s()
				h.Release()
				tp.Release()
			}
		})
	}
}
