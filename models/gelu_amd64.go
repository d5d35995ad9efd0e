//go:build amd64

package models

import "sync"

// geluAVX2 sets y[i] = gelu(x[i] + b[i]) and d[i] = gelu'(x[i] + b[i]) for i < n
// (a multiple of 8), 8 lanes at a time; b may be nil (no bias) and x may be y.
// It computes what gelu32 computes, with fused multiply-adds.
//
//go:noescape
func geluAVX2(y, d, x, b *float32, n int)

//go:noescape
func modelsCPUID(leaf, sub uint32) (eax, ebx, ecx, edx uint32)

func modelsXGETBV() (eax, edx uint32)

// geluK holds the constants of geluAVX2, each in 8 lanes (see gelu32 and expNeg32).
var geluK = func() (k [20][8]uint32) {
	f := func(v float32) uint32 { return float32bits(v) }
	vals := [20]uint32{
		0x7fffffff, f(invSqrt2), f(erfP), f(1),
		f(erfA5), f(erfA4), f(erfA3), f(erfA2), f(erfA1),
		0x80000000, f(-87.3), f(1.4426950408889634), f(0.693145751953125), f(1.428606765330187e-06),
		f(1.0 / 720), f(1.0 / 120), f(1.0 / 24), f(1.0 / 6), f(0.5),
		127,
	}
	for i, v := range vals {
		for j := range k[i] {
			k[i][j] = v
		}
	}
	return k
}()

// geluK2 holds 1/√(2π) in 8 lanes.
var geluK2 = [8]float32{invSqrt2Pi, invSqrt2Pi, invSqrt2Pi, invSqrt2Pi, invSqrt2Pi, invSqrt2Pi, invSqrt2Pi, invSqrt2Pi}

var hasAVX2FMA = sync.OnceValue(func() bool {
	maxLeaf, _, _, _ := modelsCPUID(0, 0)
	if maxLeaf < 7 {
		return false
	}
	_, _, ecx1, _ := modelsCPUID(1, 0)
	const fma, osxsave, avx = 1 << 12, 1 << 27, 1 << 28
	if ecx1&(fma|osxsave|avx) != fma|osxsave|avx {
		return false
	}
	if xcr0, _ := modelsXGETBV(); xcr0&6 != 6 {
		return false
	}
	_, ebx7, _, _ := modelsCPUID(7, 0)
	return ebx7&(1<<5) != 0
})

// geluRow32 is geluRows32 on one row: y = gelu(y + b), d = gelu'(y + b).
func geluRow32(y, d, b []float32) {
	n := 0
	if hasAVX2FMA() {
		n = len(y) &^ 7
		if n > 0 {
			d := d[:n]
			var bp *float32
			if b != nil {
				bp = &b[:n][0]
			}
			geluAVX2(&y[0], &d[0], &y[0], bp, n)
		}
	}
	geluRowGo(y[n:], d[n:len(y)], tail(b, n))
}

// mulSumAVX2 sets dst[i] = a[i]·b[i] and adds it to sum[i] for i < n (a multiple
// of 8).
//
//go:noescape
func mulSumAVX2(dst, sum, a, b *float32, n int)

// mulSum32 sets dst = a·b elementwise and adds dst to sum.
func mulSum32(dst, sum, a, b []float32) {
	n := 0
	if hasAVX2FMA() {
		n = len(dst) &^ 7
		if n > 0 {
			sum, a, b := sum[:n], a[:n], b[:n]
			mulSumAVX2(&dst[0], &sum[0], &a[0], &b[0], n)
		}
	}
	mulSumGo(dst[n:], sum[n:len(dst)], a[n:len(dst)], b[n:len(dst)])
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
