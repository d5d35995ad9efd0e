package optim

import (
	"fmt"
	"math"
	"testing"

	"github.com/mlxtrain/mlxtrain/metal"
)

// BenchmarkAdamWKernel runs the fused AdamW update on 10M float32 parameters. It
// reads p, g, m, v and writes p, m, v: 28 bytes an element, reported as GB/s.
func BenchmarkAdamWKernel(b *testing.B) {
	const n = 10_000_000
	p, g, m, v := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
	// Fresh values for each run, so no run drifts into subnormal moments.
	reset := func() {
		for i := range p {
			p[i] = float32(i%97) * 0.01
			g[i] = float32(i%13)/2 - 3 + 0.01
			m[i] = 0.1
			v[i] = 0.2
		}
	}
	defer metal.SetThreads(metal.Threads())
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			metal.SetThreads(threads)
			reset()
			b.SetBytes(28 * n)
			for b.Loop() {
				AdamWKernel(p, g, m, v, 1e-3, 0.9, 0.95, 1e-8, 0.1, 0.5, 0.5)
			}
			b.ReportMetric(28*n*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
		// The portable Go loop, which AdamWKernel takes without AVX (and for float64).
		b.Run(fmt.Sprintf("go/threads=%d", threads), func(b *testing.B) {
			metal.SetThreads(threads)
			reset()
			b.SetBytes(28 * n)
			for b.Loop() {
				adamwGo(p, g, m, v, 1e-3/0.5, 0.9, 0.95, 1e-8, 1/float32(math.Sqrt(0.5)), 1-1e-4)
			}
			b.ReportMetric(28*n*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
}

// BenchmarkGlobalNorm sums the squares of 10M float32 gradients (4 bytes an element).
func BenchmarkGlobalNorm(b *testing.B) {
	const n = 10_000_000
	g := make([]float32, n)
	for i := range g {
		g[i] = float32(i%13) - 6
	}
	defer metal.SetThreads(metal.Threads())
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			metal.SetThreads(threads)
			b.SetBytes(4 * n)
			for b.Loop() {
				sumSquares(g)
			}
			b.ReportMetric(4*n*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
}
