package quant

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/autodiff/gemm"
	"github.com/mlxtrain/mlxtrain/metal"
)

// The decode and batch products of a 4096×4096 layer on one thread, quantized
// against float32 (gemm.Sgemm: BLAS sgemv for one row, sgemm for a batch).
// Compare ns/op of the pairs:
//
//	go test -run XXX -bench 'MatVec|MatMul128' -benchtime 2s ./quant/
func benchSetup(b *testing.B, bits, rows int) (*Matrix, []float32, []float32, []float32) {
	b.Helper()
	prev := metal.Threads()
	metal.SetThreads(1)
	b.Cleanup(func() { metal.SetThreads(prev) })
	rng := rand.New(rand.NewPCG(1, 1))
	const n = 4096
	m, w := randMatrix(b, rng, Params{GroupSize: 64, Bits: bits}, n, n)
	return m, w, randVec(rng, rows*n), make([]float32, rows*n)
}

func benchQuantized(b *testing.B, bits, rows int, path metal.Path) {
	m, _, x, y := benchSetup(b, bits, rows)
	if path == metal.PathAsm && !asmAvailable() {
		b.Skip("no AVX2")
	}
	b.SetBytes(m.Bytes())
	b.ResetTimer()
	defer reportCPU(b, cpuSeconds())
	for b.Loop() {
		MatMulTPath(path, y, x, rows, m)
	}
}

func benchFloat(b *testing.B, rows int) {
	_, w, x, y := benchSetup(b, 4, rows)
	b.SetBytes(int64(4 * len(w)))
	b.ResetTimer()
	defer reportCPU(b, cpuSeconds())
	for b.Loop() {
		gemm.Sgemm(false, true, rows, 4096, 4096, 1, x, 4096, w, 4096, 0, y, 4096)
	}
}

func BenchmarkMatVec4Asm(b *testing.B)    { benchQuantized(b, 4, 1, metal.PathAsm) }
func BenchmarkMatVec8Asm(b *testing.B)    { benchQuantized(b, 8, 1, metal.PathAsm) }
func BenchmarkMatVec4Go(b *testing.B)     { benchQuantized(b, 4, 1, metal.PathGo) }
func BenchmarkMatVec3Go(b *testing.B)     { benchQuantized(b, 3, 1, metal.PathGo) }
func BenchmarkMatVec3Asm(b *testing.B)    { benchQuantized(b, 3, 1, metal.PathAsm) }
func BenchmarkMatVec6Asm(b *testing.B)    { benchQuantized(b, 6, 1, metal.PathAsm) }
func BenchmarkMatVecFloat32(b *testing.B) { benchFloat(b, 1) }

func BenchmarkMatMul128Q4(b *testing.B)      { benchQuantized(b, 4, 128, metal.PathBLAS) }
func BenchmarkMatMul128Q3(b *testing.B)      { benchQuantized(b, 3, 128, metal.PathBLAS) }
func BenchmarkMatMul128Float32(b *testing.B) { benchFloat(b, 128) }

func BenchmarkDequantize4(b *testing.B) {
	m, _, _, _ := benchSetup(b, 4, 1)
	tile := make([]float32, 4096)
	b.ResetTimer()
	defer reportCPU(b, cpuSeconds())
	for b.Loop() {
		for r := range 4096 {
			if !dequantizeRowFast(tile, m, r) {
				m.dequantizeRow(tile, nil, r)
			}
		}
	}
}

// reportCPU adds the process CPU time per op: the machine is shared, so wall
// time alone overstates a kernel's cost when other work takes the cores.
func reportCPU(b *testing.B, start float64) {
	if start >= 0 {
		b.ReportMetric((cpuSeconds()-start)*1e9/float64(b.N), "cpu-ns/op")
	}
}

// The grouped products of a quantized mixture of experts on one thread: 8
// experts of 1024×1024 at 4 bits, 256 tokens routed top-2 (64 rows each), the
// forward (one product per expert with the kernel quantized_matmul picks) and
// the input gradient, against the float stack's GEMMs.
//
//	go test -run XXX -bench ExpertsGrouped -benchtime 2s ./quant/
func BenchmarkExpertsGroupedForward(b *testing.B)  { benchExperts(b, false) }
func BenchmarkExpertsGroupedBackward(b *testing.B) { benchExperts(b, true) }

func benchExperts(b *testing.B, backward bool) {
	prev := metal.Threads()
	metal.SetThreads(1)
	b.Cleanup(func() { metal.SetThreads(prev) })
	rng := rand.New(rand.NewPCG(3, 3))
	const E, n, rows = 8, 1024, 512
	f := autodiff.FromFloat32(randVec(rng, E*n*n), E, n, n)
	x, err := QuantizeExperts(Params{GroupSize: 64, Bits: 4}, f)
	f.Release()
	require.NoError(b, err)
	offsets := make([]int, E+1)
	for e := range offsets {
		offsets[e] = e * rows / E
	}
	in, g := autodiff.FromFloat32(randVec(rng, rows*n), rows, n), autodiff.FromFloat32(randVec(rng, rows*n), rows, n)
	y, dx := autodiff.Empty(autodiff.Float32, rows, n), autodiff.Empty(autodiff.Float32, rows, n)
	b.SetBytes(x.Bytes())
	b.ResetTimer()
	defer reportCPU(b, cpuSeconds())
	for b.Loop() {
		if backward {
			x.groupedBackward(dx, nil, g, offsets)
		} else {
			x.groupedForward(y, in, nil, offsets)
		}
	}
}
