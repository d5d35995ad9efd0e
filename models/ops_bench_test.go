package models_test

import (
	"testing"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/autodiff/gemm"
	"github.com/mlxtrain/mlxtrain/internal/vecmath"
	"github.com/mlxtrain/mlxtrain/metal"
	"github.com/mlxtrain/mlxtrain/models"
)

// BenchmarkLinearGELU is the MLP up-projection of the tiny GPT (2048 rows, 128 →
// 512, bias, GELU with its derivative) forward: "fused" is LinearGELU (the GELU
// as the GEMM's epilogue), "unfused" the GEMM on its usual path followed by a
// parallel pass of the GELU kernel over the result. cpu-ms/op is process CPU time.
//
//	MLXTRAIN_THREADS=1 go test ./models -run '^$' -bench LinearGELU -count 5
func BenchmarkLinearGELU(b *testing.B) {
	const rows, in, out = 2048, 128, 512
	rng := autodiff.NewRNG(1)
	x := autodiff.RandNormal(rng, autodiff.Float32, 0, 1, rows, in)
	w := autodiff.RandNormal(rng, autodiff.Float32, 0, 0.1, out, in)
	bias := autodiff.RandNormal(rng, autodiff.Float32, 0, 0.1, out)
	y, d := autodiff.Empty(autodiff.Float32, rows, out), autodiff.Empty(autodiff.Float32, rows, out)
	run := func(name string, f func()) {
		b.Run(name, func(b *testing.B) {
			cpu := cpuSeconds()
			for b.Loop() {
				f()
			}
			b.ReportMetric((cpuSeconds()-cpu)*1e3/float64(b.N), "cpu-ms/op")
		})
	}
	run("fused", func() { models.LinearGELU(x, w, bias).Release() })
	run("unfused", func() {
		ys, ds, bs := y.Float32s(), d.Float32s(), bias.Float32s()
		gemm.Sgemm(false, true, rows, out, in, 1, x.Float32s(), in, w.Float32s(), in, 0, ys, out)
		metal.ParallelFor(rows, 32, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				row := ys[r*out : (r+1)*out]
				vecmath.GELU(row, ds[r*out:(r+1)*out], row, bs)
			}
		})
	})
}
