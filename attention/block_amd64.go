//go:build amd64

package attention

import (
	"fmt"

	"golang.org/x/sys/cpu"

	"github.com/mlxtrain/mlxtrain/internal/vecmath"
)

// tileStrip4 sets rows 0..3 of C to alpha·A·B (plus C when acc ≠ 0) for A(i, p)
// at a[i·ars + p·acs] and B rows ldb apart; strides in elements, n a multiple of
// 8, k ≥ 1 (see block_amd64.s).
//
//go:noescape
func tileStrip4(c *float32, ldc int, a *float32, ars, acs int, b *float32, ldb, n, k int, alpha float32, acc int)

// tileStrip4Z is tileStrip4 on AVX-512 registers (16 lanes, 32 columns a block).
//
//go:noescape
func tileStrip4Z(c *float32, ldc int, a *float32, ars, acs int, b *float32, ldb, n, k int, alpha float32, acc int)

// avx512 selects the AVX-512 kernels: the CPU has AVX-512 F and the OS saves the
// ZMM registers (x/sys/cpu checks both). Tests clear it to run the AVX2 kernels.
var avx512 = vecmath.AVX2FMA && cpu.X86.HasAVX512F

// strip4 runs the strip kernel of the CPU.
func strip4(c *float32, ldc int, a *float32, ars, acs int, b *float32, ldb, n, k int, alpha float32, acc int) {
	if avx512 {
		tileStrip4Z(c, ldc, a, ars, acs, b, ldb, n, k, alpha, acc)
		return
	}
	tileStrip4(c, ldc, a, ars, acs, b, ldb, n, k, alpha, acc)
}

// stripsFast reports whether tileMul's strips of n columns run on the
// assembly kernels.
func stripsFast(n int) bool { return n%8 == 0 && vecmath.AVX2FMA }

// tileMulBounds panics: the operands of a tileMul do not hold its shape.
//
//go:noinline
func tileMulBounds(c []float32, ldc int, a []float32, ars, acs int, b []float32, ldb, m, n, k int) {
	panic(fmt.Sprintf("attention: tileMul: %d×%d×%d with strides a %d,%d b %d c %d on %d, %d, %d elements", m, n, k, ars, acs, ldb, ldc, len(a), len(b), len(c)))
}

// tileMulAsm runs tileMul on the AVX2 strips when the CPU and the shape allow it.
func tileMulAsm(c []float32, ldc int, a []float32, ars, acs int, b []float32, ldb, m, n, k int, alpha float32, acc bool, pf *prefetchQueue) bool {
	if n%8 != 0 || k == 0 || !vecmath.AVX2FMA {
		return false
	}
	// Bounds, checked once here: the assembly does not.
	if last := (m-1)*ars + (k-1)*acs; last >= len(a) || (k-1)*ldb+n > len(b) || (m-1)*ldc+n > len(c) {
		tileMulBounds(c, ldc, a, ars, acs, b, ldb, m, n, k)
	}
	flag := 0
	if acc {
		flag = 1
	}
	i := 0
	for ; i+4 <= m; i += 4 {
		pf.step()
		strip4(&c[i*ldc], ldc, &a[i*ars], ars, acs, &b[0], ldb, n, k, alpha, flag)
	}
	if i < m {
		// The last rows through a strip of 4 on copies, padded with zero rows.
		var pa [4 * 128]float32
		var pc [4 * 128]float32
		rest := m - i
		pf.step()
		if k > 128 || n > 128 {
			tileMulGo(c[i*ldc:], ldc, a[i*ars:], ars, acs, b, ldb, rest, n, k, alpha, acc)
			return true
		}
		for r := range rest {
			for p := range k {
				pa[r*k+p] = a[(i+r)*ars+p*acs]
			}
		}
		strip4(&pc[0], n, &pa[0], k, 1, &b[0], ldb, n, k, alpha, 0)
		for r := range rest {
			row := c[(i+r)*ldc:][:n]
			for j, v := range pc[r*n : r*n+n] {
				if acc {
					row[j] += v
				} else {
					row[j] = v
				}
			}
		}
	}
	return true
}

// transpose8x8 sets dst[c·ldd + r] = src[r·lds + c] for r, c < 8.
//
//go:noescape
func transpose8x8(dst *float32, ldd int, src *float32, lds int)

// transposeBlocks8 transposes the 8 rows of src (lds apart, dim columns, dim a
// multiple of 8) into 8 columns of dst (rows ldd apart); it reports false when
// the CPU lacks AVX2.
func transposeBlocks8(dst []float32, ldd int, src []float32, lds, dim int) bool {
	if !vecmath.AVX2FMA || dim%8 != 0 {
		return false
	}
	_ = src[7*lds+dim-1]
	_ = dst[(dim-1)*ldd+7]
	for c := 0; c < dim; c += 8 {
		transpose8x8(&dst[c*ldd], ldd, &src[c], lds)
	}
	return true
}

//go:noescape
func copyRowsAVX(dst *float32, ldd int, src *float32, lds, width, rows int)

// copyRowsAsm copies rows rows of width floats from src (from soff, rows lds
// apart) to dst (from doff, rows ldd apart) through copyRowsAVX when the CPU and
// the width allow it; it reports whether it ran.
func copyRowsAsm(dst []float32, doff, ldd int, src []float32, soff, lds, width, rows int) bool {
	if rows == 0 || width%8 != 0 || width == 0 || !vecmath.AVX2FMA {
		return rows == 0
	}
	// Bounds, checked here once: the assembly does not.
	_ = dst[doff+(rows-1)*ldd+width-1]
	_ = src[soff+(rows-1)*lds+width-1]
	copyRowsAVX(&dst[doff], ldd, &src[soff], lds, width, rows)
	return true
}

//go:noescape
func prefetchRows(p *float32, stride, rows, width int)

// prefetch hints that rows rows of width floats, stride apart in s from off, will
// be read soon. Rows past the end of s are left out.
func prefetch(s []float32, off, stride, rows, width int) {
	if stride > 0 {
		rows = min(rows, (len(s)-off-width)/stride+1)
	}
	if rows <= 0 || width <= 0 || off < 0 || off+width > len(s) {
		return
	}
	prefetchRows(&s[off], stride, rows, width)
}

//go:noescape
func prefetchL2Rows(p *float32, stride, rows, width int)

// prefetchL2 hints that rows rows of width floats, stride apart in s from off,
// will be read after the current work: every cache line of them is fetched into
// L2. Rows past the end of s are left out.
func prefetchL2(s []float32, off, stride, rows, width int) {
	if stride > 0 {
		rows = min(rows, (len(s)-off-width)/stride+1)
	}
	if rows <= 0 || width <= 0 || off < 0 || off+width > len(s) {
		return
	}
	prefetchL2Rows(&s[off], stride, rows, width)
}

// prefetchL2Addr is prefetchL2Rows from the address p (a hint: any address
// will do).
//
//go:noescape
func prefetchL2Addr(p uintptr, stride, rows, width int)
