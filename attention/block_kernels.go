package attention

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/autodiff/gemm"
	"github.com/mlxtrain/mlxtrain/internal/vecmath"
	"github.com/mlxtrain/mlxtrain/metal"
)

// The float32 attention kernels of Block: flash attention as [FlashForward] and
// [FlashBackward] compute it — tiles of 64 queries and tiledKBlock keys, online softmax,
// only the per-row log-sum-exp kept (plus the keys in a transposed layout) — with
// each tile's products (QKᵀ and PV forward; QKᵀ, dO·Vᵀ, dS·K, dSᵀ·Q and Pᵀ·dO
// backward) run as small matrix products (tileMul: an AVX2/FMA strip kernel of 4
// rows, gemm where it does not apply) instead of per-row dot products, and the
// softmax rows in AVX2 or AVX-512. Work is split over (batch, key/value head)
// backward, as in FlashBackward, and forward too when the keys fit one tile
// (else over (batch, query head, query tile)); each product runs on the calling
// worker, which meanwhile prefetches the next unit's rows into L2 a few lines
// per strip (prefetchQueue).
//
// A tile spans tiledKBlock keys: at the lengths a small model trains on (128)
// the whole causal block of a head is one tile wide, so each query and key row
// is gathered once per head and no running maximum is rescaled.
//
// Two things keep the products near the kernel's speed:
//
//   - Masks cut work strip by strip: a strip of 4 query rows computes the scores
//     of the keys up to the last one its rows see (rounded up to 8), and the
//     products that consume them stop there too (or, for dK and dV, start at the
//     first query row that sees the strip's keys). A causal tile on the diagonal
//     thus costs little more than its lower triangle.
//   - Every operand is read from a contiguous copy: the tile's query, key, value
//     and output-gradient rows are gathered (their rows in a BSHD or packed tensor
//     are 2ᵏ cache lines apart, which maps a tile onto a few L1 sets and evicts it
//     while the kernel reuses it), and the transposed keys and values are stored
//     with a row stride of an odd number of cache lines (see ldT).

// tiledKBlock is the key count of a tile: a 64×128 score tile (32 KiB) stays in
// L2 next to its operands, and one tile covers a 128-token causal block.
const tiledKBlock = 128

// stripRows is the row count of the tile kernel's strips.
const stripRows = 4

// ldT is the row stride, in elements, of a transposed key or value matrix with n
// columns: at least n+7 (the kernels read a tile's columns rounded up to 8, from
// any first column) rounded up to 16 (whole cache lines), plus 16 when that is an
// even number of lines, so that walking down a column visits every L1 set.
func ldT(n int) int {
	ld := (n + 7 + 15) &^ 15
	if (ld/16)%2 == 0 {
		ld += 16
	}
	return ld
}

// transposedLen is the length of the transposed keys (or values, of dim
// columns) that transposeKV writes for d.
func transposedLen(d Dims, dim int) int { return d.Batch * d.KVHeads * dim * ldT(d.KLen) }

// roundUp8 rounds n up to a multiple of 8 (the kernel's lanes).
func roundUp8(n int) int { return (n + 7) &^ 7 }

// tiledForward is FlashForward for float32 on tile products, keeping the
// probabilities in ps when it is not nil (pStoreLen long).
func tiledForward(out, lse, q, k, v, ps []float32, d Dims, opt Options) {
	d.check("tiledForward", len(q), len(k), len(v), len(out))
	tiledForwardG(newGeometry[float32](d, opt), out, lse, q, k, v, make([]float32, transposedLen(d, d.HeadDim)), ps)
}

// tiledFwdScratch is a forward worker's scratch: the running maximum and sum
// and the output accumulator of each row, the score tile, the gathered query and
// value tiles, and the keys each row sees in the current tile ([lo, hi) from the
// tile's first key).
type tiledFwdScratch struct {
	m, l, s, acc, qc, vc []float32
	kt                   []float32     // the unit's keys transposed (one key tile), or nil
	ktBuf                []float32     // kt's storage, kept in the pool
	vis                  visCache      // the keys each row sees
	accSet               []bool        // strips of acc written (one key tile)
	pf                   prefetchQueue // the next unit's rows
}

// The workers' scratch of the tiled kernels, kept between calls: fresh
// allocations cost their zeroing and, being cold, their misses, in every
// attention of every step.
var tiledFwdPool, tiledBwdPool sync.Pool

// tiledForwardG is tiledForward on a geometry whose views may be any strides
// (packed q, k and v). It writes the keys transposed into kt (see transposeKV;
// transposedLen(d, HeadDim) long), which tiledBackwardG can reuse, and, when ps
// is not nil (pStoreLen long, not 0), the probabilities of every tile for
// tiledBackwardG (see pStoreLen).
func tiledForwardG(g geometry[float32], out, lse, q, k, v, kt, ps []float32) {
	d := g.d
	if !oneKeyTile(d) {
		transposeKV(kt, k, g.kv, d, d.HeadDim)
	}
	nqb := (d.QLen + flashQBlock - 1) / flashQBlock
	heads := d.Batch * d.QHeads
	newWorker := func() *tiledFwdScratch {
		w, _ := tiledFwdPool.Get().(*tiledFwdScratch)
		if w == nil {
			w = new(tiledFwdScratch)
		}
		w.m, w.l = resize(w.m, flashQBlock), resize(w.l, flashQBlock)
		w.s, w.acc = resize(w.s, flashQBlock*tiledKBlock), resize(w.acc, flashQBlock*d.VDim)
		w.qc, w.vc = resize(w.qc, flashQBlock*d.HeadDim), resize(w.vc, tiledKBlock*d.VDim)
		w.vis.reset()
		w.accSet = resize(w.accSet, flashQBlock/stripRows)
		w.kt = nil
		if oneKeyTile(d) {
			w.ktBuf = resize(w.ktBuf, d.HeadDim*ldT(tiledKBlock))
			w.kt = w.ktBuf
		}
		return w
	}
	release := func(w *tiledFwdScratch) {
		w.pf.reset(1)
		tiledFwdPool.Put(w)
	}
	if !oneKeyTile(d) {
		parallelUnitsRelease(nqb*heads, newWorker, release, func(w *tiledFwdScratch, u int) {
			qb := nqb - 1 - u%nqb
			b, h := (u/nqb)/d.QHeads, (u/nqb)%d.QHeads
			i0 := qb * flashQBlock
			tiledForwardBlock(g, w, out, lse, q, kt, v, nil, false, b, h, i0, min(i0+flashQBlock, d.QLen))
		})
		return
	}
	// One key tile: a unit is a key/value head of a batch row, its keys
	// transposed and values gathered once for every query tile of every
	// query head of its group (the last tile, which sees the most keys
	// under a causal mask, first).
	units := d.Batch * d.KVHeads
	step := min(metal.Threads(), units) // the workers take units in turn
	// storeTiles queues the store tiles of unit un.
	storeTiles := func(w *tiledFwdScratch, un int) {
		b, hk := un/d.KVHeads, un%d.KVHeads
		for h := hk * g.group; h < (hk+1)*g.group; h++ {
			for qb := nqb - 1; qb >= 0; qb-- {
				i0 := qb * flashQBlock
				prefetchTile(&w.pf, g, ps[pTileUnit(d, b, h, i0)*pTileLen(d):], i0, min(i0+flashQBlock, d.QLen))
			}
		}
	}
	parallelUnitsRelease(units, newWorker, release, func(w *tiledFwdScratch, u int) {
		b, hk := u/d.KVHeads, u%d.KVHeads
		w.pf.reset(prefetchLinesFwd)
		if next := u + step; next < units {
			// The next unit's rows into L2 while this one computes (in a
			// training step they come from L3 or memory: the gathers and
			// transposes would wait for each miss), in the order it reads
			// them: keys, values, query rows, the output rows (written
			// last); and the store's tiles of the unit after it (the score
			// strips write them first thing: a read prefetch of a line no
			// other core holds lets the write go ahead without a miss; one
			// unit ahead they were often not in yet), or, in a worker's
			// first unit, of the next one too.
			if len(ps) > 0 && u < step {
				storeTiles(w, next)
			}
			nb, nhk := next/d.KVHeads, next%d.KVHeads
			w.pf.add(k, g.kv.at(nb, 0, nhk), g.kv.s, d.KLen, d.HeadDim)
			w.pf.add(v, g.vv.at(nb, 0, nhk), g.vv.s, d.KLen, d.VDim)
			for h := nhk * g.group; h < (nhk+1)*g.group; h++ {
				w.pf.add(q, g.qv.at(nb, 0, h), g.qv.s, d.QLen, d.HeadDim)
			}
			for h := nhk * g.group; h < (nhk+1)*g.group; h++ {
				w.pf.add(out, g.ov.at(nb, 0, h), g.ov.s, d.QLen, d.VDim)
			}
			if len(ps) > 0 && next+step < units {
				storeTiles(w, next+step)
			}
		}
		// The keys transposed (zeros past the last: a strip reads up to 7
		// columns beyond the keys it needs) and the values gathered.
		ld := ldT(d.KLen)
		transposeTile(w.kt, ld, k, g.kv.at(b, 0, hk), g.kv.s, d.KLen, d.HeadDim)
		for c := range d.HeadDim {
			clear(w.kt[c*ld+d.KLen : (c+1)*ld])
		}
		gather(w.vc[:d.KLen*d.VDim], d.VDim, v, g.vv.at(b, 0, hk), g.vv.s, d.KLen)
		for h := hk * g.group; h < (hk+1)*g.group; h++ {
			for qb := nqb - 1; qb >= 0; qb-- {
				i0 := qb * flashQBlock
				var tp []float32
				if len(ps) > 0 {
					tp = ps[pTileUnit(d, b, h, i0)*pTileLen(d):][:pTileLen(d)]
				}
				tiledForwardBlock(g, w, out, lse, q, kt, v, tp, true, b, h, i0, min(i0+flashQBlock, d.QLen))
			}
		}
		w.pf.flush()
	})
}

// oneKeyTile reports whether the keys of d fit one tile: the kernels then
// transpose a head's keys and values in each work unit, into its scratch,
// instead of all of them into a tensor first (which serves long sequences,
// where many query tiles read each key tile).
func oneKeyTile(d Dims) bool { return d.KLen <= tiledKBlock }

// transposeTile writes n rows of dim values (src from off, rows lds apart) as
// the columns of dst (dim rows ld apart), then zeros up to the next multiple of
// 8 columns (the kernels read whole vectors): dst[c·ld + j] = src[off + j·lds + c].
func transposeTile(dst []float32, ld int, src []float32, off, lds, n, dim int) {
	j := 0
	for ; j+8 <= n; j += 8 {
		if transposeBlocks8(dst[j:], ld, src[off+j*lds:], lds, dim) {
			continue
		}
		for i := range 8 {
			for c, x := range src[off+(j+i)*lds:][:dim] {
				dst[c*ld+j+i] = x
			}
		}
	}
	for ; j < n; j++ {
		for c, x := range src[off+j*lds:][:dim] {
			dst[c*ld+j] = x
		}
	}
	if r := roundUp8(n); r > n {
		for c := range dim {
			clear(dst[c*ld+n : c*ld+r])
		}
	}
}

// transposeKV writes the keys (or values) src, seen through view vw, as dst laid
// out (batch, kv head, dim, key) with rows ldT(KLen) apart (the padding zeroed):
// each head's keys become the columns of a dim×KLen matrix, the B operand of Q·Kᵀ
// in the tile products.
func transposeKV(dst, src []float32, vw view, d Dims, dim int) {
	n, ld := d.KLen, ldT(d.KLen)
	metal.ParallelFor(d.Batch*d.KVHeads, max(1, (1<<14)/max(n*dim, 1)), func(lo, hi int) {
		for u := lo; u < hi; u++ {
			b, hk := u/d.KVHeads, u%d.KVHeads
			out := dst[u*dim*ld : (u+1)*dim*ld]
			j := 0
			// Eight keys at a time: each output row gets 8 contiguous values.
			for ; j+8 <= n; j += 8 {
				if j+16 <= n {
					prefetch(src, vw.at(b, j+8, hk), vw.s, 8, dim)
				}
				// Rows j…j+7 are vw.s apart in src.
				if base := vw.at(b, j, hk); transposeBlocks8(out[j:], ld, src[base:], vw.s, dim) {
					continue
				}
				var r [8][]float32
				for i := range r {
					r[i] = src[vw.at(b, j+i, hk):][:dim]
				}
				for c := range dim {
					o := out[c*ld+j:][:8]
					o[0], o[1], o[2], o[3] = r[0][c], r[1][c], r[2][c], r[3][c]
					o[4], o[5], o[6], o[7] = r[4][c], r[5][c], r[6][c], r[7][c]
				}
			}
			for ; j < n; j++ {
				row := src[vw.at(b, j, hk):][:dim]
				for c, x := range row {
					out[c*ld+j] = x
				}
			}
			for c := range dim {
				clear(out[c*ld+n : (c+1)*ld])
			}
		}
	})
}

// gather copies rows rows of width elements, stride apart in src from off, into
// dst back to back.
func gather(dst []float32, width int, src []float32, off, stride, rows int) {
	if copyRowsAsm(dst, 0, width, src, off, stride, width, rows) {
		return
	}
	for r := range rows {
		copy(dst[r*width:(r+1)*width], src[off+r*stride:][:width])
	}
}

// scatter copies rows rows of width elements from src (back to back) into dst,
// stride apart from off.
func scatter(dst []float32, off, stride int, src []float32, width, rows int) {
	if copyRowsAsm(dst, off, stride, src, 0, width, width, rows) {
		return
	}
	for r := range rows {
		copy(dst[off+r*stride:][:width], src[r*width:(r+1)*width])
	}
}

// visible sets lo[r], hi[r] to the keys [lo, hi) of the tile [j0, j1) that query
// row i0+r sees, counted from j0 (lo == hi == 0 for none), for r < rows.
func (g geometry[T]) visible(lo, hi []int, i0, rows, j0, j1 int) {
	for r := range rows {
		a, b := g.sp.clip(i0+r, j0, j1)
		lo[r], hi[r] = a-j0, b-j0
	}
}

// stripCols returns the keys of the tile (from its first) that the strip of rows
// [r0, r1) needs: up to the last one any of its rows sees.
func stripCols(hi []int, r0, r1 int) int {
	c := 0
	for _, h := range hi[r0:r1] {
		c = max(c, h)
	}
	return c
}

// visTile is what geometry.visible gives for the rows [i0, i0+rows) and keys
// [j0, j1) of a tile, and the stripCols of each of its strips of rows (sc).
type visTile struct {
	i0, rows, j0, j1 int
	lo, hi, sc       []int
}

// visCache keeps a worker's last two visTiles: they depend on where a tile
// lies, not on its head, and a worker alternates between two query tiles of a
// head (forward) or runs the same ones for each head (backward).
type visCache struct {
	t    [2]visTile
	next int
}

// reset forgets the tiles (the geometry may change).
func (c *visCache) reset() {
	for i := range c.t {
		c.t[i].rows = -1
	}
}

// get returns the visTile of rows [i0, i0+rows) and keys [j0, j1) under g,
// valid until the second get after it.
func (c *visCache) get(g geometry[float32], i0, rows, j0, j1 int) *visTile {
	for i := range c.t {
		if t := &c.t[i]; t.rows == rows && t.i0 == i0 && t.j0 == j0 && t.j1 == j1 {
			return t
		}
	}
	t := &c.t[c.next]
	c.next ^= 1
	t.i0, t.rows, t.j0, t.j1 = i0, rows, j0, j1
	t.lo, t.hi = resize(t.lo, rows), resize(t.hi, rows)
	t.sc = resize(t.sc, (rows+stripRows-1)/stripRows)
	g.visible(t.lo, t.hi, i0, rows, j0, j1)
	for s := range t.sc {
		t.sc[s] = stripCols(t.hi, s*stripRows, min(s*stripRows+stripRows, rows))
	}
	return t
}

// scoreStrips sets the scores s (rows × ≤tiledKBlock, rows tiledKBlock apart) of the
// rows [0, rows) of a tile to alpha·a·b: a the rows' contiguous query (or output
// gradient) rows of width dim, b the transposed keys (or values) of the tile,
// rows ldb apart; each strip of rows only over the columns it needs (rounded up to
// 8: b is padded; sc holds the stripCols of each strip), consecutive strips of
// one width in one call.
func scoreStrips(s, a []float32, dim int, b []float32, ldb int, sc []int, rows int, alpha float32, pf *prefetchQueue) {
	for r0 := 0; r0 < rows; {
		n := roundUp8(sc[r0/stripRows])
		r1 := min(r0+stripRows, rows)
		for r1 < rows && roundUp8(sc[r1/stripRows]) == n {
			r1 = min(r1+stripRows, rows)
		}
		if n > 0 {
			tileMulPF(s[r0*tiledKBlock:], tiledKBlock, a[r0*dim:], dim, 1, b, ldb, r1-r0, n, dim, alpha, false, pf)
		}
		r0 = r1
	}
}

// rowStrips adds, for each strip of the rows [0, rows), the product of its rows
// of p (rows tiledKBlock apart) over the keys the strip needs with the first
// rows of b (width n, rows ldb apart) to c (rows ldc apart). When set is not nil
// it says which strips of c hold a value already: the others are written, not
// added to, and then marked. sc holds the stripCols of each strip.
func rowStrips(c []float32, ldc int, p []float32, b []float32, ldb, n int, sc []int, rows int, set []bool, pf *prefetchQueue) {
	acc := func(r0 int) bool { return set == nil || set[r0/stripRows] }
	for r0 := 0; r0 < rows; {
		r1 := min(r0+stripRows, rows)
		k := sc[r0/stripRows]
		// Consecutive strips over as many keys, all written or all added to: one
		// call.
		for r1 < rows && sc[r1/stripRows] == k && acc(r1) == acc(r0) {
			r1 = min(r1+stripRows, rows)
		}
		if k > 0 {
			tileMulPF(c[r0*ldc:], ldc, p[r0*tiledKBlock:], tiledKBlock, 1, b, ldb, r1-r0, n, k, 1, acc(r0), pf)
			if set != nil {
				for r := r0; r < r1; r += stripRows {
					set[r/stripRows] = true
				}
			}
		}
		r0 = r1
	}
}

// keyStrips adds, for each strip of the keys [0, nk) of a tile, the product of
// the transposed p (rows × keys, rows tiledKBlock apart) with b (a row per query
// row, width n, rows ldb apart) to c (a row per key, rows ldc apart), over the
// query rows that see one of the strip's keys only. When set is not nil it says
// which strips of c hold a value already: the others are written, not added
// to, and then marked.
func keyStrips(c []float32, ldc int, p []float32, b []float32, ldb, n int, lo, hi []int, rows, nk int, set []bool, pf *prefetchQueue) {
	acc := func(j0 int) bool { return set == nil || set[j0/stripRows] }
	// The rows [p0, p1) that see one of keys [j0, j1): both ends of the visible
	// range are non-decreasing in the row, so both bounds only move forward as
	// the strips go right. last is the first row past those that see any key.
	last := rows
	for last > 0 && lo[last-1] == hi[last-1] {
		last--
	}
	a, z := 0, 0 // the bounds for the strip at j
	seen := func(j0, j1 int) (int, int) {
		for a < rows && hi[a] <= j0 {
			a++
		}
		for z < last && lo[z] < j1 {
			z++
		}
		return a, max(a, z)
	}
	p0, p1 := seen(0, min(stripRows, nk))
	for j0 := 0; j0 < nk; {
		j1 := min(j0+stripRows, nk)
		// Consecutive strips seen by the same rows: one call.
		var q0, q1 int
		for {
			if j1 >= nk {
				break
			}
			q0, q1 = seen(j1, min(j1+stripRows, nk))
			if q0 != p0 || q1 != p1 || acc(j1) != acc(j0) {
				break
			}
			j1 = min(j1+stripRows, nk)
		}
		if p0 < p1 {
			tileMulPF(c[j0*ldc:], ldc, p[p0*tiledKBlock+j0:], 1, tiledKBlock, b[p0*ldb:], ldb, j1-j0, n, p1-p0, 1, acc(j0), pf)
			if set != nil {
				for j := j0; j < j1; j += stripRows {
					set[j/stripRows] = true
				}
			}
		}
		j0, p0, p1 = j1, q0, q1
	}
}

// pStoreLen is the length of the probability store of a forward for d and opt:
// a tile of pTileLen for each (batch, query head, query tile), or 0 when the
// keys do not fit one tile or a window moves the first key of a tile (a tile is
// then not the same forward and backward). With a store the forward computes
// each tile's scores there (rows tiledKBlock apart, each strip of rows over the
// keys it needs, as scoreStrips does) and leaves the probabilities, normalised;
// the backward reads them in place instead of computing the scores and their
// exponentials again: at the lengths a small model trains on this saves one of
// the backward's five tile products. The store is bounded by tiledKBlock keys a
// query row (no T² buffers for long sequences), and only the parts of it that
// the masks let the strips reach are written.
func pStoreLen(d Dims, opt Options) int {
	if opt.Window != 0 || d.KLen == 0 || d.KLen > tiledKBlock {
		return 0
	}
	nqb := (d.QLen + flashQBlock - 1) / flashQBlock
	return d.Batch * d.QHeads * nqb * pTileLen(d)
}

// pStoreWorthIt reports whether a store of n elements for d would hold at least
// a quarter probabilities rather than padding: its tiles are flashQBlock rows by
// tiledKBlock keys whatever the lengths, so at short sequences (a model trained
// on 16-token problems, or a few queries) it would be mostly padding, growing the
// layer's saved tensors several-fold, for a recompute that is cheap there anyway.
func pStoreWorthIt(d Dims, n int) bool {
	return 4*d.Batch*d.QHeads*d.QLen*d.KLen >= n
}

// pTileLen is the room a query tile's probabilities take in the store.
func pTileLen(d Dims) int { return flashQBlock * tiledKBlock }

// prefetchTile prefetches into L2 the part of a store tile (rows i0…i1 of
// its query tile) that the strips of a causal or full mask reach.
func prefetchTile(pf *prefetchQueue, g geometry[float32], tile []float32, i0, i1 int) {
	// Consecutive rows as wide, one range.
	r0, w0 := i0, 0
	for r := i0; r <= i1; r++ {
		w := 0
		if r < i1 {
			if lo, hi := g.sp.rows(r); hi > lo {
				w = min(roundUp8(hi), tiledKBlock)
			}
		}
		if r == i1 || w != w0 {
			if w0 > 0 {
				pf.add(tile, (r0-i0)*tiledKBlock, tiledKBlock, r-r0, w0)
			}
			r0, w0 = r, w
		}
	}
}

// pTileUnit is the index of the tile of query rows from i0 of head h in batch b
// in the store: the forward's unit order.
func pTileUnit(d Dims, b, h, i0 int) int {
	nqb := (d.QLen + flashQBlock - 1) / flashQBlock
	return (b*d.QHeads+h)*nqb + nqb - 1 - i0/flashQBlock
}

// tiledForwardBlock computes the output rows [i0, i1) of query head h in batch
// b (and their log-sum-exps into lse, or, when tp is not nil, their
// probabilities into the store tile tp). With ready (one key tile) the keys of
// the head are in w.kt already, transposed with rows ldT(KLen) apart, and its
// values in w.vc; else each key tile's are prepared here.
func tiledForwardBlock(g geometry[float32], w *tiledFwdScratch, out, lse, q, kt, v, tp []float32, ready bool, b, h, i0, i1 int) {
	d := g.d
	hk := h / g.group
	rows := i1 - i0
	ldk := ldT(d.KLen)
	m, l, acc := w.m[:rows], w.l[:rows], w.acc[:rows*d.VDim]
	for r := range rows {
		m[r], l[r] = negInf[float32](), 0
	}
	ulo, _ := g.sp.rows(i0)
	_, uhi := g.sp.rows(i1 - 1)
	// With one key tile (a training step's usual case) P·V writes each
	// strip of acc that sees a key rather than adding to zeros (a row that
	// sees none is not read: finishRows clears its output); with more, the
	// online softmax adds tile after tile.
	var accSet []bool
	if uhi-ulo <= tiledKBlock {
		accSet = w.accSet[:(rows+stripRows-1)/stripRows]
		clear(accSet)
	} else {
		clear(acc)
	}
	// The output rows are written last; fetch them while the tile is computed
	// (with one key tile the unit before queued them into L2 already: fetched
	// into L1 now, they would only push out the tile's operands).
	if !oneKeyTile(g.d) {
		prefetch(out, g.ov.at(b, i0, h), g.ov.s, rows, d.VDim)
	}
	qc := w.qc[:rows*d.HeadDim]
	gather(qc, d.HeadDim, q, g.qv.at(b, i0, h), g.qv.s, rows)
	if tp != nil && (ulo != 0 || uhi > tiledKBlock) {
		panic(fmt.Sprintf("attention: tiled forward: a probability store for keys [%d, %d)", ulo, uhi))
	}
	for j0 := ulo; j0 < uhi; j0 += tiledKBlock {
		j1 := min(j0+tiledKBlock, uhi)
		nk := j1 - j0
		var vc []float32
		if ready {
			vc = w.vc[j0*d.VDim : j1*d.VDim]
		} else {
			vc = w.vc[:nk*d.VDim]
			gather(vc, d.VDim, v, g.vv.at(b, j0, hk), g.vv.s, nk)
		}
		s := w.s[:rows*tiledKBlock]
		if tp != nil {
			// The tile's probabilities go to the store: computed there, and
			// normalised in place before P·V.
			s = tp[:rows*tiledKBlock]
		}
		vis := w.vis.get(g, i0, rows, j0, j1)
		lo, hi := vis.lo, vis.hi
		if ready {
			scoreStrips(s, qc, d.HeadDim, w.kt[j0:], ldT(d.KLen), vis.sc, rows, g.scale, &w.pf)
		} else {
			scoreStrips(s, qc, d.HeadDim, kt[(b*d.KVHeads+hk)*d.HeadDim*ldk+j0:], ldk, vis.sc, rows, g.scale, &w.pf)
		}
		for r0 := 0; r0 < rows; r0 += stripRows {
			r1 := min(r0+stripRows, rows)
			// Whole vectors of the scores scoreStrips computed: the rest are -Inf.
			cols := roundUp8(vis.sc[r0/stripRows])
			if r1-r0 == stripRows && allSee(lo[r0:r1], hi[r0:r1]) {
				// A whole strip of rows that each see a key: the four rows
				// at once (their latencies overlap).
				for r := r0; r < r1; r++ {
					row := s[r*tiledKBlock : r*tiledKBlock+cols]
					fill(row[:lo[r]], negInf[float32]())
					fill(row[hi[r]:], negInf[float32]())
				}
				mNew, sums := [4]float32(m[r0:r1]), [4]float32{}
				vecmath.SoftmaxRows4Z(s[r0*tiledKBlock:], tiledKBlock, cols, &mNew, &sums)
				for i := range stripRows {
					rescaleRow(acc, d.VDim, m, l, r0+i, mNew[i], sums[i])
				}
				if tp != nil {
					// One tile: the sums are the softmax denominators.
					inv := [4]float32{1 / l[r0], 1 / l[r0+1], 1 / l[r0+2], 1 / l[r0+3]}
					vecmath.ScaleRows4Z(s[r0*tiledKBlock:], tiledKBlock, s[r0*tiledKBlock:], tiledKBlock, cols, &inv)
				}
				continue
			}
			for r := r0; r < r1; r++ {
				row := s[r*tiledKBlock : r*tiledKBlock+cols]
				if lo[r] == hi[r] {
					clear(row)
					continue
				}
				fill(row[:lo[r]], negInf[float32]())
				fill(row[hi[r]:], negInf[float32]())
				mNew, sum := vecmath.SoftmaxRow(row, m[r])
				rescaleRow(acc, d.VDim, m, l, r, mNew, sum)
			}
			if tp != nil {
				for r := r0; r < r1; r++ {
					if l[r] != 0 { // else the row is zeros already
						row := s[r*tiledKBlock:][:cols]
						scaleInto(row, row, 1/l[r])
					}
				}
			}
		}
		rowStrips(acc, d.VDim, s, vc, d.VDim, d.VDim, vis.sc, rows, accSet, &w.pf)
	}
	var rowLSE []float32
	if lse != nil {
		li := (b*d.QHeads+h)*d.QLen + i0
		rowLSE = lse[li : li+rows]
	}
	finishRows(out, g.ov.at(b, i0, h), g.ov.s, acc, d.VDim, m, l, rowLSE, tp != nil)
}

// allSee reports whether every row sees a key: lo[r] < hi[r] for all r.
func allSee(lo, hi []int) bool {
	for r, h := range hi {
		if lo[r] == h {
			return false
		}
	}
	return true
}

// rescaleRow does the online-softmax step of row r after its scores of a tile
// became exponentials against the maximum mNew (sum their sum): the row's
// accumulator (width wide in acc) and running sum l[r] are rescaled from the old
// maximum m[r] to mNew, sum added and m[r] set to mNew.
func rescaleRow(acc []float32, width int, m, l []float32, r int, mNew, sum float32) {
	if mOld := m[r]; mNew != mOld && l[r] != 0 {
		c := vecmath.Exp(mOld - mNew)
		l[r] *= c
		scaleVec(acc[r*width:(r+1)*width], c)
	}
	l[r] += sum
	m[r] = mNew
}

// finishRows writes the output rows (width, stride apart in out from off) as
// the accumulator rows over their softmax denominators l, and their
// log-sum-exps m + ln l into lse when it is not nil; a row with l = 0 saw no key
// (zeros, −Inf). When normalized the accumulator rows are the outputs already
// (the probabilities were divided by l). A function of its own: inlined in the
// tile loop, the compiler spilled this loop's variables to the stack on every
// element.
func finishRows(out []float32, off, stride int, acc []float32, width int, m, l, lse []float32, normalized bool) {
	if normalized && lse == nil {
		// The rows as they are, in one pass, then zeros over those that saw
		// no key.
		scatter(out, off, stride, acc, width, len(l))
		for r, lr := range l {
			if lr == 0 {
				clear(out[off+r*stride:][:width])
			}
		}
		return
	}
	for r, lr := range l {
		o := out[off+r*stride:][:width]
		if lr == 0 {
			clear(o)
			if lse != nil {
				lse[r] = negInf[float32]()
			}
			continue
		}
		if normalized {
			copy(o, acc[r*width:(r+1)*width])
		} else {
			scaleInto(o, acc[r*width:(r+1)*width], 1/lr)
		}
		if lse != nil {
			lse[r] = m[r] + logTile(lr)
		}
	}
}

// scaleInto sets dst[i] = a·src[i] for i < len(dst).
func scaleInto(dst, src []float32, a float32) {
	src = src[:len(dst)]
	i := 0
	for ; i+4 <= len(dst); i += 4 {
		d, s := dst[i:i+4:i+4], src[i:i+4:i+4]
		d[0], d[1], d[2], d[3] = a*s[0], a*s[1], a*s[2], a*s[3]
	}
	for ; i < len(dst); i++ {
		dst[i] = a * src[i]
	}
}

// logTile is ln x for a positive, finite float32 x (a softmax denominator),
// within 2e-7 plus the float32 rounding of the result: x = 2^e·f with f in [√½, √2), and
// ln f = 2·atanh(s) with s = (f−1)/(f+1), |s| < 0.172, by its series to s⁹.
func logTile(x float32) float32 {
	bits := math.Float32bits(x)
	e := int32(bits>>23) - 127
	f := math.Float32frombits(bits&0x007fffff | 0x3f800000) // [1, 2)
	if f > math.Sqrt2 {
		f *= 0.5
		e++
	}
	s := (f - 1) / (f + 1)
	s2 := s * s
	p := s * (2 + s2*(2.0/3+s2*(2.0/5+s2*(2.0/7+s2*(2.0/9)))))
	return float32(e)*math.Ln2 + p
}

// tiledBackward is FlashBackward for float32 on tile products.
func tiledBackward(dq, dk, dv, q, k, v, out, dout, lse, ps []float32, d Dims, opt Options) {
	d.check("tiledBackward", len(q), len(k), len(v), len(out))
	d.check("tiledBackward", len(dq), len(dk), len(dv), len(dout))
	if nrows := d.Batch * d.QHeads * d.QLen; len(lse) != nrows {
		panic(fmt.Sprintf("attention: tiledBackward: lse has %d elements, want %d for %+v", len(lse), nrows, d))
	}
	tiledBackwardG(newGeometry[float32](d, opt), dq, dk, dv, q, k, v, out, dout, lse, nil, ps)
}

// tiledBackwardG is tiledBackward on a geometry whose views may be any strides
// (dq, dk and dv may be the query, key and value columns of one packed tensor).
//
// kt holds the keys transposed by tiledForwardG, or is nil (then they are
// transposed here); ps is the forward's probability store, or nil. With one key
// tile (see oneKeyTile) kt is not used.
func tiledBackwardG(g geometry[float32], dq, dk, dv, q, k, v, out, dout, lse, kt, ps []float32) {
	d := g.d
	nrows := d.Batch * d.QHeads * d.QLen
	var vt []float32
	if !oneKeyTile(d) {
		if kt == nil {
			kt = make([]float32, transposedLen(d, d.HeadDim))
			transposeKV(kt, k, g.kv, d, d.HeadDim)
		}
		vtBuf := autodiff.Empty(autodiff.Float32, transposedLen(d, d.VDim))
		defer vtBuf.Release()
		vt = vtBuf.Float32s()
		transposeKV(vt, v, g.vv, d, d.VDim)
	}
	// delta = dO·O of each row; with stored probabilities the tiles compute it
	// as Σ P⊙dP (the same sum) from what they hold, without reading O.
	var delta []float32
	if len(ps) == 0 {
		delta = make([]float32, nrows)
		// Rows in the order of the (batch, seq) positions, all heads of one
		// after the other: in BSHD they are next to each other in memory.
		metal.ParallelFor(d.Batch*d.QLen, max(1, 1024/d.QHeads), func(lo, hi int) {
			for p := lo; p < hi; p++ {
				b, i := p/d.QLen, p%d.QLen
				for h := range d.QHeads {
					o := g.ov.at(b, i, h)
					delta[(b*d.QHeads+h)*d.QLen+i] = vecmath.Dot(dout[o:o+d.VDim], out[o:o+d.VDim])
				}
			}
		})
	}
	nkb := (d.KLen + tiledKBlock - 1) / tiledKBlock
	units := d.Batch * d.KVHeads
	parts := backwardParts(units, nkb)
	dqs := make([][]float32, parts)
	dqs[0] = dq
	for c := 1; c < parts; c++ {
		dqs[c] = make([]float32, len(dq))
	}
	parallelUnitsRelease(units*parts, func() *tiledScratch {
		w, _ := tiledBwdPool.Get().(*tiledScratch)
		if w == nil {
			w = new(tiledScratch)
		}
		w.p, w.ds = resize(w.p, flashQBlock*tiledKBlock), resize(w.ds, flashQBlock*tiledKBlock)
		w.qc, w.oc = resize(w.qc, flashQBlock*d.HeadDim), resize(w.oc, flashQBlock*d.VDim)
		w.kc = resize(w.kc, tiledKBlock*d.HeadDim)
		w.dk, w.dv = resize(w.dk, tiledKBlock*d.HeadDim), resize(w.dv, tiledKBlock*d.VDim)
		w.vis.reset()
		w.dqSet = resize(w.dqSet, g.group*((d.QLen+stripRows-1)/stripRows))
		w.dkSet, w.dvSet = resize(w.dkSet, tiledKBlock/stripRows), resize(w.dvSet, tiledKBlock/stripRows)
		w.kt, w.vt = nil, nil
		if oneKeyTile(d) {
			w.ktBuf = resize(w.ktBuf, d.HeadDim*ldT(tiledKBlock))
			w.vtBuf = resize(w.vtBuf, d.VDim*ldT(tiledKBlock))
			w.kt, w.vt = w.ktBuf, w.vtBuf
		}
		return w
	}, func(w *tiledScratch) {
		w.pf.reset(1)
		tiledBwdPool.Put(w)
	}, func(w *tiledScratch, u int) {
		c := u % parts
		b, hk := (u/parts)/d.KVHeads, (u/parts)%d.KVHeads
		// This unit owns the dq rows of its query heads in its part: the first
		// key block that reaches a strip of rows writes it, later ones add to
		// it, and strips no key of this part reaches are cleared at the end.
		clear(w.dqSet)
		w.pf.reset(prefetchLinesBwd)
		if next := u + min(metal.Threads(), units); oneKeyTile(d) && parts == 1 && next < units {
			// The next unit's rows into L2 while this one computes, as
			// forward: its keys, values, queries, output gradients and
			// stored probabilities.
			b, hk := next/d.KVHeads, next%d.KVHeads
			w.pf.add(k, g.kv.at(b, 0, hk), g.kv.s, d.KLen, d.HeadDim)
			w.pf.add(v, g.vv.at(b, 0, hk), g.vv.s, d.KLen, d.VDim)
			for h := hk * g.group; h < (hk+1)*g.group; h++ {
				w.pf.add(q, g.qv.at(b, 0, h), g.qv.s, d.QLen, d.HeadDim)
				w.pf.add(dout, g.ov.at(b, 0, h), g.ov.s, d.QLen, d.VDim)
				w.pf.add(dq, g.qv.at(b, 0, h), g.qv.s, d.QLen, d.HeadDim)
				for i0 := 0; len(ps) > 0 && i0 < d.QLen; i0 += flashQBlock {
					prefetchTile(&w.pf, g, ps[pTileUnit(d, b, h, i0)*pTileLen(d):], i0, min(i0+flashQBlock, d.QLen))
				}
			}
			w.pf.add(dk, g.kv.at(b, 0, hk), g.kv.s, d.KLen, d.HeadDim)
			w.pf.add(dv, g.vv.at(b, 0, hk), g.vv.s, d.KLen, d.VDim)
		}
		for kb := c; kb < nkb; kb += parts {
			j0 := kb * tiledKBlock
			tiledBackwardBlock(g, w, dqs[c], dk, dv, q, k, v, kt, vt, dout, lse, delta, ps, b, hk, j0, min(j0+tiledKBlock, d.KLen))
		}
		w.pf.flush()
		nqs := (d.QLen + stripRows - 1) / stripRows
		for i, set := range w.dqSet {
			if set {
				continue
			}
			h, r0 := hk*g.group+i/nqs, (i%nqs)*stripRows
			for r := r0; r < min(r0+stripRows, d.QLen); r++ {
				clear(dqs[c][g.qv.at(b, r, h):][:d.HeadDim])
			}
		}
	})
	if parts > 1 {
		metal.ParallelFor(len(dq), 1<<14, func(lo, hi int) {
			for _, part := range dqs[1:] {
				vecmath.AddTo(dq[lo:hi], part[lo:hi])
			}
		})
	}
}

// tiledScratch is a backward worker's scratch: the P and dS tiles, the gathered
// query, output-gradient and key tiles, the dK and dV of the key block, the keys
// each row sees (as in tiledFwdScratch) and which strips of its unit's dq rows
// hold a value.
type tiledScratch struct {
	p, ds, qc, oc, kc, dk, dv []float32
	kt, vt                    []float32     // the block's keys and values transposed (see oneKeyTile), or nil
	ktBuf, vtBuf              []float32     // their storage, kept in the pool
	vis                       visCache      // the keys each row sees
	dqSet                     []bool        // (query head in the group, strip of 4 query rows) written
	dkSet, dvSet              []bool        // strips of 4 keys of the block whose dk, dv rows are written
	pf                        prefetchQueue // the next unit's rows
}

// tiledBackwardBlock writes dk and dv of keys [j0, j1) of key/value head hk in
// batch b and adds their part of dq, over every query head of the group and every
// query tile that sees one of the keys.
func tiledBackwardBlock(g geometry[float32], w *tiledScratch, dq, dk, dv, q, k, v, kt, vt, dout, lse, delta, ps []float32, b, hk, j0, j1 int) {
	d := g.d
	nk := j1 - j0
	ldk := ldT(d.KLen)
	kto := (b*d.KVHeads+hk)*d.HeadDim*ldk + j0
	vto := (b*d.KVHeads+hk)*d.VDim*ldk + j0
	kc := w.kc[:nk*d.HeadDim]
	gather(kc, d.HeadDim, k, g.kv.at(b, j0, hk), g.kv.s, nk)
	if oneKeyTile(d) {
		// This block's keys (from their gathered copy, unless the forward's
		// probabilities are stored) and values transposed here.
		ldk, kto, vto = ldT(nk), 0, 0
		kt, vt = w.kt, w.vt
		if len(ps) == 0 {
			transposeTile(kt, ldk, kc, 0, d.HeadDim, nk, d.HeadDim)
		}
		transposeTile(vt, ldk, v, g.vv.at(b, j0, hk), g.vv.s, nk, d.VDim)
	}
	gk, gv := w.dk[:nk*d.HeadDim], w.dv[:nk*d.VDim]
	// The first product that reaches a strip of keys writes its rows of gk
	// and gv, later ones add to them; strips none reaches are cleared at the
	// end.
	nks := (nk + stripRows - 1) / stripRows
	dkSet, dvSet := w.dkSet[:nks], w.dvSet[:nks]
	clear(dkSet)
	clear(dvSet)
	// dk and dv are written last; fetch their rows while the block is computed
	// (with one key tile the unit before queued them into L2 already).
	if !oneKeyTile(g.d) {
		prefetch(dk, g.kv.at(b, j0, hk), g.kv.s, nk, d.HeadDim)
		prefetch(dv, g.vv.at(b, j0, hk), g.vv.s, nk, d.VDim)
	}
	for h := hk * g.group; h < (hk+1)*g.group; h++ {
		for i0 := 0; i0 < d.QLen; i0 += flashQBlock {
			i1 := min(i0+flashQBlock, d.QLen)
			if ulo, _ := g.sp.rows(i0); ulo >= j1 {
				break // later tiles start further right
			}
			if _, uhi := g.sp.rows(i1 - 1); uhi <= j0 {
				continue
			}
			rows := i1 - i0
			vis := w.vis.get(g, i0, rows, j0, j1)
			lo, hi := vis.lo, vis.hi
			qc, oc := w.qc[:rows*d.HeadDim], w.oc[:rows*d.VDim]
			gather(qc, d.HeadDim, q, g.qv.at(b, i0, h), g.qv.s, rows)
			gather(oc, d.VDim, dout, g.ov.at(b, i0, h), g.ov.s, rows)
			p, ds := w.p[:rows*tiledKBlock], w.ds[:rows*tiledKBlock]
			stored := len(ps) > 0
			if stored { // the forward's probabilities of this tile, read in place
				p = ps[pTileUnit(d, b, h, i0)*pTileLen(d):][:rows*tiledKBlock]
			} else {
				scoreStrips(p, qc, d.HeadDim, kt[kto:], ldk, vis.sc, rows, g.scale, &w.pf)
			}
			scoreStrips(ds, oc, d.VDim, vt[vto:], ldk, vis.sc, rows, 1, &w.pf)
			for r0 := 0; r0 < rows; r0 += stripRows {
				r1 := min(r0+stripRows, rows)
				// Whole vectors of the scores scoreStrips computed, which covers
				// the strips of keys keyStrips reads a row over (those of which
				// it sees one).
				cols := roundUp8(vis.sc[r0/stripRows])
				if stored {
					if r1-r0 == stripRows {
						var rd [4]float32
						vecmath.SoftmaxGradPDeltaRows4Z(p[r0*tiledKBlock:], ds[r0*tiledKBlock:], tiledKBlock, cols, &rd, g.scale)
						continue
					}
					for r := r0; r < r1; r++ {
						pr, dr := p[r*tiledKBlock:][:cols], ds[r*tiledKBlock:][:cols]
						dl := float32(0)
						for j, x := range pr {
							dl += x * dr[j]
						}
						for j, x := range pr {
							dr[j] = x * g.scale * (dr[j] - dl)
						}
					}
					continue
				}
				if r1-r0 == stripRows && allSee(lo[r0:r1], hi[r0:r1]) {
					// Four rows at once, as forward.
					for r := r0; r < r1; r++ {
						pr := p[r*tiledKBlock:][:cols]
						fill(pr[:lo[r]], negInf[float32]())
						fill(pr[hi[r]:], negInf[float32]())
					}
					li := (b*d.QHeads+h)*d.QLen + i0 + r0
					rl, rd := [4]float32(lse[li:li+stripRows]), [4]float32(delta[li:li+stripRows])
					vecmath.SoftmaxGradRows4(p[r0*tiledKBlock:], ds[r0*tiledKBlock:], tiledKBlock, cols, &rl, &rd, g.scale)
					continue
				}
				for r := r0; r < r1; r++ {
					pr, dr := p[r*tiledKBlock:][:cols], ds[r*tiledKBlock:][:cols]
					if lo[r] == hi[r] {
						clear(pr)
						clear(dr)
						continue
					}
					fill(pr[:lo[r]], negInf[float32]())
					fill(pr[hi[r]:], negInf[float32]())
					li := (b*d.QHeads+h)*d.QLen + i0 + r
					vecmath.SoftmaxGradRow(pr, dr, lse[li], delta[li], g.scale)
				}
			}
			// dQ = dS·K over each strip's keys; dK = dSᵀ·Q and dV = Pᵀ·dO over the
			// query rows that see each strip of keys.
			nqs := (d.QLen + stripRows - 1) / stripRows
			rowStrips(dq[g.qv.at(b, i0, h):], g.qv.s, ds, kc, d.HeadDim, d.HeadDim, vis.sc, rows, w.dqSet[(h-hk*g.group)*nqs+i0/stripRows:], &w.pf)
			keyStrips(gk, d.HeadDim, ds, qc, d.HeadDim, d.HeadDim, lo, hi, rows, nk, dkSet, &w.pf)
			keyStrips(gv, d.VDim, p, oc, d.VDim, d.VDim, lo, hi, rows, nk, dvSet, &w.pf)
		}
	}
	for i := range nks {
		k0, k1 := i*stripRows, min(i*stripRows+stripRows, nk)
		if !dkSet[i] {
			clear(gk[k0*d.HeadDim : k1*d.HeadDim])
		}
		if !dvSet[i] {
			clear(gv[k0*d.VDim : k1*d.VDim])
		}
	}
	scatter(dk, g.kv.at(b, j0, hk), g.kv.s, gk, d.HeadDim, nk)
	scatter(dv, g.vv.at(b, j0, hk), g.vv.s, gv, d.VDim, nk)
}

// tiledAttention is [FlashAttention] for float32 tensors on the tiled kernels.
func tiledAttention(q, k, v *autodiff.Tensor, opt Options) *autodiff.Tensor {
	d := ShapeDims("tiled_attention", opt.Layout, q.Shape(), k.Shape(), v.Shape())
	if q.DType() != autodiff.Float32 || k.DType() != autodiff.Float32 || v.DType() != autodiff.Float32 {
		panic("attention: tiled_attention: want float32 q, k, v, have " + q.DType().String() + ", " + k.DType().String() + ", " + v.DType().String())
	}
	var start time.Time
	if metal.Profiling() {
		start = time.Now()
	}
	out := autodiff.Empty(autodiff.Float32, d.outShape(opt.Layout)...)
	tracked := q.Tape() != nil || k.Tape() != nil || v.Tape() != nil
	g := newGeometry[float32](d, opt)
	saved, kt := transposedKeys(d)
	saved, ps := probStore(d, opt, tracked, saved...)
	var lse []float32
	if tracked && ps == nil { // else the backward reads the stored probabilities
		lse = make([]float32, d.Batch*d.QHeads*d.QLen)
	}
	tiledForwardG(g, out.Float32s(), lse, q.Float32s(), k.Float32s(), v.Float32s(), kt, ps)
	if !start.IsZero() {
		metal.RecordOp("tiled_attention", metal.PathBLAS, time.Since(start), int64(q.Len()+k.Len()+v.Len()+out.Len())*4)
	}
	res := autodiff.Record(out, "tiled_attention", func(gr *autodiff.Tensor) {
		if !autodiff.NeedsGrad(q) && !autodiff.NeedsGrad(k) && !autodiff.NeedsGrad(v) {
			return
		}
		var start time.Time
		if metal.Profiling() {
			start = time.Now()
		}
		dq, dk, dv := autodiff.Empty(autodiff.Float32, q.Shape()...), autodiff.Empty(autodiff.Float32, k.Shape()...), autodiff.Empty(autodiff.Float32, v.Shape()...)
		tiledBackwardG(g, dq.Float32s(), dk.Float32s(), dv.Float32s(), q.Float32s(), k.Float32s(), v.Float32s(), out.Float32s(), gr.Float32s(), lse, kt, ps)
		if !start.IsZero() {
			metal.RecordOp("tiled_attention_backward", metal.PathBLAS, time.Since(start), int64(2*(q.Len()+k.Len()+v.Len()+2*out.Len()))*4)
		}
		for _, p := range [][2]*autodiff.Tensor{{q, dq}, {k, dk}, {v, dv}} {
			if autodiff.NeedsGrad(p[0]) {
				autodiff.Accumulate(p[0], func() *autodiff.Tensor { return p[1] })
			} else {
				p[1].Release()
			}
		}
	}, q, k, v)
	keepWith(res, saved...)
	return res
}

// transposedKeys returns the buffer tiledForwardG transposes the keys of d
// into, kept for the backward, or nothing with one key tile (see oneKeyTile).
func transposedKeys(d Dims) ([]*autodiff.Tensor, []float32) {
	if oneKeyTile(d) {
		return nil, nil
	}
	buf := autodiff.Empty(autodiff.Float32, transposedLen(d, d.HeadDim))
	return []*autodiff.Tensor{buf}, buf.Float32s()
}

// probStore returns the probability store of a forward of d (see pStoreLen)
// when tracked (a backward may follow) and the shape allows one, or nil, and the
// tensors to keep for the backward: saved and the store's.
func probStore(d Dims, opt Options, tracked bool, saved ...*autodiff.Tensor) ([]*autodiff.Tensor, []float32) {
	n := pStoreLen(d, opt)
	if !tracked || n == 0 || !pStoreWorthIt(d, n) {
		return saved, nil
	}
	buf := autodiff.Empty(autodiff.Float32, n)
	return append(saved, buf), buf.Float32s()
}

func fill(s []float32, v float32) {
	for i := range s {
		s[i] = v
	}
}

// ---- packed q, k and v -------------------------------------------------------------

// The float32 training path of a Block keeps queries, keys and values in one
// packed tensor (batch, seq, (Heads + 2·KVHeads)·HeadDim): row t holds the query
// heads, then the key heads, then the value heads of token t. One GEMM projects
// all three, RoPE rotates the query and key columns, and the tiled kernels read
// (and, backward, write) the three through strides, so the gradient of the
// projection arrives as one packed tensor: one GEMM for dx instead of three
// and two additions.

// projectQKV computes [x·Wqᵀ + bq | x·Wkᵀ + bk | x·Wvᵀ + bv] for float32 x (..., in),
// the biases all present or all nil.
func projectQKV(x, wq, wk, wv, bq, bk, bv *autodiff.Tensor) *autodiff.Tensor {
	in := x.Dim(-1)
	ws := []*autodiff.Tensor{wq, wk, wv}
	bs := []*autodiff.Tensor{bq, bk, bv}
	width := 0
	offs := make([]int, 4)
	for i, w := range ws {
		if w.Rank() != 2 || w.Dim(1) != in || w.DType() != autodiff.Float32 || x.DType() != autodiff.Float32 ||
			(bs[i] == nil) != (bq == nil) || bs[i] != nil && (bs[i].Rank() != 1 || bs[i].Dim(0) != w.Dim(0) || bs[i].DType() != autodiff.Float32) {
			panic(fmt.Sprintf("attention: project_qkv: input %s %v, weight %v, bias %v", x.DType(), x.Shape(), w.Shape(), bs[i]))
		}
		width += w.Dim(0)
		offs[i+1] = width
	}
	rows := x.Len() / in
	// The weights side by side: (width, in), kept for the backward.
	wcat := autodiff.Empty(autodiff.Float32, width, in)
	wc := wcat.Float32s()
	for i, w := range ws {
		copy(wc[offs[i]*in:], w.Float32s())
	}
	shape := append(append([]int(nil), x.Shape()[:x.Rank()-1]...), width)
	y := autodiff.Empty(autodiff.Float32, shape...)
	ys := y.Float32s()
	xs := x.Float32s()
	if bq != nil {
		// The biases join each block of rows as the GEMM finishes it, while
		// it is in cache, instead of a broadcast over y before a β=1 product
		// (a pass over y through memory).
		bias := make([]float32, width)
		for i, b := range bs {
			copy(bias[offs[i]:], b.Float32s())
		}
		gemm.SgemmEpilogue(false, true, rows, width, in, 1, xs, in, wc, in, 0, ys, width, func(i0, i1, j0, j1 int) {
			for r := i0; r < i1; r++ {
				vecmath.AddTo(ys[r*width+j0:r*width+j1], bias[j0:j1])
			}
		})
	} else {
		gemm.Sgemm(false, true, rows, width, in, 1, xs, in, wc, in, 0, ys, width)
	}
	inputs := append([]*autodiff.Tensor{x}, ws...)
	if bq != nil {
		inputs = append(inputs, bs...)
	}
	out := autodiff.Record(y, "project_qkv", func(g *autodiff.Tensor) {
		gs := g.Float32s()
		// One GEMM for the three weight gradients side by side, (width, in): x is
		// packed once instead of once per weight.
		needW := false
		for _, w := range ws {
			needW = needW || autodiff.NeedsGrad(w)
		}
		var dwcat *autodiff.Tensor
		if needW {
			dwcat = autodiff.Empty(autodiff.Float32, width, in)
			defer dwcat.Release()
		}
		if needW && autodiff.NeedsGrad(x) && metal.Threads() > 1 {
			// The input and weight gradients side by side, one per worker.
			dx := autodiff.Empty(autodiff.Float32, x.Shape()...)
			gemm.LinearGrads(rows, in, width, gs, wc, xs, dx.Float32s(), dwcat.Float32s())
			autodiff.Accumulate(x, func() *autodiff.Tensor { return dx })
		} else {
			autodiff.Accumulate(x, func() *autodiff.Tensor {
				dx := autodiff.Empty(autodiff.Float32, x.Shape()...)
				gemm.Sgemm(false, false, rows, in, width, 1, gs, width, wc, in, 0, dx.Float32s(), in)
				return dx
			})
			if needW {
				gemm.Sgemm(true, false, width, in, rows, 1, gs, width, xs, in, 0, dwcat.Float32s(), in)
			}
		}
		if needW {
			dwc := dwcat.Float32s()
			for i, w := range ws {
				autodiff.Accumulate(w, func() *autodiff.Tensor {
					dw := autodiff.Empty(autodiff.Float32, w.Shape()...)
					copy(dw.Float32s(), dwc[offs[i]*in:offs[i+1]*in])
					return dw
				})
			}
		}
		if bq == nil {
			return
		}
		sums := make([]float32, width)
		columnSums32(sums, gs, rows, width)
		for i, b := range bs {
			autodiff.Accumulate(b, func() *autodiff.Tensor {
				return autodiff.FromFloat32(sums[offs[i]:offs[i+1]], b.Dim(0))
			})
		}
	}, inputs...)
	keepWith(out, wcat)
	return out
}

// columnSums32 adds the column sums of the rows×cols matrix g to dst, with
// per-worker partial sums added in worker order.
func columnSums32(dst, g []float32, rows, cols int) {
	var mu sync.Mutex
	metal.ParallelFor(rows, max(1, (1<<15)/cols), func(lo, hi int) {
		part := make([]float32, cols)
		for r := lo; r < hi; r++ {
			vecmath.AddTo(part, g[r*cols:(r+1)*cols])
		}
		mu.Lock()
		for j, v := range part {
			dst[j] += v
		}
		mu.Unlock()
	})
}

// keepWith ties saved tensors to out's tape, or frees them when out is not
// recorded.
func keepWith(out *autodiff.Tensor, saved ...*autodiff.Tensor) {
	if tp := out.Tape(); tp != nil {
		tp.Own(saved...)
		return
	}
	for _, s := range saved {
		s.Release()
	}
}

// ropePacked rotates the first heads·headDim columns of each row of the packed
// float32 tensor x (batch, seq, width) by RoPE (opt.Offset is the position of
// token 0; the layout is ignored) and copies the rest.
func ropePacked(x *autodiff.Tensor, heads, headDim int, opt RoPEOptions) *autodiff.Tensor {
	bs, seq, width := x.Dim(0), x.Dim(1), x.Dim(2)
	r := opt.rotated(headDim)
	half := r / 2
	cs := make([]float32, 2*seq*half)
	scale := opt.Scale
	if scale == 0 {
		scale = 1
	}
	for i := range half {
		invFreq := math.Pow(opt.base(), -float64(2*i)/float64(r))
		for s := range seq {
			a := float64(opt.Offset+s) * scale * invFreq
			cs[2*(s*half+i)] = float32(math.Cos(a))
			cs[2*(s*half+i)+1] = float32(math.Sin(a))
		}
	}
	apply := func(dst, src []float32, sign float32) {
		metal.ParallelFor(bs*seq, max(1, (1<<14)/width), func(lo, hi int) {
			for u := lo; u < hi; u++ {
				row, out := src[u*width:(u+1)*width], dst[u*width:(u+1)*width]
				c := cs[2*(u%seq)*half : 2*(u%seq+1)*half]
				for h := range heads {
					xs, os := row[h*headDim:(h+1)*headDim], out[h*headDim:(h+1)*headDim]
					for i := range half {
						cos, sin := c[2*i], sign*c[2*i+1]
						a, b := 2*i, 2*i+1
						if !opt.Interleaved {
							a, b = i, i+half
						}
						x0, x1 := xs[a], xs[b]
						os[a], os[b] = x0*cos-x1*sin, x0*sin+x1*cos
					}
					copy(os[r:], xs[r:])
				}
				copy(out[heads*headDim:], row[heads*headDim:])
			}
		})
	}
	y := autodiff.Empty(autodiff.Float32, x.Shape()...)
	apply(y.Float32s(), x.Float32s(), 1)
	return autodiff.Record(y, "rope_packed", func(g *autodiff.Tensor) {
		autodiff.Accumulate(x, func() *autodiff.Tensor {
			dx := autodiff.Empty(autodiff.Float32, x.Shape()...)
			apply(dx.Float32s(), g.Float32s(), -1)
			return dx
		})
	}, x)
}

// packedAttention is attention over the packed float32 tensor qkv (batch, seq,
// (heads + 2·kvHeads)·headDim), self-attention of the sequence on itself, giving
// (batch, seq, heads, headDim). Its backward writes the packed gradient.
func packedAttention(qkv *autodiff.Tensor, heads, kvHeads, headDim int, opt Options) *autodiff.Tensor {
	bs, seq, width := qkv.Dim(0), qkv.Dim(1), qkv.Dim(2)
	if qkv.DType() != autodiff.Float32 || width != (heads+2*kvHeads)*headDim || heads%kvHeads != 0 {
		panic(fmt.Sprintf("attention: packed_attention: %s %v for %d heads, %d kv heads of %d", qkv.DType(), qkv.Shape(), heads, kvHeads, headDim))
	}
	d := Dims{Batch: bs, QLen: seq, KLen: seq, QHeads: heads, KVHeads: kvHeads, HeadDim: headDim, VDim: headDim}
	opt.Layout = BSHD
	g := newGeometry[float32](d, opt)
	packed := view{seq * width, width, headDim}
	g.qv, g.kv, g.vv = packed, packed, packed
	qo, ko, vo := 0, heads*headDim, (heads+kvHeads)*headDim
	var start time.Time
	if metal.Profiling() {
		start = time.Now()
	}
	out := autodiff.Empty(autodiff.Float32, bs, seq, heads, headDim)
	x := qkv.Float32s()
	saved, kt := transposedKeys(d)
	saved, ps := probStore(d, opt, qkv.Tape() != nil, saved...)
	var lse []float32
	if qkv.Tape() != nil && ps == nil { // else the backward reads the stored probabilities
		lse = make([]float32, bs*heads*seq)
	}
	tiledForwardG(g, out.Float32s(), lse, x[qo:], x[ko:], x[vo:], kt, ps)
	if !start.IsZero() {
		metal.RecordOp("packed_attention", metal.PathBLAS, time.Since(start), int64(qkv.Len()+out.Len())*4)
	}
	res := autodiff.Record(out, "packed_attention", func(gr *autodiff.Tensor) {
		autodiff.Accumulate(qkv, func() *autodiff.Tensor {
			var start time.Time
			if metal.Profiling() {
				start = time.Now()
			}
			dx := autodiff.Empty(autodiff.Float32, qkv.Shape()...)
			ds := dx.Float32s()
			tiledBackwardG(g, ds[qo:], ds[ko:], ds[vo:], x[qo:], x[ko:], x[vo:], out.Float32s(), gr.Float32s(), lse, kt, ps)
			if !start.IsZero() {
				metal.RecordOp("packed_attention_backward", metal.PathBLAS, time.Since(start), int64(2*qkv.Len()+2*out.Len())*4)
			}
			return dx
		})
	}, qkv)
	keepWith(res, saved...)
	return res
}

// tileMul sets C (m×n, rows ldc apart) to alpha·A·B, or adds alpha·A·B to it when
// acc, for A(i, p) = a[i·ars + p·acs] (m×k: row-major when acs is 1, a transposed
// matrix when ars is 1) and B (k×n) with rows ldb apart. Strides are in
// elements. The AVX2 strips take it when n is a multiple of 8; gemm the rest.
func tileMul(c []float32, ldc int, a []float32, ars, acs int, b []float32, ldb, m, n, k int, alpha float32, acc bool) {
	tileMulPF(c, ldc, a, ars, acs, b, ldb, m, n, k, alpha, acc, nil)
}

// tileMulPF is tileMul issuing a step of pf (when not nil) before each strip
// of rows.
func tileMulPF(c []float32, ldc int, a []float32, ars, acs int, b []float32, ldb, m, n, k int, alpha float32, acc bool, pf *prefetchQueue) {
	if m > 0 && m%stripRows == 0 && k > 0 && stripsFast(n) {
		// The common case, kept lean (it runs some ten thousand times an
		// attention of the tiny GPT): whole strips on the assembly kernel.
		// Bounds, checked once here: the assembly does not.
		if (m-1)*ars+(k-1)*acs >= len(a) || (k-1)*ldb+n > len(b) || (m-1)*ldc+n > len(c) {
			tileMulBounds(c, ldc, a, ars, acs, b, ldb, m, n, k)
		}
		flag := 0
		if acc {
			flag = 1
		}
		for i := 0; i < m; i += stripRows {
			pf.step()
			strip4(&c[i*ldc], ldc, &a[i*ars], ars, acs, &b[0], ldb, n, k, alpha, flag)
		}
		return
	}
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		if !acc {
			for i := range m {
				clear(c[i*ldc : i*ldc+n])
			}
		}
		return
	}
	if tileMulAsm(c, ldc, a, ars, acs, b, ldb, m, n, k, alpha, acc, pf) {
		return
	}
	pf.step()
	beta := float32(0)
	if acc {
		beta = 1
	}
	switch {
	case acs == 1:
		gemm.Sgemm(false, false, m, n, k, alpha, a, ars, b, ldb, beta, c, ldc)
	case ars == 1:
		gemm.Sgemm(true, false, m, n, k, alpha, a, acs, b, ldb, beta, c, ldc)
	default:
		tileMulGo(c, ldc, a, ars, acs, b, ldb, m, n, k, alpha, acc)
	}
}

// tileMulGo is tileMul in plain Go.
func tileMulGo(c []float32, ldc int, a []float32, ars, acs int, b []float32, ldb, m, n, k int, alpha float32, acc bool) {
	for i := range m {
		row := c[i*ldc : i*ldc+n]
		if !acc {
			clear(row)
		}
		for p := range k {
			av := alpha * a[i*ars+p*acs]
			for j, bv := range b[p*ldb : p*ldb+n] {
				row[j] += av * bv
			}
		}
	}
}
