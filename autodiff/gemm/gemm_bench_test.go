package gemm

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/mlxtrain/mlxtrain/metal"
)

// benchShapes are the products the targets name: cubes, a wide projection and the
// small-k shape of a transformer layer with its transposes (as in backward).
var benchShapes = []struct {
	m, n, k        int
	transA, transB bool
}{
	{256, 256, 256, false, false},
	{512, 512, 512, false, false},
	{1024, 1024, 1024, false, false},
	{2048, 2048, 2048, false, false},
	{4096, 2048, 512, false, false},
	{2048, 512, 128, false, false},
	{2048, 512, 128, true, false},
	{2048, 512, 128, false, true},
	{2048, 512, 128, true, true},
}

// benchPaths are the implementations compared: "openblas" calls cblas_sgemm
// directly through purego with OpenBLAS's own threads (the baseline), the others
// go through SgemmPath.
var benchPaths = []string{"openblas", "blas", "asm", "go"}

// BenchmarkGemm reports GFLOP/s for every path, shape and 1 or 2 threads:
//
//	go test -run '^$' -bench 'Gemm$' -benchtime 20x -count 3 ./autodiff/gemm/
func BenchmarkGemm(b *testing.B) {
	for _, s := range benchShapes {
		tr := ""
		if s.transA {
			tr += "_tA"
		}
		if s.transB {
			tr += "_tB"
		}
		for _, path := range benchPaths {
			for _, threads := range []int{1, 2} {
				name := fmt.Sprintf("%dx%dx%d%s/%s/threads%d", s.m, s.n, s.k, tr, path, threads)
				b.Run(name, func(b *testing.B) {
					benchGemm(b, path, threads, s.transA, s.transB, s.m, s.n, s.k)
				})
			}
		}
	}
}

func benchGemm(b *testing.B, path string, threads int, transA, transB bool, m, n, k int) {
	if path == "go" && m*n*k > 512*512*512 {
		b.Skip("the Go path is too slow for this size to be worth the wait")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	a, bm, c := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
	for i := range a {
		a[i] = float32(rng.Float64() - 0.5)
	}
	for i := range bm {
		bm[i] = float32(rng.Float64() - 0.5)
	}
	lda, ldb := k, n
	if transA {
		lda = m
	}
	if transB {
		ldb = k
	}
	old := metal.Threads()
	metal.SetThreads(threads)
	defer metal.SetThreads(old)
	var run func()
	switch path {
	case "openblas":
		lib, _ := loadBLAS()
		if lib == nil || lib.setThreads == nil {
			b.Skip("OpenBLAS not found: " + BLASLibrary())
		}
		lib.setThreads(int32(threads))
		defer func() {
			b.StopTimer()
			lib.setThreads(1)
			if threads > 1 {
				// OpenBLAS's pool threads spin for a while after a call; let them
				// fall asleep before the next benchmark runs on the same cores.
				time.Sleep(500 * time.Millisecond)
			}
		}()
		run = func() {
			lib.sgemm(cblasRowMajor, cblasTranspose(transA), cblasTranspose(transB), int32(m), int32(n), int32(k),
				1, &a[0], int32(lda), &bm[0], int32(ldb), 0, &c[0], int32(n))
		}
	default:
		p := map[string]metal.Path{"blas": metal.PathBLAS, "asm": metal.PathAsm, "go": metal.PathGo}[path]
		if !Available(p) {
			b.Skipf("path %s not available here", path)
		}
		run = func() { SgemmPath(p, transA, transB, m, n, k, 1, a, lda, bm, ldb, 0, c, n) }
	}
	run() // warm up: library loading, packing buffers
	b.ResetTimer()
	cpu := cpuSeconds()
	for range b.N {
		run()
	}
	flop := 2 * float64(m) * float64(n) * float64(k) * float64(b.N)
	b.ReportMetric(flop/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	if cpu >= 0 && threads == 1 {
		// Per second of the process's CPU time: steadier on a shared machine.
		b.ReportMetric(flop/(cpuSeconds()-cpu)/1e9, "cpu-GFLOP/s")
	}
}

// BenchmarkGemmSmall times small and thin products on every path (one thread), to
// place the thresholds of the registry (the sizes below which a path's fixed cost
// loses) and to follow vector-matrix products (decoding one token):
//
//	go test -run '^$' -bench 'GemmSmall' -benchtime 200ms ./autodiff/gemm/
func BenchmarkGemmSmall(b *testing.B) {
	sizes := [][3]int{{1, 1, 1}, {2, 2, 2}, {3, 3, 3}, {4, 4, 4}, {6, 6, 6}, {8, 8, 8}, {12, 12, 12}, {16, 16, 16},
		{32, 32, 32}, {64, 64, 64}, {1, 256, 256}, {256, 1, 256}, {256, 256, 1}, {2, 512, 64}, {64, 64, 2},
		{1, 4096, 4096}, {4, 4096, 4096}}
	paths := []metal.Path{metal.PathBLAS, metal.PathAsm, metal.PathGo, metal.PathReference}
	for _, s := range sizes {
		for _, p := range paths {
			b.Run(fmt.Sprintf("%dx%dx%d/%s", s[0], s[1], s[2], p), func(b *testing.B) {
				if !Available(p) {
					b.Skipf("path %s not available", p)
				}
				if p == metal.PathReference && s[0]*s[1]*s[2] > 1<<22 {
					b.Skip("too slow to be worth the wait")
				}
				old := metal.Threads()
				metal.SetThreads(1)
				defer metal.SetThreads(old)
				m, n, k := s[0], s[1], s[2]
				x, y, z := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
				for b.Loop() {
					SgemmPath(p, false, false, m, n, k, 1, x, k, y, n, 0, z, n)
				}
				b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// BenchmarkGemmBlocking times the assembly path on one thread under other cache
// blockings (mc, kc, nc), the measurement behind asmBlocking's values.
func BenchmarkGemmBlocking(b *testing.B) {
	if !Available(metal.PathAsm) {
		b.Skip("no AVX2/FMA")
	}
	shapes := [][3]int{{1024, 1024, 1024}, {2048, 512, 128}, {4096, 2048, 512}}
	blockings := [][3]int{{144, 256, 3072}, {96, 384, 3072}, {144, 384, 3072}, {192, 384, 3072},
		{72, 512, 3072}, {96, 512, 3072}, {120, 512, 3072}, {144, 512, 3072}, {96, 512, 1536}}
	old := asmBlocking
	defer func() { asmBlocking = old }()
	for _, s := range shapes {
		for _, bl := range blockings {
			b.Run(fmt.Sprintf("%dx%dx%d/mc%d_kc%d_nc%d", s[0], s[1], s[2], bl[0], bl[1], bl[2]), func(b *testing.B) {
				asmBlocking.mc, asmBlocking.kc, asmBlocking.nc = bl[0], bl[1], bl[2]
				defer func() { asmBlocking = old }()
				benchGemm(b, "asm", 1, false, false, s[0], s[1], s[2])
			})
		}
	}
}

// modelShapes are the products of a training step of the tiny GPT of
// models.BenchmarkTinyGPTStep (2048 tokens, d 128, MLP 512, QKV 384): the forward
// X·Wᵀ (transB), the input gradient dY·W and the weight gradient dYᵀ·X (transA).
var modelShapes = []struct {
	m, n, k        int
	transA, transB bool
}{
	{2048, 384, 128, false, true}, {2048, 128, 128, false, true}, {2048, 512, 128, false, true}, {2048, 128, 512, false, true},
	{2048, 128, 384, false, false}, {2048, 128, 128, false, false}, {2048, 128, 512, false, false}, {2048, 512, 128, false, false},
	{384, 128, 2048, true, false}, {128, 128, 2048, true, false}, {512, 128, 2048, true, false}, {128, 512, 2048, true, false},
}

// BenchmarkGemmModelShapes reports GFLOP/s of the BLAS and assembly paths on the
// products of a tiny GPT training step, on 1 and 2 threads:
//
//	go test -run '^$' -bench 'GemmModelShapes' -benchtime 200x -count 3 ./autodiff/gemm/
func BenchmarkGemmModelShapes(b *testing.B) {
	for _, s := range modelShapes {
		tr := "nn"
		switch {
		case s.transA:
			tr = "tn"
		case s.transB:
			tr = "nt"
		}
		for _, path := range []string{"blas", "asm"} {
			for _, threads := range []int{1, 2} {
				b.Run(fmt.Sprintf("%dx%dx%d_%s/%s/threads%d", s.m, s.n, s.k, tr, path, threads), func(b *testing.B) {
					benchGemm(b, path, threads, s.transA, s.transB, s.m, s.n, s.k)
				})
			}
		}
	}
}

// expertShapes are one expert's products in the top-2-of-8 MoE of the tiny GPT
// (models.BenchmarkTinyMoEStep): about 512 rows per expert (2048 tokens × 2 / 8,
// here 514, not a multiple of the tile), d 128, hidden 512. Forward x·W1ᵀ and
// h·W2ᵀ (transB), input gradients dy·W2 and dh·W1, weight gradients dyᵀ·h and
// dhᵀ·x (transA).
var expertShapes = []struct {
	m, n, k        int
	transA, transB bool
}{
	{514, 512, 128, false, true}, {514, 128, 512, false, true},
	{514, 512, 128, false, false}, {514, 128, 512, false, false},
	{128, 512, 514, true, false}, {512, 128, 514, true, false},
}

// BenchmarkGemmExpertShapes reports GFLOP/s of the assembly path on one
// expert's products of the MoE step, on one thread. "warm" runs one product
// over and over (its operands stay in cache); "cold" cycles through copies of
// the operands and C spanning 64 MiB, as in a training step, where each
// expert's activations were last touched several experts ago. cpu-GFLOP/s
// counts the process's CPU time instead of the wall clock:
//
//	go test -run '^$' -bench 'GemmExpertShapes' -benchtime 400x -count 3 ./autodiff/gemm/
func BenchmarkGemmExpertShapes(b *testing.B) {
	for _, s := range expertShapes {
		tr := "nn"
		switch {
		case s.transA:
			tr = "tn"
		case s.transB:
			tr = "nt"
		}
		for _, cold := range []bool{false, true} {
			name := "warm"
			if cold {
				name = "cold"
			}
			for _, zmm := range []bool{false, true} {
				kern := "avx2"
				if zmm {
					kern = "avx512"
				}
				b.Run(fmt.Sprintf("%dx%dx%d_%s/%s/%s", s.m, s.n, s.k, tr, name, kern), func(b *testing.B) {
					if zmm && !avx512Available() {
						b.Skip("no AVX-512 here")
					}
					defer useAVX512(asmBlocking.panels2 != nil)
					useAVX512(zmm)
					benchExpert(b, cold, s.transA, s.transB, s.m, s.n, s.k)
				})
			}
		}
	}
}

func benchExpert(b *testing.B, cold bool, transA, transB bool, m, n, k int) {
	old := metal.Threads()
	metal.SetThreads(1)
	defer metal.SetThreads(old)
	copies := 1
	if cold {
		copies = max(1, (64<<20)/(4*(m*k+k*n+m*n)))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	type operands struct{ a, b, c []float32 }
	ops := make([]operands, copies)
	for i := range ops {
		o := operands{make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)}
		for j := range o.a {
			o.a[j] = float32(rng.Float64() - 0.5)
		}
		for j := range o.b {
			o.b[j] = float32(rng.Float64() - 0.5)
		}
		ops[i] = o
	}
	lda, ldb := k, n
	if transA {
		lda = m
	}
	if transB {
		ldb = k
	}
	run := func(i int) {
		o := ops[i%copies]
		SgemmPath(metal.PathAsm, transA, transB, m, n, k, 1, o.a, lda, o.b, ldb, 0, o.c, n)
	}
	run(0)
	b.ResetTimer()
	cpu := cpuSeconds()
	for i := range b.N {
		run(i + 1)
	}
	flop := 2 * float64(m) * float64(n) * float64(k) * float64(b.N)
	b.ReportMetric(flop/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	if cpu >= 0 {
		// Per second of the process's CPU time: steadier on a shared machine.
		b.ReportMetric(flop/(cpuSeconds()-cpu)/1e9, "cpu-GFLOP/s")
	}
}
