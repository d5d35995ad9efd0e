package gemm

import (
	"os"

	"golang.org/x/sys/cpu"
)

// The AVX-512 kernels (kernel_avx512_amd64.s) compute a 6×32 tile from two
// adjacent 16-column B panels: on a Zen4 core, whose 512-bit FMAs are
// double-pumped (the same FLOPs per cycle as 256-bit ones), they need half the
// loads per FMA of the 6×16 AVX2 kernel. They run where the CPU and OS support
// AVX-512F, unless MLXTRAIN_GEMM_AVX512=off; the AVX2 kernels do the rest (edge
// tiles, a last odd panel). The weight gradients Aᵀ·B run 12×32 tiles instead
// (kernel12_avx512_amd64.s), reading the stored A and a row-major B in place:
// twelve side-by-side floats of A and one B row pair per 24 FMAs.

//go:noescape
func sgemmPanels6x32Z(k int, a, b, c *float32, ldc int, alpha, beta float32, panels int)

//go:noescape
func sgemmEdge32Z(k int, a, b, c *float32, ldc int, alpha, beta float32, rows int)

//go:noescape
func sgemmPanels12x32ZT(k int, a *float32, lda int, b, c *float32, ldc int, alpha, beta float32, pairs int)

//go:noescape
func sgemmEdge32ZT(k int, a *float32, lda int, b, c *float32, ldc int, alpha, beta float32, rows int)

//go:noescape
func sgemmPanels12x32ZTB(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, pairs int)

//go:noescape
func sgemmEdge32ZTB(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, rows int)

//go:noescape
func sgemmPanels6x32ZA(k int, a *float32, lda int, b, c *float32, ldc int, alpha, beta float32, panels int)

// avx512Available reports whether the AVX-512 kernels can run here.
func avx512Available() bool { return asmAvailable() && cpu.X86.HasAVX512F }

// useAVX512 installs the AVX-512 kernels in asmBlocking (on) or removes them.
func useAVX512(on bool) {
	if on && avx512Available() {
		asmBlocking.panels2, asmBlocking.panels2A, asmBlocking.rows2AT, asmBlocking.rows2ATB, asmBlocking.edge2 = asmPanels2, asmPanels2A, asmRows2AT, asmRows2ATB, asmEdge2
		return
	}
	asmBlocking.panels2, asmBlocking.panels2A, asmBlocking.rows2AT, asmBlocking.rows2ATB, asmBlocking.edge2 = nil, nil, nil, nil, nil
}

func init() { useAVX512(os.Getenv("MLXTRAIN_GEMM_AVX512") != "off") }

// asmPanels2 runs the AVX-512 kernel on panels full 6×32 tiles down two columns
// of tiles: tile t reads the packed A panel a[6·k·t:] and the two packed B
// panels in b (16·k floats each) and writes rows 6t..6t+5, 32 columns, of c.
func asmPanels2(k int, a, b, c []float32, ldc int, alpha, beta float32, panels int) {
	if panels == 0 {
		return
	}
	_ = a[6*k*panels-1]
	_ = b[32*k-1]
	_ = c[(6*panels-1)*ldc+31]
	sgemmPanels6x32Z(k, &a[0], &b[0], &c[0], ldc, alpha, beta, panels)
}

// asmPanels2A is asmPanels2 reading six rows of A in place per tile (rows
// 6t..6t+5 of a, lda apart).
func asmPanels2A(k int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32, panels int) {
	if panels == 0 {
		return
	}
	_ = a[(6*panels-1)*lda+k-1]
	_ = b[32*k-1]
	_ = c[(6*panels-1)*ldc+31]
	sgemmPanels6x32ZA(k, &a[0], lda, &b[0], &c[0], ldc, alpha, beta, panels)
}

// asmRows2AT computes rows [0, rows) of a 32-column strip of c from A stored
// transposed (k×m) in place and the two packed B panels in b: tile t of the
// 12×32 kernel reads columns 12t..12t+11 of rows 0..k-1 of a, lda apart, and
// the edge kernel the rows past the last full tile (at most 11).
func asmRows2AT(k int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32, rows int) {
	if rows <= 0 {
		return
	}
	_ = a[(k-1)*lda+rows-1]
	_ = b[32*k-1]
	_ = c[(rows-1)*ldc+31]
	pairs := rows / 12
	if pairs > 0 {
		sgemmPanels12x32ZT(k, &a[0], lda, &b[0], &c[0], ldc, alpha, beta, pairs)
	}
	if r := rows - 12*pairs; r > 0 {
		sgemmEdge32ZT(k, &a[12*pairs], lda, &b[0], &c[12*pairs*ldc], ldc, alpha, beta, r)
	}
}

// asmRows2ATB is asmRows2AT reading B in place too: step p reads the 32
// floats b[p·ldb:].
func asmRows2ATB(k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, alpha, beta float32, rows int) {
	if rows <= 0 {
		return
	}
	_ = a[(k-1)*lda+rows-1]
	_ = b[(k-1)*ldb+31]
	_ = c[(rows-1)*ldc+31]
	pairs := rows / 12
	if pairs > 0 {
		sgemmPanels12x32ZTB(k, &a[0], lda, &b[0], ldb, &c[0], ldc, alpha, beta, pairs)
	}
	if r := rows - 12*pairs; r > 0 {
		sgemmEdge32ZTB(k, &a[12*pairs], lda, &b[0], ldb, &c[12*pairs*ldc], ldc, alpha, beta, r)
	}
}

// asmEdge2 runs the AVX-512 edge kernel: rows [0, rows) of a 32-column strip of c,
// 0 < rows < 6, from the packed (zero-padded) 6-row A panel a and the two packed
// B panels in b.
func asmEdge2(k int, a, b, c []float32, ldc int, alpha, beta float32, rows int) {
	if rows <= 0 || rows >= 6 {
		panic("gemm: asmEdge2: rows out of range")
	}
	_ = a[6*k-1]
	_ = b[32*k-1]
	_ = c[(rows-1)*ldc+31]
	sgemmEdge32Z(k, &a[0], &b[0], &c[0], ldc, alpha, beta, rows)
}
