//go:build amd64

package attention

import (
	"fmt"
	"sync"
)

// softmaxRowAVX2 sets m = max(mOld, max s) and s[j] = e^(s[j] − m) (exactly 0
// where s[j] − m < −87.3, −Inf included), returning m and Σ s[j]; n is a
// multiple of 8.
//
//go:noescape
func softmaxRowAVX2(s *float32, n int, mOld float32) (m, sum float32)

// gradRowAVX2 sets p[j] = e^(p[j] − lse) (0 below −87.3 as above) and
// ds[j] = p[j]·(ds[j] − delta)·scale; n is a multiple of 8.
//
//go:noescape
func gradRowAVX2(p, ds *float32, n int, lse, delta, scale float32)

//go:noescape
func attnCPUID(leaf, sub uint32) (eax, ebx, ecx, edx uint32)

func attnXGETBV() (eax, edx uint32)

// tileK holds the constants of the kernels, 8 lanes each: −87.3, log2 e, ln 2 in
// two parts, the Taylor coefficients of e^r from 1/720 down to 1, and the float32
// exponent bias.
var tileK = func() (k [12][8]uint32) {
	vals := [12]uint32{
		f32bits(-87.3), f32bits(1.4426950408889634), f32bits(0.693145751953125), f32bits(1.428606765330187e-06),
		f32bits(1.0 / 720), f32bits(1.0 / 120), f32bits(1.0 / 24), f32bits(1.0 / 6), f32bits(0.5), f32bits(1),
		127, 0,
	}
	for i, v := range vals {
		for j := range k[i] {
			k[i][j] = v
		}
	}
	return k
}()

var hasAVX2FMA = sync.OnceValue(func() bool {
	maxLeaf, _, _, _ := attnCPUID(0, 0)
	if maxLeaf < 7 {
		return false
	}
	_, _, ecx1, _ := attnCPUID(1, 0)
	const fma, osxsave, avx = 1 << 12, 1 << 27, 1 << 28
	if ecx1&(fma|osxsave|avx) != fma|osxsave|avx {
		return false
	}
	if xcr0, _ := attnXGETBV(); xcr0&6 != 6 {
		return false
	}
	_, ebx7, _, _ := attnCPUID(7, 0)
	return ebx7&(1<<5) != 0
})

// softmaxRow is softmaxRowGo on 8 lanes at a time where the CPU allows.
func softmaxRow(s []float32, mOld float32) (m, sum float32) {
	n := len(s) &^ 7
	if n == 0 || !hasAVX2FMA() {
		return softmaxRowGo(s, mOld)
	}
	if n == len(s) {
		return softmaxRowAVX2(&s[0], n, mOld)
	}
	m = mOld
	for _, x := range s[n:] {
		m = max(m, x)
	}
	m, sum = softmaxRowAVX2(&s[0], n, m)
	for j, x := range s[n:] {
		s[n+j] = expTile(x - m)
		sum += s[n+j]
	}
	return m, sum
}

// gradRow is gradRowGo on 8 lanes at a time where the CPU allows.
func gradRow(p, ds []float32, lse, delta, scale float32) {
	n := len(p) &^ 7
	if n > 0 && hasAVX2FMA() {
		gradRowAVX2(&p[0], &ds[:n][0], n, lse, delta, scale)
	} else {
		n = 0
	}
	gradRowGo(p[n:], ds[n:len(p)], lse, delta, scale)
}

// tileStrip4 sets rows 0..3 of C to alpha·A·B (plus C when acc ≠ 0) for A(i, p)
// at a[i·ars + p·acs] and B rows ldb apart; strides in elements, n a multiple of
// 8, k ≥ 1 (see block_amd64.s).
//
//go:noescape
func tileStrip4(c *float32, ldc int, a *float32, ars, acs int, b *float32, ldb, n, k int, alpha float32, acc int)

// tileMulAsm runs tileMul on the AVX2 strips when the CPU and the shape allow it.
func tileMulAsm(c []float32, ldc int, a []float32, ars, acs int, b []float32, ldb, m, n, k int, alpha float32, acc bool) bool {
	if n%8 != 0 || k == 0 || !hasAVX2FMA() {
		return false
	}
	// Bounds, checked once here: the assembly does not.
	if last := (m-1)*ars + (k-1)*acs; last >= len(a) || (k-1)*ldb+n > len(b) || (m-1)*ldc+n > len(c) {
		panic(fmt.Sprintf("attention: tileMul: %d×%d×%d with strides a %d,%d b %d c %d on %d, %d, %d elements", m, n, k, ars, acs, ldb, ldc, len(a), len(b), len(c)))
	}
	flag := 0
	if acc {
		flag = 1
	}
	i := 0
	for ; i+4 <= m; i += 4 {
		tileStrip4(&c[i*ldc], ldc, &a[i*ars], ars, acs, &b[0], ldb, n, k, alpha, flag)
	}
	if i < m {
		// The last rows through a strip of 4 on copies, padded with zero rows.
		var pa [4 * 128]float32
		var pc [4 * 128]float32
		rest := m - i
		if k > 128 || n > 128 {
			tileMulGo(c[i*ldc:], ldc, a[i*ars:], ars, acs, b, ldb, rest, n, k, alpha, acc)
			return true
		}
		for r := range rest {
			for p := range k {
				pa[r*k+p] = a[(i+r)*ars+p*acs]
			}
		}
		tileStrip4(&pc[0], n, &pa[0], k, 1, &b[0], ldb, n, k, alpha, 0)
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
	if !hasAVX2FMA() || dim%8 != 0 {
		return false
	}
	_ = src[7*lds+dim-1]
	_ = dst[(dim-1)*ldd+7]
	for c := 0; c < dim; c += 8 {
		transpose8x8(&dst[c*ldd], ldd, &src[c], lds)
	}
	return true
}

// addToAVX2 adds src[i] to dst[i] for i < n (a multiple of 8).
//
//go:noescape
func addToAVX2(dst, src *float32, n int)

// addTo32 adds src to dst elementwise.
func addTo32(dst, src []float32) {
	n := 0
	if hasAVX2FMA() {
		n = len(dst) &^ 7
		if n > 0 {
			addToAVX2(&dst[0], &src[:n][0], n)
		}
	}
	src = src[n:len(dst)]
	for i := range src {
		dst[n+i] += src[i]
	}
}
