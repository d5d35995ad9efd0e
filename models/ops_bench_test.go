package models_test

import (
	"fmt"
	"testing"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/autodiff/gemm"
	"github.com/mlxtrain/mlxtrain/internal/vecmath"
	"github.com/mlxtrain/mlxtrain/layers"
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

// BenchmarkResidualProjection compares two ways of computing res + x·Wᵀ + b for
// the tiny GPT's o_proj (128 → 128) and down_proj (512 → 128) on 2048 rows:
// "prefill" writes res + b into the output and lets the GEMM (its usual path)
// accumulate onto it; "epilogue" runs the packed GEMM and adds res + b in its
// epilogue.
func BenchmarkResidualProjection(b *testing.B) {
	const rows, out = 2048, 128
	for _, in := range []int{128, 512} {
		rng := autodiff.NewRNG(1)
		x := autodiff.RandNormal(rng, autodiff.Float32, 0, 1, rows, in).Float32s()
		w := autodiff.RandNormal(rng, autodiff.Float32, 0, 0.1, out, in).Float32s()
		res := autodiff.RandNormal(rng, autodiff.Float32, 0, 1, rows, out).Float32s()
		bias := autodiff.RandNormal(rng, autodiff.Float32, 0, 0.1, out).Float32s()
		y := make([]float32, rows*out)
		run := func(name string, f func()) {
			b.Run(fmt.Sprintf("in%d/%s", in, name), func(b *testing.B) {
				cpu := cpuSeconds()
				for b.Loop() {
					f()
				}
				b.ReportMetric((cpuSeconds()-cpu)*1e3/float64(b.N), "cpu-ms/op")
			})
		}
		run("prefill", func() {
			metal.ParallelFor(rows, 64, func(lo, hi int) {
				for r := lo; r < hi; r++ {
					copy(y[r*out:(r+1)*out], res[r*out:(r+1)*out])
					vecmath.AddTo(y[r*out:(r+1)*out], bias)
				}
			})
			gemm.Sgemm(false, true, rows, out, in, 1, x, in, w, in, 1, y, out)
		})
		run("epilogue", func() {
			gemm.SgemmEpilogue(false, true, rows, out, in, 1, x, in, w, in, 0, y, out, func(i0, i1, j0, j1 int) {
				for r := i0; r < i1; r++ {
					row := y[r*out+j0 : r*out+j1]
					vecmath.AddTo(row, res[r*out+j0:r*out+j1])
					vecmath.AddTo(row, bias[j0:j1])
				}
			})
		})
	}
}

// BenchmarkLayerNorm is the float32 LayerNorm of the tiny GPT (2048 rows of 128)
// on the residual stream: "forward" the normalisation alone, "backward" the
// forward and backward of LN(x) + x, whose backward adds LN's dx into x's
// gradient (as in a pre-LayerNorm block). cpu-ms/op is process CPU time.
//
//	MLXTRAIN_THREADS=1 go test ./models -run '^$' -bench LayerNorm -count 5
func BenchmarkLayerNorm(b *testing.B) {
	const rows, d = 2048, 128
	rng := autodiff.NewRNG(1)
	x := autodiff.RandNormal(rng, autodiff.Float32, 0, 1, rows, d)
	seed := autodiff.RandNormal(rng, autodiff.Float32, 0, 1, rows, d)
	ln := models.LayerNorm{LayerNorm: layers.NewLayerNorm(autodiff.Float32, d, 1e-5, true)}
	run := func(name string, f func()) {
		b.Run(name, func(b *testing.B) {
			cpu := cpuSeconds()
			for b.Loop() {
				f()
			}
			b.ReportMetric((cpuSeconds()-cpu)*1e3/float64(b.N), "cpu-ms/op")
		})
	}
	run("forward", func() { ln.Forward(nil, x).Release() })
	run("backward", func() {
		tp := autodiff.NewTape()
		xw := tp.Watch(x)
		tp.BackwardWith(autodiff.Add(ln.Forward(&layers.Ctx{Tape: tp}, xw), xw), seed.Clone())
		tp.Release()
	})
}
