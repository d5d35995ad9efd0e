package gemm

import "github.com/mlxtrain/mlxtrain/internal/vecmath"

// The packing routines in assembly (pack_amd64.s). They run only where
// asmAvailable (AVX2) is true, as the micro-kernel does.

//go:noescape
func packA6N8(dst, a *float32, lda, blocks int)

//go:noescape
func packA6T(dst, a *float32, lda, kc int)

//go:noescape
func packB16N(dst, b *float32, ldb, kc int)

// packA6NFast packs 6 rows of A stored row-major (row i at a[i·lda:]) × kc
// columns into d: d[6p+i] = a[i·lda+p].
func packA6NFast(d, a []float32, lda, kc int) {
	if kc == 0 {
		return
	}
	d = d[:6*kc]
	_ = a[5*lda+kc-1] // the assembly reads within these bounds
	blocks := kc / 8
	if blocks > 0 {
		packA6N8(&d[0], &a[0], lda, blocks)
	}
	packA6NGo(d, a, lda, blocks*8, kc)
}

// packA6TFast packs 6 columns of A stored transposed (k×m; row p at a[p·lda:]) ×
// kc rows into d: d[6p+i] = a[p·lda+i].
func packA6TFast(d, a []float32, lda, kc int) {
	if kc == 0 {
		return
	}
	d = d[:6*kc]
	_ = a[(kc-1)*lda+5]
	packA6T(&d[0], &a[0], lda, kc)
}

// packB16NFast packs kc rows × 16 columns of B stored row-major into d:
// d[16p+j] = b[p·ldb+j].
func packB16NFast(d, b []float32, ldb, kc int) {
	if kc == 0 {
		return
	}
	d = d[:16*kc]
	_ = b[(kc-1)*ldb+15]
	packB16N(&d[0], &b[0], ldb, kc)
}

//go:noescape
func packA6TBlock(dst, a *float32, lda, kc, panels int)

//go:noescape
func packB16NBlock(dst, b *float32, ldb, kc, panels int)

// packA6TPanels is packA6TFast for panels consecutive panels (6·panels columns of
// A stored k×m), row by row: panel r at d[6·kc·r:].
func packA6TPanels(d, a []float32, lda, kc, panels int) {
	if kc == 0 || panels == 0 {
		return
	}
	d = d[:6*kc*panels]
	_ = a[(kc-1)*lda+6*panels-1]
	packA6TBlock(&d[0], &a[0], lda, kc, panels)
}

// packB16NPanels is packB16NFast for panels consecutive panels (16·panels
// columns of B stored k×n), row by row: panel r at d[16·kc·r:].
func packB16NPanels(d, b []float32, ldb, kc, panels int) {
	if kc == 0 || panels == 0 {
		return
	}
	d = d[:16*kc*panels]
	_ = b[(kc-1)*ldb+16*panels-1]
	packB16NBlock(&d[0], &b[0], ldb, kc, panels)
}

//go:noescape
func packB16T8(dst, b *float32, ldb, blocks int)

// packB16TFast packs 16 columns of op(B) = Bᵀ, B stored n×k (row j of B at
// b[j·ldb:]), × kc depths into d: d[16p+j] = b[j·ldb+p].
func packB16TFast(d, b []float32, ldb, kc int) {
	if kc == 0 {
		return
	}
	d = d[:16*kc]
	_ = b[15*ldb+kc-1]
	blocks := kc / 8
	if blocks > 0 {
		packB16T8(&d[0], &b[0], ldb, blocks)
	}
	packB16TGo(d, b, ldb, blocks*8, kc)
}

// addRow adds src to dst (the same length).
func addRow(dst, src []float32) { vecmath.AddTo(dst, src) }
