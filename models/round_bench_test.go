package models

import (
	"testing"

	"github.com/mlxtrain/mlxtrain/autodiff"
)

func BenchmarkRoundHalf(b *testing.B) {
	x := autodiff.RandNormal(autodiff.NewRNG(1), autodiff.Float32, 0, 1, 1<<20)
	for _, dt := range []autodiff.DType{autodiff.BFloat16, autodiff.Float16} {
		b.Run("round_"+dt.String(), func(b *testing.B) {
			b.SetBytes(4 << 20)
			for b.Loop() {
				roundHalfKernel(x.Float32s(), dt)
			}
		})
		b.Run("store_widen_"+dt.String(), func(b *testing.B) {
			b.SetBytes(4 << 20)
			for b.Loop() {
				h := storeHalf(x, dt)
				w := widen(h, autodiff.Float32)
				h.Release()
				w.Release()
			}
		})
	}
}
