//go:build amd64

package attention

import "sync"

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
