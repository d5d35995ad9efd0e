// Package gemm is the CPU matrix multiply behind autodiff's MatMul: C = α·op(A)·op(B)
// + β·C on row-major float32 (Sgemm) and float64 (Dgemm) slices.
//
// Sgemm takes, in order of preference, a packed, cache-blocked kernel with an
// AVX2/FMA micro-kernel in assembly (amd64; all but thin products), the system
// BLAS found at run time through purego (OpenBLAS on Linux, Accelerate on macOS;
// MLXTRAIN_BLAS=off turns it off), the same blocking with a Go micro-kernel (every
// CPU), and SgemmReference. The choice goes through the "matmul" op of
// metal.Kernels, whose thresholds MLXTRAIN_MATMUL_MIN_{M,N,K}[_PATH] override;
// every path splits its work across metal.Threads() workers (SgemmSerial keeps a
// product on the calling goroutine).
package gemm

import (
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/mlxtrain/mlxtrain/metal"
)

// sgemmFunc is the signature every float32 implementation shares. Arguments have
// been checked and m, n, k are positive and alpha non-zero when it runs.
type sgemmFunc func(workers int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)

var (
	registered *metal.Op // every implementation, the device one first, as registered
	matmulOp   *metal.Op // the CPU implementations, which Sgemm picks from
	noBLASOp   *metal.Op // the same without the BLAS, the assembly taking every size, for MLXTRAIN_BLAS=off
)

// Thresholds (sizes are the op's dims M, N, K), measured on a 2-core Zen4 with
// BenchmarkGemmSmall and BenchmarkGemmModelShapes. Since its packing moved to
// vector code, the assembly runs the products of a training step as fast as
// OpenBLAS 0.3.21's AVX-512 kernels on one thread (≈ 100 GFLOP/s) and faster on
// two (its workers share one packed B block, where the BLAS calls split C and pack
// B each), and only the assembly fuses an epilogue (SgemmEpilogue); so it comes
// first. The BLAS keeps thin products, where the assembly's 6×16 tile is mostly
// padding: fewer than 6 rows or 16 columns (1×256×256: 4.6 µs against 9.7 µs,
// through cblas_sgemv; 2×512×64: 2.8 µs against 13.6 µs), from K = 32 (a call
// into the BLAS costs about 1 µs, purego and the library's own checks). The Go
// loops take the rest, which is small. Without the BLAS (MLXTRAIN_BLAS=off, or no
// library) the assembly takes every size: asmMinNoBLAS, whose dims follow the
// MLXTRAIN_MATMUL_MIN_<DIM>[_ASM] variables too. The reference is only reached
// through overrides (MLXTRAIN_MATMUL_MIN_K_GO=..., say) or SgemmPath.
var (
	asmMin       = []int{6, 16, 0}
	blasMin      = []int{0, 0, 32}
	goMin        = []int{0, 0, 0}
	asmMinNoBLAS = []int{0, 0, 0}
)

func init() {
	// The device implementation works on tensors (autodiff.MatMulT and the
	// layers' linear ops use it), not on the slices Sgemm takes.
	asm := &metal.Impl{Path: metal.PathAsm, Min: append([]int(nil), asmMin...), Available: asmAvailable, Fn: sgemmFunc(sgemmAsm)}
	blas := &metal.Impl{Path: metal.PathBLAS, Min: append([]int(nil), blasMin...), Available: blasAvailable, Fn: sgemmFunc(sgemmBLAS)}
	goImpl := &metal.Impl{Path: metal.PathGo, Min: append([]int(nil), goMin...), Fn: sgemmFunc(sgemmGo)}
	ref := &metal.Impl{Path: metal.PathReference, Fn: sgemmFunc(func(_ int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
		sgemmReference(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	})}
	registered = metal.Kernels.Register("matmul", []string{"M", "N", "K"}, metal.DeviceImpl("matmul", nil), asm, blas, goImpl, ref)
	// Share the Impl values, so thresholds and Disable apply to all.
	matmulOp = &metal.Op{Name: registered.Name, Dims: registered.Dims, Impls: registered.Impls[1:]}
	asmNoBLAS := &metal.Impl{Path: metal.PathAsm, Min: append([]int(nil), asmMinNoBLAS...), Available: asmAvailable, Fn: sgemmFunc(sgemmAsm)}
	for d, dim := range registered.Dims {
		for _, key := range []string{"MLXTRAIN_MATMUL_MIN_" + dim + "_ASM", "MLXTRAIN_MATMUL_MIN_" + dim} {
			if _, ok := os.LookupEnv(key); ok {
				asmNoBLAS.Min[d] = asm.Min[d] // Register parsed it
				break
			}
		}
	}
	noBLASOp = &metal.Op{Name: matmulOp.Name, Dims: matmulOp.Dims, Impls: []*metal.Impl{asmNoBLAS, goImpl, ref}}
}

// MatMulOp is the registry's "matmul" op with its device implementation first:
// callers holding tensors in device memory ask it whether to launch the kernel.
func MatMulOp() *metal.Op { return registered }

// DeviceImpl is the device implementation of MatMulOp, whose self-test
// autodiff supplies.
func DeviceImpl() *metal.Impl { return registered.Impls[0] }

// Available reports whether path can run on this machine: the BLAS library was
// found, the CPU has AVX2 and FMA for the assembly. Go and the reference always can.
// It does not consult MLXTRAIN_BLAS.
func Available(path metal.Path) bool {
	switch path {
	case metal.PathBLAS:
		return blasAvailable()
	case metal.PathAsm:
		return asmAvailable()
	case metal.PathGo, metal.PathReference:
		return true
	}
	return false
}

// Sgemm computes C = α·op(A)·op(B) + β·C for row-major float32 matrices, where
// op(X) is X or Xᵀ as transX says: op(A) is m×k, op(B) is k×n and C is m×n. lda, ldb
// and ldc are the row strides of A, B and C as stored (A is k×m when transA). When
// β is 0, C is only written (NaNs in it do not propagate). Bad sizes panic.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkArgs("Sgemm", transA, transB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
	sgemm(metal.Threads(), transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// SgemmSerial is Sgemm on the calling goroutine alone, for callers that run
// several products at once, one per worker (a mixture of experts' expert
// products, say): each is then computed where it was started instead of being
// split across workers that are busy with the others.
func SgemmSerial(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkArgs("SgemmSerial", transA, transB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
	sgemm(1, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

func sgemm(workers int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if trivial(m, n, k, alpha, beta, c, ldc) {
		return
	}
	op := matmulOp
	if !metal.BLASEnabled() || !blasAvailable() {
		op = noBLASOp
	}
	im := op.Pick(m, n, k)
	run(im.Path, im.Fn.(sgemmFunc), workers, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// Epilogue finishes a block of C whose product is complete: rows [i0, i1) and
// columns [j0, j1) of C hold α·op(A)·op(B) + β·C. The blocks of one product do
// not overlap and cover C once; they may run concurrently, on the workers that
// computed them. An epilogue may rewrite its block of C in place and write other
// arrays at the same rows and columns.
type Epilogue func(i0, i1, j0, j1 int)

// SgemmEpilogue is Sgemm followed by ep over C (a bias and an activation, say).
// Where Sgemm would run the packed assembly kernel, the two are fused: each worker
// calls ep on a block of rows as soon as it is computed, while the block is in
// its cache, instead of a second pass over C from memory. Elsewhere (the system
// BLAS, no AVX2, a product too small to pack) it is Sgemm on its usual path, then
// ep over blocks of rows on the workers.
func SgemmEpilogue(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int, ep Epilogue) {
	checkArgs("SgemmEpilogue", transA, transB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
	sgemmEpilogue(metal.Threads(), transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ep)
}

// SgemmEpilogueSerial is SgemmEpilogue on the calling goroutine alone (see
// SgemmSerial).
func SgemmEpilogueSerial(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int, ep Epilogue) {
	checkArgs("SgemmEpilogueSerial", transA, transB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
	sgemmEpilogue(1, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ep)
}

func sgemmEpilogue(workers int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int, ep Epilogue) {
	if m == 0 || n == 0 {
		return
	}
	if !fuseEpilogue(m, n, k, alpha) {
		sgemm(workers, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		if workers <= 1 {
			ep(0, m, 0, n)
			return
		}
		metal.ParallelFor(m, max(1, (1<<14)/n), func(lo, hi int) { ep(lo, hi, 0, n) })
		return
	}
	if !metal.Profiling() {
		packedSgemmEp(&asmBlocking, workers, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ep)
		return
	}
	start := time.Now()
	packedSgemmEp(&asmBlocking, workers, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ep)
	metal.RecordOp("matmul_epilogue", metal.PathAsm, time.Since(start), int64(4*(m*k+k*n+2*m*n)))
}

// epilogueMinWork is the m·n·k below which SgemmEpilogue does not fuse: the
// product is cheap next to its epilogue and C stays in cache anyway.
var epilogueMinWork = 32 * 32 * 32

// fuseEpilogue reports whether SgemmEpilogue fuses a product: when the packed
// assembly kernel is what Sgemm would pick for it (or forceFuse, for tests).
func fuseEpilogue(m, n, k int, alpha float32) bool {
	if !asmAvailable() || k == 0 || alpha == 0 || m*n*k < epilogueMinWork {
		return false
	}
	if forceFuse {
		return true
	}
	op := matmulOp
	if !metal.BLASEnabled() || !blasAvailable() {
		op = noBLASOp
	}
	return op.Pick(m, n, k).Path == metal.PathAsm
}

// forceFuse makes SgemmEpilogue fuse whatever Sgemm would pick.
var forceFuse = false

// SgemmPath is Sgemm on the given path, whatever the thresholds and MLXTRAIN_BLAS
// say: tests and benchmarks compare the paths with it. It panics when the path is
// not available here (see [Available]).
func SgemmPath(path metal.Path, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkArgs("SgemmPath", transA, transB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
	if !Available(path) {
		panic(fmt.Sprintf("gemm: SgemmPath: path %s is not available on this machine", path))
	}
	if trivial(m, n, k, alpha, beta, c, ldc) {
		return
	}
	for _, im := range matmulOp.Impls {
		if im.Path == path {
			run(path, im.Fn.(sgemmFunc), metal.Threads(), transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
			return
		}
	}
	panic(fmt.Sprintf("gemm: SgemmPath: no %s implementation", path))
}

func run(path metal.Path, fn sgemmFunc, workers int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if !metal.Profiling() {
		fn(workers, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	start := time.Now()
	fn(workers, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	metal.RecordOp("matmul", path, time.Since(start), int64(4*(m*k+k*n+2*m*n)))
}

// SgemmReference is Sgemm as a plain triple loop accumulating in float64: slow,
// obviously right, the yardstick of the tests.
func SgemmReference(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkArgs("SgemmReference", transA, transB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
	if trivial(m, n, k, alpha, beta, c, ldc) {
		return
	}
	sgemmReference(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

func sgemmReference(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	for i := range m {
		for j := range n {
			var s float64
			for p := range k {
				ai, bi := i*lda+p, p*ldb+j
				if transA {
					ai = p*lda + i
				}
				if transB {
					bi = j*ldb + p
				}
				av, bv := a[ai], b[bi]
				s += float64(av) * float64(bv)
			}
			v := alpha * float32(s)
			if beta != 0 {
				v += beta * c[i*ldc+j]
			}
			c[i*ldc+j] = v
		}
	}
}

// trivial handles the cases with no product to compute: an empty C, k = 0 or α = 0
// leave C = β·C (zeros when β is 0). It reports whether it did.
func trivial[T float32 | float64](m, n, k int, alpha, beta T, c []T, ldc int) bool {
	if m == 0 || n == 0 {
		return true
	}
	if k > 0 && alpha != 0 {
		return false
	}
	for i := range m {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
			continue
		}
		for j := range row {
			row[j] *= beta
		}
	}
	return true
}

// checkArgs panics unless the sizes, strides and slice lengths describe valid
// matrices: op(A) m×k, op(B) k×n, C m×n, each row stride at least its row length.
func checkArgs(fn string, transA, transB bool, m, n, k, la, lda, lb, ldb, lc, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("gemm: %s: negative size m=%d n=%d k=%d", fn, m, n, k))
	}
	check := func(name string, rows, cols, ld, have int) {
		if ld < cols {
			panic(fmt.Sprintf("gemm: %s: ld%s=%d for %s of %d×%d", fn, name, ld, name, rows, cols))
		}
		if rows > 0 && cols > 0 && have < (rows-1)*ld+cols {
			panic(fmt.Sprintf("gemm: %s: %s has %d elements; %d×%d with stride %d needs %d", fn, name, have, rows, cols, ld, (rows-1)*ld+cols))
		}
	}
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	check("a", ar, ac, lda, la)
	check("b", br, bc, ldb, lb)
	check("c", m, n, ldc, lc)
}

// Product is one float32 product for SgemmBoth: C = α·op(A)·op(B) + β·C, with
// Sgemm's arguments.
type Product struct {
	TransA, TransB bool
	M, N, K        int
	Alpha          float32
	A              []float32
	LDA            int
	B              []float32
	LDB            int
	Beta           float32
	C              []float32
	LDC            int
}

// SgemmBoth computes two independent products (neither C may overlap the other's
// operands): on two or more workers side by side, otherwise one after the other.
// For a linear layer's input and weight gradients, dY·W and dYᵀ·X, which take
// about the same work. Each product is cut into pieces that run whole on one
// worker, without the barriers and shared packing of a product split across
// workers: a long-k product (the weight gradient over many tokens) into two
// halves of k, summed at the end, the others into blocks of rows. The workers
// take the pieces in turn as they come free, the halves of k first, so that
// neither waits long for the other at the end: the two products rarely take the
// same time, and a worker may start late (a helper that had gone to sleep).
func SgemmBoth(p, q Product) {
	for _, r := range []*Product{&p, &q} {
		checkArgs("SgemmBoth", r.TransA, r.TransB, r.M, r.N, r.K, len(r.A), r.LDA, len(r.B), r.LDB, len(r.C), r.LDC)
	}
	if metal.Threads() < 2 {
		p.sgemm(metal.Threads())
		q.sgemm(metal.Threads())
		return
	}
	var pieces, rows []Product
	var sums []bothSum
	for _, r := range []Product{p, q} {
		if r.M == 0 || r.N == 0 {
			continue
		}
		if r.K >= 4*bothKc && r.K >= 2*max(r.M, r.N) && r.Alpha != 0 {
			// Two halves of k, in whole slices of the kernel's depth: the first
			// into C with β, the second into scratch, added to C at the end.
			k0 := (r.K + bothKc - 1) / bothKc / 2 * bothKc
			scratch := getBuf(&cPool, r.M*r.N)
			lo, hi := r, r
			lo.K, hi.K = k0, r.K-k0
			hi.A, hi.B = r.A[bothOffset(r.TransA, k0, 1, r.LDA):], r.B[bothOffset(r.TransB, k0, r.LDB, 1):]
			hi.Beta, hi.C, hi.LDC = 0, *scratch, r.N
			pieces = append(pieces, lo, hi)
			sums = append(sums, bothSum{r, scratch})
			continue
		}
		per := max(bothMinRows, roundUp((r.M+bothPieces-1)/bothPieces, asmBlocking.mr))
		for i0 := 0; i0 < r.M; i0 += per {
			s := r
			s.M = min(per, r.M-i0)
			s.A = r.A[bothOffset(r.TransA, i0, r.LDA, 1):]
			s.C = r.C[i0*r.LDC:]
			rows = append(rows, s)
		}
	}
	pieces = append(pieces, rows...)
	var next atomic.Int64
	workers := min(metal.Threads(), len(pieces))
	metal.ParallelFor(workers, 1, func(int, int) {
		for i := int(next.Add(1) - 1); i < len(pieces); i = int(next.Add(1) - 1) {
			pieces[i].sgemm(1)
		}
	})
	for _, s := range sums {
		for i := range s.M {
			addRow(s.C[i*s.LDC:i*s.LDC+s.N], (*s.scratch)[i*s.N:(i+1)*s.N])
		}
		cPool.Put(s.scratch)
	}
}

// bothSum is a product SgemmBoth split along k: the second half's sum, in
// scratch, is still to be added to C.
type bothSum struct {
	Product
	scratch *[]float32
}

// bothOffset is i·notTrans, or i·isTrans when trans: where row or column i of
// op(X) starts in X, a row-major matrix op(X) reads as it is or transposed.
func bothOffset(trans bool, i, notTrans, isTrans int) int {
	if trans {
		return i * isTrans
	}
	return i * notTrans
}

// SgemmBoth's pieces: a product is cut into about bothPieces blocks of at least
// bothMinRows rows, and split along k from 4 slices of depth bothKc. Tests lower
// them to cut small products.
var (
	bothPieces  = 8
	bothMinRows = 48
	bothKc      = 256
)

func (p *Product) sgemm(workers int) {
	sgemm(workers, p.TransA, p.TransB, p.M, p.N, p.K, p.Alpha, p.A, p.LDA, p.B, p.LDB, p.Beta, p.C, p.LDC)
}

// LinearGrads computes both gradients of a linear layer y = x·Wᵀ side by side
// ([SgemmBoth]): dx = g·W and dw = gᵀ·x, for g (rows × out), w (out × in), x
// (rows × in), dx (rows × in) and dw (out × in), all row-major and dense.
func LinearGrads(rows, in, out int, g, w, x, dx, dw []float32) {
	SgemmBoth(
		Product{M: rows, N: in, K: out, Alpha: 1, A: g, LDA: out, B: w, LDB: in, C: dx, LDC: in},
		Product{TransA: true, M: out, N: in, K: rows, Alpha: 1, A: g, LDA: out, B: x, LDB: in, C: dw, LDC: in})
}
