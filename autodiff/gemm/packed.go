package gemm

import (
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// The packed algorithm (Goto; BLIS's five loops): for each nc-wide slab of C's
// columns and kc-deep slice of k, B's kc×nc block is packed into nr-column panels
// (kept in L3 and, one panel at a time, in L1); for each mc-tall block of rows, A's
// mc×kc block is packed into mr-row panels (kept in L2); the micro-kernel then
// computes every mr×nr tile of C from one A panel and one B panel, reading both
// sequentially. Transposes and strides are absorbed by the packing; panels are
// padded with zeros, so the kernel always computes a full tile and edge tiles go
// through a scratch tile.

// blocking describes one micro-kernel and the cache blocking around it.
type blocking struct {
	mr, nr     int
	mc, kc, nc int // mc a multiple of mr, nc a multiple of nr
	// kernel sets the full mr×nr tile at c (rows ldc apart) to alpha·a·b + beta·tile,
	// a and b being packed panels of depth k > 0. When beta is 0, c is not read.
	kernel func(k int, a, b, c []float32, ldc int, alpha, beta float32)
	// kernelStrided, when set, is kernel reading B in place (rows ldb apart); it
	// serves products of at most mr rows, whose B would be read once anyway.
	kernelStrided func(k int, a, b []float32, ldb int, c []float32, ldc int, alpha, beta float32)
	// kernelA, when set, is kernel reading mr rows of a row-major A in place
	// (lda apart), so that A need not be packed.
	kernelA func(k int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32)
	// panels and panelsA, when set, run kernel and kernelA on a number of full
	// tiles down a column of C.
	panels  func(k int, a, b, c []float32, ldc int, alpha, beta float32, panels int)
	panelsA func(k int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32, panels int)
	// panels2 and panels2A, when set, are panels and panelsA on two adjacent
	// B panels at once (b holds both, 2·nr·k floats), writing 2·nr columns of C.
	panels2  func(k int, a, b, c []float32, ldc int, alpha, beta float32, panels int)
	panels2A func(k int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32, panels int)
	// rows2AT, when set, computes rows [0, rows) of a 2·nr-column strip of C
	// from two adjacent B panels and A stored transposed (k×m, the weight
	// gradients' Aᵀ·B) read in place: step p of a tile reads side-by-side
	// floats of row p of a; no rows are packed, not even a partial last tile's.
	rows2AT func(k int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32, rows int)
	// rows2ATB, when set, is rows2AT reading a row-major B in place too (step
	// p reads 2·nr floats of row p of b, ldb apart).
	rows2ATB func(k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, alpha, beta float32, rows int)
	// edge2, when set, computes the first rows (0 < rows < mr) of a 2·nr-column
	// strip of C from a packed, zero-padded A panel and two adjacent B panels,
	// writing C in place: the last, partial row panel of a block.
	edge2 func(k int, a, b, c []float32, ldc int, alpha, beta float32, rows int)
	packA func(dst []float32, transA bool, a []float32, lda, i0, rows, p0, kc int)
	packB func(dst []float32, transB bool, b []float32, ldb, p0, kc, j0, cols int)
}

// asmBlocking is the AVX2 kernel's blocking for Zen-class cores (32 KiB L1d, ≥ 512
// KiB L2 per core, shared L3): a kc×16 B panel (16 KiB) and a 6×kc A panel (6 KiB)
// stay in L1, the mc×kc A block (144 KiB) in L2, the kc×nc B block in L3. Measured
// with BenchmarkGemmBlocking.
var asmBlocking = blocking{
	mr: 6, nr: 16, mc: 144, kc: 256, nc: 3072,
	kernel:        asmKernel,
	kernelStrided: asmKernelStrided,
	kernelA:       asmKernelA,
	panels:        asmPanels,
	panelsA:       asmPanelsA,
	packA:         packA6,
	packB:         packB16,
}

// goBlockings are the same algorithm with a micro-kernel in Go, for CPUs without
// the assembly; goBlocking is the one for this architecture. Go does not vectorise,
// so the tile is as large as the registers allow without spilling: 2×4 on amd64
// (16 SSE registers), 4×4 where there are 32 (arm64, riscv64, ...).
var (
	goBlockings = []blocking{
		{mr: 2, nr: 4, mc: 128, kc: 256, nc: 2048, kernel: goKernel2x4, packA: packAGeneric(2), packB: packBGeneric(4)},
		{mr: 4, nr: 4, mc: 128, kc: 256, nc: 2048, kernel: goKernel4x4, packA: packAGeneric(4), packB: packBGeneric(4)},
	}
	goBlocking = func() blocking {
		if runtime.GOARCH == "amd64" || runtime.GOARCH == "386" {
			return goBlockings[0]
		}
		return goBlockings[1]
	}()
)

// directMaxWork is the m·n·k up to which the Go path skips packing.
const directMaxWork = 16 * 16 * 16

// MinParallelWork is the m·n·k from which one product is split across the
// workers. Waking a worker takes 50-100 µs on a virtual machine whose idle vCPU
// sleeps, and on 2 cores of a Zen4 VM 192³ runs no faster on two (145 µs) than on
// one, 256³ does (250 against 336 µs). Callers with many smaller products (batched
// matmuls) should split the products among the workers instead.
const MinParallelWork = 1 << 23

// directA lets the assembly path read a row-major A in place (kernelA) instead
// of packing it; tests and benchmarks turn it off to compare.
var directA = true

// directB lets a weight gradient's assembly path read a row-major B in place
// (rows2ATB) instead of packing it; tests and benchmarks turn it off to compare.
var directB = true

// parallelMinWork is MinParallelWork; tests lower it to run the parallel code on
// small products.
var parallelMinWork = MinParallelWork

func sgemmAsm(workers int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	packedSgemm(&asmBlocking, workers, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

func sgemmGo(workers int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m < goBlocking.mr || m*n*k <= directMaxWork {
		directSgemm(workers, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	packedSgemm(&goBlocking, workers, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// packedSgemm runs the blocked algorithm for m, n, k > 0. On several workers each
// step (a kc×nc block of B) is packed by all of them, one share each, and its tiles
// are then handed out by blocks of rows (or, for short and wide products, of column
// panels) as workers come free, so a core that something else slows down takes
// fewer of them. The workers start once per product and meet at one spinning
// barrier per step: B's blocks alternate between two buffers, so packing the next
// block never waits for the tiles of the current one. (Starting goroutines at each
// step cost 50-100 µs a time on a virtual machine whose idle vCPU sleeps.)
func packedSgemm(s *blocking, workers int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	packedSgemmEp(s, workers, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, nil)
}

// packedSgemmEp is packedSgemm calling ep (when not nil) on each block of rows and
// columns of C as soon as its last depth slice is done.
func packedSgemmEp(s *blocking, workers int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int, ep Epilogue) {
	if m*n*k < parallelMinWork {
		workers = 1
	}
	if workers > 1 && ep == nil && splitsK(s, m, n, k) {
		splitKSgemm(s, workers, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	packedSgemmW(s, workers, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ep)
}

// splitsK reports whether a product is split across the workers along k rather
// than C: a small C with a long k (a weight gradient dYᵀ·X over many tokens,
// 128×128×2048, say) has few tiles per depth slice to share out and a barrier per
// slice, where halves of k run without meeting until their sum.
func splitsK(s *blocking, m, n, k int) bool {
	return k >= 4*s.kc && k >= 2*max(m, n)
}

// splitKSgemm runs the product as one sequential product per worker over its
// share of k (whole kc slices), the first into C with β, the others into
// scratch, then adds the scratch into C, the workers sharing its rows.
func splitKSgemm(s *blocking, workers int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	slices := (k + s.kc - 1) / s.kc
	workers = min(workers, slices)
	bounds := make([]int, workers+1)
	for w := range workers + 1 {
		bounds[w] = min(k, w*slices/workers*s.kc)
	}
	scratch := getBuf(&cPool, (workers-1)*m*n)
	defer cPool.Put(scratch)
	bar := newBarrier(workers)
	runWorkers(workers, bar, func(w int) {
		k0, k1 := bounds[w], bounds[w+1]
		aOff, bOff := k0, k0*ldb // A's columns and B's rows from k0
		if transA {
			aOff = k0 * lda
		}
		if transB {
			bOff = k0
		}
		aw, bw := a[aOff:], b[bOff:]
		if w == 0 {
			packedSgemmW(s, 1, transA, transB, m, n, k1-k0, alpha, aw, lda, bw, ldb, beta, c, ldc, nil)
		} else {
			packedSgemmW(s, 1, transA, transB, m, n, k1-k0, alpha, aw, lda, bw, ldb, 0, (*scratch)[(w-1)*m*n:w*m*n], n, nil)
		}
		bar.wait()
		for i := w * m / workers; i < (w+1)*m/workers; i++ {
			row := c[i*ldc : i*ldc+n]
			for p := range workers - 1 {
				addRow(row, (*scratch)[p*m*n+i*n:p*m*n+(i+1)*n])
			}
		}
	})
}

// packedSgemmW is packedSgemmEp on the given number of workers.
func packedSgemmW(s *blocking, workers int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int, ep Epilogue) {
	mr, nr := s.mr, s.nr
	kcs := sliceDepth(s.kc, k)
	var steps []packedStep
	for jc := 0; jc < n; jc += s.nc {
		for pc := 0; pc < k; pc += kcs {
			st := packedStep{jc: jc, nc: min(s.nc, n-jc), pc: pc, kc: min(kcs, k-pc), beta: beta, last: pc+kcs >= k}
			if pc > 0 {
				st.beta = 1
			}
			st.panels = (st.nc + nr - 1) / nr
			steps = append(steps, st)
		}
	}
	bpLen := min(kcs, k) * roundUp(min(s.nc, n), nr)
	job := packedJob{s: s, transA: transA, transB: transB, m: m, k: k, kcs: kcs, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, ep: ep}
	job.directB = !transB && m <= mr && s.kernelStrided != nil
	job.directA = !transA && !job.directB && s.kernelA != nil && directA
	// A weight gradient whose column panels all pair up reads B in place as
	// well as A when the workers share out rows (every tiles call then covers
	// whole slabs).
	job.directAB = transA && !transB && !job.directB && directA && directB && s.rows2AT != nil && s.rows2ATB != nil && n%(2*nr) == 0
	if workers == 1 {
		bp := getBuf(&bPool, bpLen)
		defer bPool.Put(bp)
		for _, st := range steps {
			job.packedStep = st
			job.bp = (*bp)[:st.kc*st.panels*nr]
			job.packB(0, st.panels)
			job.tiles(0, m, 0, st.nc)
		}
		return
	}

	bps := [2]*[]float32{getBuf(&bPool, bpLen), getBuf(&bPool, bpLen)}
	defer bPool.Put(bps[0])
	defer bPool.Put(bps[1])
	byRows := (m+mr-1)/mr >= 2*workers || m >= n
	job.directAB = job.directAB && byRows
	next := make([]atomic.Int64, len(steps)) // the next block of each step's tiles
	bar := newBarrier(workers)
	runWorkers(workers, bar, func(w int) {
		j := job
		for si, st := range steps {
			j.packedStep = st
			j.bp = (*bps[si%2])[:st.kc*st.panels*nr]
			j.packB(w*st.panels/workers, (w+1)*st.panels/workers)
			bar.wait()
			if byRows {
				rows := min(s.mc, roundUp((m+4*workers-1)/(4*workers), mr))
				for q := int(next[si].Add(1) - 1); q*rows < m; q = int(next[si].Add(1) - 1) {
					j.tiles(q*rows, min((q+1)*rows, m), 0, st.nc)
				}
			} else {
				per := (st.panels + 4*workers - 1) / (4 * workers)
				for q := int(next[si].Add(1) - 1); q*per < st.panels; q = int(next[si].Add(1) - 1) {
					j.tiles(0, m, q*per*nr, min((q+1)*per*nr, st.nc))
				}
			}
		}
	})
}

// sliceDepth is the depth of the k slices of a product of depth k, at most
// about kc: ⌈k/kc⌉ slices of equal depth, one fewer when the last would be
// shorter than kc/4 (k = 514 runs as two slices of 257, not 256, 256 and 2):
// each slice is a pass over C and a start of the micro-kernel's pipeline.
func sliceDepth(kc, k int) int {
	n := (k + kc - 1) / kc
	if n > 1 && k-(n-1)*kc < kc/4 {
		n--
	}
	return (k + n - 1) / max(n, 1)
}

// packedStep is one (column slab, depth slice) step of a product: C's columns
// [jc, jc+nc) get the product of A's columns and B's rows [pc, pc+kc).
type packedStep struct {
	jc, nc, pc, kc int
	panels         int     // B panels in the slab
	beta           float32 // the caller's β in the first depth slice, then 1
	last           bool    // the last depth slice: C's columns are then final
}

// packedJob is one product in progress: its operands and the current step with
// B's block packed in bp.
type packedJob struct {
	s              *blocking
	transA, transB bool
	m, k           int
	kcs            int // the depth of the k slices (sliceDepth)
	alpha          float32
	a, b, c        []float32
	lda, ldb, ldc  int
	packedStep
	bp       []float32
	directB  bool     // full panels of B are read in place; only a partial last one is packed
	directAB bool     // a transposed A and B are both read in place (rows2ATB); nothing is packed
	directA  bool     // full panels of A are read in place; only a partial last one is packed
	ep       Epilogue // finishes blocks of C after their last depth slice, or nil
}

// packB packs B's panels [lo, hi) of the current block.
func (j *packedJob) packB(lo, hi int) {
	nr, kc := j.s.nr, j.kc
	if j.directAB {
		return
	}
	if j.directB {
		last := j.panels - 1
		if j.nc%nr == 0 || last < lo || last >= hi {
			return
		}
		lo = last
	}
	j.s.packB(j.bp[lo*kc*nr:hi*kc*nr], j.transB, j.b, j.ldb, j.pc, kc, j.jc+lo*nr, min(hi*nr, j.nc)-lo*nr)
}

// tiles computes C's rows [i0, i1) × columns [jc+jlo, jc+jhi) for the current depth
// slice, packing A's blocks of rows as it goes. jlo is a multiple of nr.
func (j *packedJob) tiles(i0, i1, jlo, jhi int) {
	s, kc := j.s, j.kc
	mr, nr := s.mr, s.nr
	apLen := kc * min(s.mc, roundUp(i1-i0, mr))
	ap := getBuf(&aPool, apLen+mr*nr) // and a scratch tile for the edges
	defer aPool.Put(ap)
	edge := (*ap)[apLen : apLen+mr*nr]
	c, ldc, alpha, beta := j.c, j.ldc, j.alpha, j.beta
	// directAT: a transposed A is read in place, no rows packed, when every
	// column panel is in a full pair (rows2AT). Packing it cost more than its
	// reads: the kernel ran ≈ 6 % slower on 2048-deep weight gradients.
	directAT := j.transA && directA && s.rows2AT != nil && !j.directB && (jhi-jlo)%(2*nr) == 0
	for ic := i0; ic < i1; ic += s.mc {
		mc := min(s.mc, i1-ic)
		switch full := mc / mr * mr; {
		case directAT:
		case !j.directA:
			s.packA(*ap, j.transA, j.a, j.lda, ic, mc, j.pc, kc)
		case full < mc:
			s.packA((*ap)[(full/mr)*kc*mr:], false, j.a, j.lda, ic+full, mc-full, j.pc, kc)
		}
		// skip is a column panel whose first skipRows rows the two-panel kernels
		// computed with the panel before it.
		skip, skipRows := -1, 0
		for jr := jlo; jr < jhi; jr += nr {
			cols := min(nr, jhi-jr)
			bpanel := j.bp[(jr/nr)*kc*nr:][:kc*nr]
			ir := 0
			full := mc / mr
			pair := cols == nr && !j.directB && jr+2*nr <= jhi // this panel and the next are full
			if jr == skip {
				ir = skipRows
			} else if j.directAB {
				// B's two panels in place too.
				s.rows2ATB(kc, j.a[j.pc*j.lda+ic:], j.lda, j.b[j.pc*j.ldb+j.jc+jr:], j.ldb, c[ic*ldc+j.jc+jr:], ldc, alpha, beta, mc)
				ir, skip, skipRows = mc, jr+nr, mc
			} else if pair && directAT {
				// The whole column of both panels, A read in place.
				s.rows2AT(kc, j.a[j.pc*j.lda+ic:], j.lda, j.bp[(jr/nr)*kc*nr:][:2*kc*nr], c[ic*ldc+j.jc+jr:], ldc, alpha, beta, mc)
				ir, skip, skipRows = mc, jr+nr, mc
			} else if cols == nr && !j.directB && full > 0 {
				// The full tiles of the column in one call.
				off := ic*ldc + j.jc + jr
				switch {
				case pair && j.directA && s.panels2A != nil:
					s.panels2A(kc, j.a[ic*j.lda+j.pc:], j.lda, j.bp[(jr/nr)*kc*nr:][:2*kc*nr], c[off:], ldc, alpha, beta, full)
					ir, skip, skipRows = full*mr, jr+nr, full*mr
				case pair && !j.directA && s.panels2 != nil:
					s.panels2(kc, *ap, j.bp[(jr/nr)*kc*nr:][:2*kc*nr], c[off:], ldc, alpha, beta, full)
					ir, skip, skipRows = full*mr, jr+nr, full*mr
				case j.directA && s.panelsA != nil:
					s.panelsA(kc, j.a[ic*j.lda+j.pc:], j.lda, bpanel, c[off:], ldc, alpha, beta, full)
					ir = full * mr
				case !j.directA && s.panels != nil:
					s.panels(kc, *ap, bpanel, c[off:], ldc, alpha, beta, full)
					ir = full * mr
				}
			}
			if pair && jr != skip && s.edge2 != nil && ir == full*mr && ir < mc {
				// The partial row panel (packed, zero-padded) of both panels.
				s.edge2(kc, (*ap)[(ir/mr)*kc*mr:][:kc*mr], j.bp[(jr/nr)*kc*nr:][:2*kc*nr], c[(ic+ir)*ldc+j.jc+jr:], ldc, alpha, beta, mc-ir)
				ir, skip, skipRows = mc, jr+nr, mc
			}
			for ; ir < mc; ir += mr {
				rows := min(mr, mc-ir)
				apanel := (*ap)[(ir/mr)*kc*mr:][:kc*mr]
				off := (ic+ir)*ldc + j.jc + jr
				full := rows == mr && cols == nr
				switch {
				case full && j.directB:
					bOff := j.pc*j.ldb + j.jc + jr
					s.kernelStrided(kc, apanel, j.b[bOff:bOff+(kc-1)*j.ldb+nr], j.ldb, c[off:off+(mr-1)*ldc+nr], ldc, alpha, beta)
					continue
				case full && j.directA:
					s.kernelA(kc, j.a[(ic+ir)*j.lda+j.pc:], j.lda, bpanel, c[off:off+(mr-1)*ldc+nr], ldc, alpha, beta)
					continue
				case full:
					s.kernel(kc, apanel, bpanel, c[off:off+(mr-1)*ldc+nr], ldc, alpha, beta)
					continue
				case j.directB && cols == nr:
					bOff := j.pc*j.ldb + j.jc + jr
					s.kernelStrided(kc, apanel, j.b[bOff:bOff+(kc-1)*j.ldb+nr], j.ldb, edge, nr, 1, 0)
				case j.directA && rows == mr:
					s.kernelA(kc, j.a[(ic+ir)*j.lda+j.pc:], j.lda, bpanel, edge, nr, 1, 0)
				default:
					s.kernel(kc, apanel, bpanel, edge, nr, 1, 0)
				}
				for i := range rows {
					crow := c[off+i*ldc : off+i*ldc+cols]
					trow := edge[i*nr : i*nr+cols]
					if beta == 0 {
						for x, v := range trow {
							crow[x] = alpha * v
						}
					} else {
						for x, v := range trow {
							crow[x] = alpha*v + beta*crow[x]
						}
					}
				}
			}
		}
		if j.ep != nil && j.last {
			// The block is still in this core's L2.
			j.ep(ic, ic+mc, j.jc+jlo, j.jc+jhi)
		}
	}
}

func roundUp(x, m int) int { return (x + m - 1) / m * m }

// Packing buffers are recycled, A blocks and B blocks apart as their sizes differ:
// a product of 1024³ packs 3 MiB of B per step. cPool holds the partial products
// of splitKSgemm.
var aPool, bPool, cPool sync.Pool

// getBuf returns a buffer of n floats from pool starting on a 64-byte boundary, so
// that every 16-float row of a B panel is one cache line.
func getBuf(pool *sync.Pool, n int) *[]float32 {
	if p, ok := pool.Get().(*[]float32); ok && cap(*p) >= n {
		*p = (*p)[:n]
		return p
	}
	raw := make([]float32, n+16)
	skip := 0
	if r := uintptr(unsafe.Pointer(&raw[0])) % 64; r != 0 {
		skip = int(64-r) / 4
	}
	s := raw[skip : skip+n : skip+n]
	return &s
}

// packA6 packs rows [i0, i0+rows) × columns [p0, p0+kc) of op(A) into 6-row panels:
// panel r holds, for each p, the six values op(A)[i0+6r+i][p0+p] (zeros past rows).
// Full panels go through the vector routines (packA6NFast, packA6TPanels).
func packA6(dst []float32, transA bool, a []float32, lda, i0, rows, p0, kc int) {
	start := 0
	if transA {
		full := rows / 6
		packA6TPanels(dst, a[p0*lda+i0:], lda, kc, full)
		start = 6 * full
	}
	for ir := start; ir < rows; ir += 6 {
		d := dst[(ir/6)*kc*6:][:kc*6]
		n := min(6, rows-ir)
		switch {
		case transA && n == 6:
			packA6TFast(d, a[p0*lda+i0+ir:], lda, kc)
		case !transA && n == 6:
			packA6NFast(d, a[(i0+ir)*lda+p0:], lda, kc)
		default:
			packAEdge(d, 6, n, transA, a, lda, i0+ir, p0, kc)
		}
	}
}

// packA6NGo sets d[6p+i] = a[i·lda+p] for p in [from, kc), i < 6.
func packA6NGo(d, a []float32, lda, from, kc int) {
	if from >= kc {
		return
	}
	r0 := a[0:kc]
	r1 := a[lda : lda+kc]
	r2 := a[2*lda : 2*lda+kc]
	r3 := a[3*lda : 3*lda+kc]
	r4 := a[4*lda : 4*lda+kc]
	r5 := a[5*lda : 5*lda+kc]
	for p := from; p < kc; p++ {
		q := d[p*6 : p*6+6]
		q[0], q[1], q[2], q[3], q[4], q[5] = r0[p], r1[p], r2[p], r3[p], r4[p], r5[p]
	}
}

// packA6TGo sets d[6p+i] = a[p·lda+i] for p < kc, i < 6.
func packA6TGo(d, a []float32, lda, kc int) {
	for p := range kc {
		*(*[6]float32)(d[p*6 : p*6+6]) = *(*[6]float32)(a[p*lda : p*lda+6])
	}
}

// packB16TGo sets d[16p+j] = b[j·ldb+p] for p in [from, kc), j < 16.
func packB16TGo(d, b []float32, ldb, from, kc int) {
	for j := range 16 {
		src := b[j*ldb : j*ldb+kc]
		for p := from; p < kc; p++ {
			d[p*16+j] = src[p]
		}
	}
}

// packB16NGo sets d[16p+j] = b[p·ldb+j] for p < kc, j < 16.
func packB16NGo(d, b []float32, ldb, kc int) {
	for p := range kc {
		*(*[16]float32)(d[p*16 : p*16+16]) = *(*[16]float32)(b[p*ldb : p*ldb+16])
	}
}

// packAEdge packs the last, partial panel of n < mr rows (or any panel, slowly).
func packAEdge(d []float32, mr, n int, transA bool, a []float32, lda, i0, p0, kc int) {
	for p := range kc {
		q := d[p*mr : p*mr+mr]
		for i := range n {
			if transA {
				q[i] = a[(p0+p)*lda+i0+i]
			} else {
				q[i] = a[(i0+i)*lda+p0+p]
			}
		}
		clear(q[n:])
	}
}

// packB16 packs rows [p0, p0+kc) × columns [j0, j0+cols) of op(B) into 16-column
// panels: panel r holds, for each p, op(B)[p0+p][j0+16r : j0+16r+16] (zeros past cols).
func packB16(dst []float32, transB bool, b []float32, ldb, p0, kc, j0, cols int) {
	start := 0
	if !transB {
		full := cols / 16
		packB16NPanels(dst, b[p0*ldb+j0:], ldb, kc, full)
		start = 16 * full
	}
	for jr := start; jr < cols; jr += 16 {
		d := dst[(jr/16)*kc*16:][:kc*16]
		n := min(16, cols-jr)
		switch {
		case !transB && n == 16:
			packB16NFast(d, b[p0*ldb+j0+jr:], ldb, kc)
		case transB && n == 16:
			packB16TFast(d, b[(j0+jr)*ldb+p0:], ldb, kc)
		case transB:
			// Column j of the panel is row j0+jr+j of B: read rows, scatter by 16.
			for j := range n {
				src := b[(j0+jr+j)*ldb+p0:][:kc]
				for p, v := range src {
					d[p*16+j] = v
				}
			}
			if n < 16 {
				for p := range kc {
					clear(d[p*16+n : p*16+16])
				}
			}
		default:
			for p := range kc {
				q := d[p*16 : p*16+16]
				copy(q, b[(p0+p)*ldb+j0+jr:][:n])
				clear(q[n:])
			}
		}
	}
}

// packAGeneric and packBGeneric pack for any panel size.
func packAGeneric(mr int) func(dst []float32, transA bool, a []float32, lda, i0, rows, p0, kc int) {
	return func(dst []float32, transA bool, a []float32, lda, i0, rows, p0, kc int) {
		for ir := 0; ir < rows; ir += mr {
			packAEdge(dst[(ir/mr)*kc*mr:][:kc*mr], mr, min(mr, rows-ir), transA, a, lda, i0+ir, p0, kc)
		}
	}
}

func packBGeneric(nr int) func(dst []float32, transB bool, b []float32, ldb, p0, kc, j0, cols int) {
	return func(dst []float32, transB bool, b []float32, ldb, p0, kc, j0, cols int) {
		for jr := 0; jr < cols; jr += nr {
			d := dst[(jr/nr)*kc*nr:][:kc*nr]
			n := min(nr, cols-jr)
			for p := range kc {
				q := d[p*nr : p*nr+nr]
				if transB {
					for j := range n {
						q[j] = b[(j0+jr+j)*ldb+p0+p]
					}
				} else {
					copy(q, b[(p0+p)*ldb+j0+jr:][:n])
				}
				clear(q[n:])
			}
		}
	}
}

// storeRow4 sets row[0:4] = alpha·v + beta·row (not reading row when beta is 0).
func storeRow4(row []float32, alpha, beta, v0, v1, v2, v3 float32) {
	row = row[:4]
	if beta == 0 {
		row[0], row[1], row[2], row[3] = alpha*v0, alpha*v1, alpha*v2, alpha*v3
		return
	}
	row[0] = alpha*v0 + beta*row[0]
	row[1] = alpha*v1 + beta*row[1]
	row[2] = alpha*v2 + beta*row[2]
	row[3] = alpha*v3 + beta*row[3]
}

// goKernel2x4 is the Go micro-kernel for amd64: eight accumulators and six
// operands fit its sixteen registers.
func goKernel2x4(k int, a, b, c []float32, ldc int, alpha, beta float32) {
	var c00, c01, c02, c03, c10, c11, c12, c13 float32
	a = a[:2*k]
	b = b[:4*k]
	for p := range k {
		aa := a[2*p : 2*p+2 : 2*p+2]
		bb := b[4*p : 4*p+4 : 4*p+4]
		a0, a1 := aa[0], aa[1]
		b0, b1, b2, b3 := bb[0], bb[1], bb[2], bb[3]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
	}
	storeRow4(c[0:], alpha, beta, c00, c01, c02, c03)
	storeRow4(c[ldc:], alpha, beta, c10, c11, c12, c13)
}

// goKernel4x4 is the Go micro-kernel where 32 registers hold its sixteen
// accumulators and eight operands.
func goKernel4x4(k int, a, b, c []float32, ldc int, alpha, beta float32) {
	var c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33 float32
	a = a[:4*k]
	b = b[:4*k]
	for p := 0; p < len(a); p += 4 {
		aa := a[p : p+4 : p+4]
		bb := b[p : p+4 : p+4]
		a0, a1, a2, a3 := aa[0], aa[1], aa[2], aa[3]
		b0, b1, b2, b3 := bb[0], bb[1], bb[2], bb[3]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
		c20 += a2 * b0
		c21 += a2 * b1
		c22 += a2 * b2
		c23 += a2 * b3
		c30 += a3 * b0
		c31 += a3 * b1
		c32 += a3 * b2
		c33 += a3 * b3
	}
	storeRow4(c[0:], alpha, beta, c00, c01, c02, c03)
	storeRow4(c[ldc:], alpha, beta, c10, c11, c12, c13)
	storeRow4(c[2*ldc:], alpha, beta, c20, c21, c22, c23)
	storeRow4(c[3*ldc:], alpha, beta, c30, c31, c32, c33)
}
