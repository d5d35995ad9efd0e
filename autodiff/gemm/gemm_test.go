package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mlxtrain/mlxtrain/metal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gemmCase is one product: sizes, transposes, padding of each row stride, α and β.
type gemmCase struct {
	m, n, k        int
	transA, transB bool
	padA, padB     int
	padC           int
	alpha, beta    float32
}

func (c gemmCase) String() string {
	return fmt.Sprintf("m%d_n%d_k%d_tA%v_tB%v_pad%d.%d.%d_a%g_b%g", c.m, c.n, c.k, c.transA, c.transB, c.padA, c.padB, c.padC, c.alpha, c.beta)
}

// gemmShapes covers single elements, the 6×16 tile and its edges, odd sizes around
// the blocking (kc 256, mc 144), the column slab (nc 3072), the three ways of
// splitting across workers (rows, columns, k) and empty dimensions.
var gemmShapes = [][3]int{
	{1, 1, 1}, {1, 7, 33}, {7, 1, 127}, {33, 127, 7}, {127, 33, 1}, {7, 7, 7}, {33, 33, 33},
	{6, 16, 5}, {12, 32, 256}, {6, 16, 300}, {7, 17, 257}, {5, 15, 4}, {97, 65, 130},
	{127, 127, 127}, {150, 70, 520}, {8, 2000, 40}, {3, 3100, 3}, {2, 3000, 100}, {1, 300, 1000},
	{33, 17, 1100}, {5, 40, 1030}, {40, 50, 1300}, // k split across the workers
	{0, 5, 3}, {5, 0, 3}, {5, 3, 0}, {0, 0, 0},
}

func gemmCases() []gemmCase {
	var cases []gemmCase
	ab := [][2]float32{{1, 0}, {0.5, 1}, {-1.5, 0.25}}
	for si, s := range gemmShapes {
		for t := range 4 {
			c := gemmCase{m: s[0], n: s[1], k: s[2], transA: t&1 != 0, transB: t&2 != 0}
			c.alpha, c.beta = ab[(si+t)%3][0], ab[(si+t)%3][1]
			if (si+t)%2 == 1 {
				c.padA, c.padB, c.padC = 3, 5, 2
			}
			cases = append(cases, c)
		}
	}
	// α = 0 leaves β·C, even with a NaN-free product skipped.
	cases = append(cases, gemmCase{m: 9, n: 20, k: 11, alpha: 0, beta: 2})
	return cases
}

// operands holds the stored matrices of a case, C padded with a sentinel.
type operands struct {
	a, b, c       []float32
	lda, ldb, ldc int
}

const sentinel = float32(-12345)

func makeOperands(rng *rand.Rand, c gemmCase) operands {
	ar, ac := c.m, c.k
	if c.transA {
		ar, ac = c.k, c.m
	}
	br, bc := c.k, c.n
	if c.transB {
		br, bc = c.n, c.k
	}
	o := operands{lda: ac + c.padA, ldb: bc + c.padB, ldc: c.n + c.padC}
	fill := func(rows, cols, ld int) []float32 {
		x := make([]float32, rows*ld)
		for i := range x {
			x[i] = float32(rng.Float64()*2 - 1)
			if i%ld >= cols {
				x[i] = float32(math.NaN()) // padding must never be read
			}
		}
		return x
	}
	o.a = fill(ar, ac, o.lda)
	o.b = fill(br, bc, o.ldb)
	o.c = fill(c.m, c.n, o.ldc)
	for i := range o.c {
		if i%o.ldc >= c.n {
			o.c[i] = sentinel
		} else if c.beta == 0 {
			o.c[i] = float32(math.NaN()) // β = 0 must not read C
		}
	}
	return o
}

// bound is the tolerance of element (i,j): float32 products summed over k in any
// order stay within k·u·(|α|·Σ|a||b| + |β·c|) of the exact value.
func bound(c gemmCase, o operands, i, j int, cij float32) float64 {
	s := 0.0
	for p := range c.k {
		ai, bi := i*o.lda+p, p*o.ldb+j
		if c.transA {
			ai = p*o.lda + i
		}
		if c.transB {
			bi = j*o.ldb + p
		}
		av, bv := o.a[ai], o.b[bi]
		s += math.Abs(float64(av) * float64(bv))
	}
	s = math.Abs(float64(c.alpha))*s + math.Abs(float64(c.beta)*float64(cij))
	return 2*float64(c.k+2)*0x1p-24*s + 1e-30
}

type sgemmFn func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)

func checkAgainstReference(t *testing.T, rng *rand.Rand, c gemmCase, f sgemmFn) {
	t.Helper()
	o := makeOperands(rng, c)
	want := append([]float32(nil), o.c...)
	if c.beta == 0 {
		for i := range want {
			if want[i] != sentinel {
				want[i] = 0
			}
		}
	}
	orig := append([]float32(nil), want...)
	SgemmReference(c.transA, c.transB, c.m, c.n, c.k, c.alpha, o.a, o.lda, o.b, o.ldb, c.beta, want, o.ldc)
	f(c.transA, c.transB, c.m, c.n, c.k, c.alpha, o.a, o.lda, o.b, o.ldb, c.beta, o.c, o.ldc)
	bad := 0
	for idx, got := range o.c {
		i, j := idx/o.ldc, idx%o.ldc
		if j >= c.n {
			if got != sentinel && bad < 3 {
				t.Errorf("%v: C padding [%d,%d] overwritten with %g", c, i, j, got)
				bad++
			}
			continue
		}
		tol := bound(c, o, i, j, orig[idx])
		if d := math.Abs(float64(got) - float64(want[idx])); !(d <= tol) && bad < 3 {
			t.Errorf("%v: C[%d,%d] = %g, reference %g (|diff| %.3g > %.3g)", c, i, j, got, want[idx], d, tol)
			bad++
		}
	}
}

// requireBLAS skips BLAS tests where the library is missing or switched off, and
// fails instead when MLXTRAIN_REQUIRE_BLAS=1 says the library must be there.
func requireBLAS(t *testing.T) {
	t.Helper()
	if !Available(metal.PathBLAS) {
		if os.Getenv("MLXTRAIN_REQUIRE_BLAS") == "1" {
			t.Fatalf("MLXTRAIN_REQUIRE_BLAS=1 but no system BLAS: %s", BLASLibrary())
		}
		t.Skipf("no system BLAS (install libopenblas0-pthread to test this path): %s", BLASLibrary())
	}
	if !metal.BLASEnabled() {
		t.Skip("the BLAS path is switched off (MLXTRAIN_BLAS=off)")
	}
}

// withThreads sets the worker count for a test and, for more than one, lowers the
// size from which products are split so that the tests' small shapes run the
// parallel code too.
func withThreads(t *testing.T, n int) {
	old, oldMin := metal.Threads(), parallelMinWork
	metal.SetThreads(n)
	if n > 1 {
		parallelMinWork = 1 << 12
	}
	t.Cleanup(func() {
		metal.SetThreads(old)
		parallelMinWork = oldMin
	})
}

func TestGemmPathsMatchReference(t *testing.T) {
	for _, path := range []metal.Path{metal.PathBLAS, metal.PathAsm, metal.PathGo} {
		t.Run(path.String(), func(t *testing.T) {
			switch path {
			case metal.PathBLAS:
				requireBLAS(t)
			case metal.PathAsm:
				if !Available(path) {
					t.Skip("no AVX2/FMA on this CPU")
				}
			}
			for _, threads := range []int{1, 2} {
				t.Run(fmt.Sprintf("threads%d", threads), func(t *testing.T) {
					withThreads(t, threads)
					rng := rand.New(rand.NewPCG(uint64(path), uint64(threads)))
					for _, c := range gemmCases() {
						checkAgainstReference(t, rng, c, func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, cc []float32, ldc int) {
							SgemmPath(path, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, cc, ldc)
						})
					}
				})
			}
		})
	}
}

// TestGemmAsmPackedAMatchesReference runs the assembly path with A packed
// (directA off), as it is for a transposed A, on the row-major cases too.
func TestGemmAsmPackedAMatchesReference(t *testing.T) {
	if !Available(metal.PathAsm) {
		t.Skip("no AVX2/FMA on this CPU")
	}
	old := directA
	directA = false
	defer func() { directA = old }()
	for _, threads := range []int{1, 2} {
		t.Run(fmt.Sprintf("threads%d", threads), func(t *testing.T) {
			withThreads(t, threads)
			rng := rand.New(rand.NewPCG(11, uint64(threads)))
			for _, c := range gemmCases() {
				checkAgainstReference(t, rng, c, func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, cc []float32, ldc int) {
					SgemmPath(metal.PathAsm, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, cc, ldc)
				})
			}
		})
	}
}

// TestGemmAsmKernelsMatchReference runs the assembly path with the AVX2 kernels
// alone and with the AVX-512 ones (where the CPU has them), A read in place and
// packed, on 1, 2 and 3 workers, on the shared cases and on shapes whose column
// panels pair up for the 6×32 kernel with an odd or partial panel left over.
func TestGemmAsmKernelsMatchReference(t *testing.T) {
	if !Available(metal.PathAsm) {
		t.Skip("no AVX2/FMA on this CPU")
	}
	cases := gemmCases()
	for _, s := range [][3]int{{13, 48, 9}, {20, 40, 130}, {64, 80, 33}, {127, 33, 127}, {49, 96, 260}, {7, 64, 1},
		// The AVX-512 edge kernel: 1 to 5 rows left over in a block, whole and
		// alone (fewer rows than a panel), after a full mc block.
		{128, 64, 40}, {4, 64, 20}, {149, 96, 17}, {145, 32, 300}, {147, 64, 5}, {3, 96, 8}, {146, 80, 7}, {1, 32, 3}} {
		for tr := range 4 {
			cases = append(cases, gemmCase{m: s[0], n: s[1], k: s[2], transA: tr&1 != 0, transB: tr&2 != 0, alpha: 1, beta: float32(tr % 2), padA: tr, padB: 1, padC: 3})
		}
	}
	for _, zmm := range []bool{false, true} {
		for _, inPlace := range []bool{true, false} {
			for _, threads := range []int{1, 2, 3} {
				t.Run(fmt.Sprintf("avx512_%v/directA_%v/threads%d", zmm, inPlace, threads), func(t *testing.T) {
					if zmm && !avx512Available() {
						t.Skip("no AVX-512 on this CPU")
					}
					withAVX512(t, zmm)
					old := directA
					directA = inPlace
					defer func() { directA = old }()
					withThreads(t, threads)
					rng := rand.New(rand.NewPCG(17, uint64(threads)))
					for _, c := range cases {
						checkAgainstReference(t, rng, c, func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, cc []float32, ldc int) {
							SgemmPath(metal.PathAsm, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, cc, ldc)
						})
					}
				})
			}
		}
	}
}

// withAVX512 installs the AVX-512 kernels (or removes them) for a test.
func withAVX512(t *testing.T, on bool) {
	was := asmBlocking.panels2 != nil
	useAVX512(on)
	t.Cleanup(func() { useAVX512(was) })
}

// TestGemmAVX512SameAsAVX2 checks that the 6×32 kernels sum in the AVX2
// kernels' order: the same bits on an expert's products of the MoE step.
func TestGemmAVX512SameAsAVX2(t *testing.T) {
	if !avx512Available() {
		t.Skip("no AVX-512 on this CPU")
	}
	withThreads(t, 1)
	rng := rand.New(rand.NewPCG(5, 6))
	for _, c := range []gemmCase{
		{m: 514, n: 512, k: 128, transB: true, alpha: 1}, {m: 514, n: 128, k: 512, alpha: 1},
		{m: 128, n: 512, k: 514, transA: true, alpha: 1}, {m: 61, n: 80, k: 300, alpha: 0.5, beta: 2},
		{m: 512, n: 128, k: 514, transA: true, alpha: 1}, {m: 5, n: 64, k: 33, transB: true, alpha: 1, beta: 1},
		{m: 147, n: 96, k: 40, alpha: 1}, {m: 133, n: 64, k: 7, transA: true, transB: true, alpha: 1, beta: 1},
	} {
		o := makeOperands(rng, c)
		run := func(zmm bool) []float32 {
			withAVX512(t, zmm)
			cc := append([]float32(nil), o.c...)
			for i := range cc {
				if c.beta == 0 && cc[i] != sentinel {
					cc[i] = 0
				}
			}
			SgemmPath(metal.PathAsm, c.transA, c.transB, c.m, c.n, c.k, c.alpha, o.a, o.lda, o.b, o.ldb, c.beta, cc, o.ldc)
			return cc
		}
		want := run(false)
		got := run(true)
		require.Equal(t, want, got, "%v", c)
	}
}

func TestSliceDepth(t *testing.T) {
	for _, c := range [][3]int{{256, 1, 1}, {256, 256, 256}, {256, 257, 257}, {256, 300, 300}, {256, 330, 165}, {256, 514, 257}, {256, 575, 288}, {256, 576, 192}, {256, 2048, 256}, {256, 2050, 257}} {
		assert.Equal(t, c[2], sliceDepth(c[0], c[1]), "kc %d, k %d", c[0], c[1])
	}
}

// TestGemmGoKernelsMatchReference runs the Go path with each Go micro-kernel, not
// only the one this architecture uses.
func TestGemmGoKernelsMatchReference(t *testing.T) {
	old := goBlocking
	defer func() { goBlocking = old }()
	for _, bl := range goBlockings {
		goBlocking = bl
		t.Run(fmt.Sprintf("%dx%d", bl.mr, bl.nr), func(t *testing.T) {
			withThreads(t, 2)
			rng := rand.New(rand.NewPCG(uint64(bl.mr), 5))
			for _, c := range gemmCases() {
				checkAgainstReference(t, rng, c, func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, cc []float32, ldc int) {
					SgemmPath(metal.PathGo, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, cc, ldc)
				})
			}
		})
	}
}

func TestGemmSgemmMatchesReference(t *testing.T) {
	// Whatever the registry picks, with BLAS on and off.
	old := metal.BLASEnabled()
	defer metal.SetBLAS(old)
	for _, on := range []bool{true, false} {
		metal.SetBLAS(on && old)
		rng := rand.New(rand.NewPCG(7, 8))
		for _, c := range gemmCases() {
			checkAgainstReference(t, rng, c, Sgemm)
		}
	}
}

// pathOf runs Sgemm on an m×n×k product with profiling on and returns the path
// the registry chose.
func pathOf(t *testing.T, m, n, k int) metal.Path {
	t.Helper()
	wasOn := metal.Profiling()
	metal.SetProfiling(true)
	metal.ResetProfile()
	defer func() {
		metal.SetProfiling(wasOn)
		metal.ResetProfile()
	}()
	a, b, c := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
	Sgemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
	prof := metal.ProfileSnapshot()
	require.Len(t, prof, 1)
	assert.Equal(t, "matmul", prof[0].Op)
	assert.EqualValues(t, 1, prof[0].Calls)
	return prof[0].Path
}

func TestGemmPicksThroughTheRegistry(t *testing.T) {
	op := metal.Kernels.Op("matmul")
	require.NotNil(t, op)
	assert.Equal(t, []string{"M", "N", "K"}, op.Dims)
	var paths []metal.Path
	for _, im := range op.Impls {
		paths = append(paths, im.Path)
	}
	// the device implementation (tensors only; Sgemm never takes it) comes first
	assert.Equal(t, []metal.Path{metal.PathMetal, metal.PathAsm, metal.PathBLAS, metal.PathGo, metal.PathReference}, paths)

	old := metal.BLASEnabled()
	defer metal.SetBLAS(old)
	fast := metal.PathGo
	if Available(metal.PathAsm) {
		fast = metal.PathAsm
	}
	metal.SetBLAS(false)
	assert.Equal(t, fast, pathOf(t, 64, 64, 64), "BLAS switched off")
	assert.Equal(t, fast, pathOf(t, 1, 1, 1), "without the BLAS the assembly takes every size")
	assert.Equal(t, fast, pathOf(t, 1, 300, 64), "without the BLAS the assembly takes every size")
	if Available(metal.PathBLAS) {
		metal.SetBLAS(true)
		big := metal.PathBLAS
		if Available(metal.PathAsm) {
			big = metal.PathAsm
		}
		assert.Equal(t, big, pathOf(t, 64, 64, 64), "BLAS switched back on")
		assert.Equal(t, big, pathOf(t, 6, 16, 64), "the assembly's tile")
		assert.Equal(t, metal.PathBLAS, pathOf(t, 1, 300, 64), "a vector times a matrix")
		assert.Equal(t, metal.PathBLAS, pathOf(t, 300, 1, 64), "a matrix times a vector")
		assert.Equal(t, metal.PathBLAS, pathOf(t, 5, 300, 64), "fewer rows than the assembly's tile")
		assert.Equal(t, metal.PathBLAS, pathOf(t, 300, 15, 64), "fewer columns than the assembly's tile")
		assert.Equal(t, fast, pathOf(t, 64, 64, 16), "K below the BLAS threshold")
		assert.Equal(t, metal.PathGo, pathOf(t, 5, 15, 16), "thin and K below the BLAS threshold")
	}
}

func TestGemmBLASMissingLibraryIsUnavailable(t *testing.T) {
	lib, err := openBLAS([]string{"libmlxtrain-no-such-blas.so.7"})
	assert.Nil(t, lib)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "libmlxtrain-no-such-blas.so.7")
	lib, err = openBLAS(nil)
	assert.Nil(t, lib)
	assert.Error(t, err)
}

func TestGemmBLASLibrary(t *testing.T) {
	requireBLAS(t)
	name := BLASLibrary()
	assert.False(t, strings.HasPrefix(name, "none"), name)
	t.Logf("system BLAS: %s", name)
}

func TestGemmBadArgumentsPanic(t *testing.T) {
	a, b, c := make([]float32, 12), make([]float32, 12), make([]float32, 9)
	assert.NotPanics(t, func() { Sgemm(false, false, 3, 3, 4, 1, a, 4, b, 3, 0, c, 3) })
	assert.PanicsWithValue(t, "gemm: Sgemm: lda=3 for a of 3×4", func() { Sgemm(false, false, 3, 3, 4, 1, a, 3, b, 3, 0, c, 3) })
	assert.Panics(t, func() { Sgemm(false, false, 3, 3, 4, 1, a[:11], 4, b, 3, 0, c, 3) })
	assert.Panics(t, func() { Sgemm(false, true, 3, 3, 4, 1, a, 4, b, 3, 0, c, 3) }, "Bᵀ stored 3×4 needs ldb ≥ 4")
	assert.Panics(t, func() { Sgemm(false, false, -1, 3, 4, 1, a, 4, b, 3, 0, c, 3) })
	assert.Panics(t, func() {
		Dgemm(false, false, 3, 3, 4, 1, make([]float64, 12), 4, make([]float64, 12), 3, 0, make([]float64, 8), 3)
	})
	if !Available(metal.PathBLAS) {
		assert.Panics(t, func() { SgemmPath(metal.PathBLAS, false, false, 3, 3, 4, 1, a, 4, b, 3, 0, c, 3) })
	}
}

func TestDgemmMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, threads := range []int{1, 2} {
		withThreads(t, threads)
		for _, c := range gemmCases() {
			ar, ac := c.m, c.k
			if c.transA {
				ar, ac = c.k, c.m
			}
			br, bc := c.k, c.n
			if c.transB {
				br, bc = c.n, c.k
			}
			lda, ldb, ldc := ac+c.padA, bc+c.padB, c.n+c.padC
			rnd := func(n int) []float64 {
				x := make([]float64, n)
				for i := range x {
					x[i] = rng.Float64()*2 - 1
				}
				return x
			}
			a, b, cc := rnd(ar*lda), rnd(br*ldb), rnd(c.m*ldc)
			want := append([]float64(nil), cc...)
			for i := range c.m {
				for j := range c.n {
					s := 0.0
					for p := range c.k {
						ai, bi := i*lda+p, p*ldb+j
						if c.transA {
							ai = p*lda + i
						}
						if c.transB {
							bi = j*ldb + p
						}
						av, bv := a[ai], b[bi]
						s += av * bv
					}
					want[i*ldc+j] = float64(c.alpha)*s + float64(c.beta)*want[i*ldc+j]
				}
			}
			Dgemm(c.transA, c.transB, c.m, c.n, c.k, float64(c.alpha), a, lda, b, ldb, float64(c.beta), cc, ldc)
			assert.InDeltaSlice(t, want, cc, 1e-12*float64(c.k+1), "%v threads %d", c, threads)
		}
	}
}

func TestGemmWorkersBarrier(t *testing.T) {
	// More workers than processors still meet at every barrier.
	const workers, rounds = 5, 200
	var counts [workers]int
	bar := newBarrier(workers)
	var sum atomic.Int64
	runWorkers(workers, bar, func(w int) {
		for r := range rounds {
			sum.Add(1)
			if r%50 == 0 && w == 0 {
				time.Sleep(2 * barrierSpin) // the others give up spinning and block
			}
			bar.wait()
			// every worker has added its r+1 by now, none its r+2 yet
			if got := sum.Load(); got < int64(workers*(r+1)) || got > int64(workers*(r+2)) {
				panic(fmt.Sprintf("round %d: sum %d", r, got))
			}
			counts[w]++
			bar.wait()
		}
	})
	for _, c := range counts {
		assert.Equal(t, rounds, c)
	}

	// A panic in one worker reaches the caller, and the others stop waiting.
	bar = newBarrier(3)
	defer func() {
		r := recover()
		wp, ok := r.(*metal.WorkerPanic)
		require.True(t, ok, "%v", r)
		assert.Equal(t, "worker 2 failed", wp.Value)
	}()
	runWorkers(3, bar, func(w int) {
		if w == 2 {
			panic("worker 2 failed")
		}
		bar.wait()
	})
	t.Fatal("runWorkers returned")
}

// TestGemmEpilogue checks SgemmEpilogue fused (every product packed, one and two
// workers) and unfused: the epilogue must see every element of C exactly once,
// after its product is complete (it doubles C, undone afterwards, so a depth
// slice added after it would show), and never the padding.
func TestGemmEpilogue(t *testing.T) {
	for _, fuse := range []bool{true, false} {
		for _, threads := range []int{1, 2} {
			for _, serial := range []bool{false, true} {
				if serial && threads == 1 {
					continue
				}
				t.Run(fmt.Sprintf("fuse%v_threads%d_serial%v", fuse, threads, serial), func(t *testing.T) {
					withThreads(t, threads)
					old, oldForce := epilogueMinWork, forceFuse
					if fuse {
						epilogueMinWork, forceFuse = 0, true
					} else {
						epilogueMinWork = math.MaxInt
					}
					defer func() { epilogueMinWork, forceFuse = old, oldForce }()
					rng := rand.New(rand.NewPCG(31, uint64(threads)))
					for _, c := range gemmCases() {
						checkAgainstReference(t, rng, c, func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, cc []float32, ldc int) {
							visits := make([]atomic.Int32, m*n)
							f := SgemmEpilogue
							if serial {
								f = SgemmEpilogueSerial
							}
							f(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, cc, ldc, func(i0, i1, j0, j1 int) {
								require.True(t, 0 <= i0 && i0 < i1 && i1 <= m && 0 <= j0 && j0 < j1 && j1 <= n, "block [%d,%d)×[%d,%d) of %d×%d", i0, i1, j0, j1, m, n)
								for i := i0; i < i1; i++ {
									for j := j0; j < j1; j++ {
										visits[i*n+j].Add(1)
										cc[i*ldc+j] *= 2
									}
								}
							})
							for i := range m {
								for j := range n {
									require.Equal(t, int32(1), visits[i*n+j].Load(), "%v: C[%d,%d] visits", c, i, j)
									cc[i*ldc+j] /= 2
								}
							}
						})
					}
				})
			}
		}
	}
}

// SgemmSerial against the reference, with two workers configured and products
// small enough to be split: it must compute them alone, whatever the path.
func TestGemmSerialMatchesReference(t *testing.T) {
	withThreads(t, 2)
	old := metal.BLASEnabled()
	defer metal.SetBLAS(old)
	for _, on := range []bool{true, false} {
		metal.SetBLAS(on && old)
		rng := rand.New(rand.NewPCG(41, 42))
		for _, c := range gemmCases() {
			checkAgainstReference(t, rng, c, SgemmSerial)
		}
	}
}

// SgemmBoth computes each of its two products as Sgemm would, on one worker and
// on two, with its usual pieces and with small ones (blocks of 6 rows, k split
// from 32): every case paired with the next.
func TestGemmBothMatchesReference(t *testing.T) {
	for _, cfg := range []struct {
		threads          int
		pieces, rows, kc int
	}{{1, 8, 48, 256}, {2, 8, 48, 256}, {2, 4, 6, 8}, {3, 3, 6, 8}} {
		t.Run(fmt.Sprintf("threads%d_pieces%d_rows%d_kc%d", cfg.threads, cfg.pieces, cfg.rows, cfg.kc), func(t *testing.T) {
			withThreads(t, cfg.threads)
			oldPieces, oldRows, oldKc := bothPieces, bothMinRows, bothKc
			bothPieces, bothMinRows, bothKc = cfg.pieces, cfg.rows, cfg.kc
			t.Cleanup(func() { bothPieces, bothMinRows, bothKc = oldPieces, oldRows, oldKc })
			threads := cfg.threads
			rng := rand.New(rand.NewPCG(51, uint64(threads)))
			cases := gemmCases()
			for i := range cases {
				first, second := cases[i], cases[(i+1)%len(cases)]
				// The first product runs inside the second's check, so both are
				// computed by one SgemmBoth call.
				checkAgainstReference(t, rng, second, func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, cc []float32, ldc int) {
					checkAgainstReference(t, rng, first, func(transA1, transB1 bool, m1, n1, k1 int, alpha1 float32, a1 []float32, lda1 int, b1 []float32, ldb1 int, beta1 float32, cc1 []float32, ldc1 int) {
						SgemmBoth(
							Product{TransA: transA1, TransB: transB1, M: m1, N: n1, K: k1, Alpha: alpha1, A: a1, LDA: lda1, B: b1, LDB: ldb1, Beta: beta1, C: cc1, LDC: ldc1},
							Product{TransA: transA, TransB: transB, M: m, N: n, K: k, Alpha: alpha, A: a, LDA: lda, B: b, LDB: ldb, Beta: beta, C: cc, LDC: ldc})
					})
				})
			}
		})
	}
}

// TestGemmEdgeKernel runs the AVX-512 edge kernel alone on every row count it
// takes, against float64 sums of the packed panels: rows [0, rows) and 32
// columns of C are set, the rest of C (the padded panel's rows, the columns
// past the strip) is not touched.
func TestGemmEdgeKernel(t *testing.T) {
	if !avx512Available() {
		t.Skip("no AVX-512 on this CPU")
	}
	withAVX512(t, true)
	edge := asmBlocking.edge2
	require.NotNil(t, edge)
	rng := rand.New(rand.NewPCG(9, 10))
	const ldc = 37
	for _, k := range []int{1, 3, 4, 7, 33, 127} {
		for rows := 1; rows < 6; rows++ {
			for _, ab := range [][2]float32{{1, 0}, {0.5, 0}, {1, 1}, {-1.5, 0.25}} {
				alpha, beta := ab[0], ab[1]
				a := make([]float32, 6*k) // a packed panel: rows past `rows` are zero
				for p := range k {
					for i := range rows {
						a[6*p+i] = float32(rng.Float64() - 0.5)
					}
				}
				b := make([]float32, 32*k) // two packed 16-column panels
				for i := range b {
					b[i] = float32(rng.Float64() - 0.5)
				}
				c := make([]float32, 6*ldc)
				for i := range c {
					c[i] = sentinel
				}
				for i := range rows {
					for j := range 32 {
						c[i*ldc+j] = float32(rng.Float64() - 0.5)
					}
				}
				old := append([]float32(nil), c...)
				edge(k, a, b, c, ldc, alpha, beta, rows)
				for i := range 6 {
					for j := range ldc {
						got := c[i*ldc+j]
						if i >= rows || j >= 32 {
							require.Equal(t, old[i*ldc+j], got, "k=%d rows=%d: C[%d][%d] touched", k, rows, i, j)
							continue
						}
						var s float64
						for p := range k {
							s += float64(a[6*p+i]) * float64(b[(j/16)*16*k+16*p+j%16])
						}
						want := float64(alpha)*s + float64(beta)*float64(old[i*ldc+j])
						assert.InDelta(t, want, float64(got), 1e-5*(1+math.Abs(want))*float64(k), "k=%d rows=%d α=%g β=%g C[%d][%d]", k, rows, alpha, beta, i, j)
					}
				}
			}
		}
	}
}
