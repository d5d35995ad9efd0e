package advanced

// The AVX2 + FMA kernels of ssm_amd64.s; the Go wrappers in ssm.go check the
// slice lengths they hand over.

//go:noescape
func ssmFwdAVX(h, a, bt, ct, dt, x, y *float32, rows, n int)

//go:noescape
func ssmRecAVX(prev, cur, e, a, bt, dt, x *float32, rows, n int)

//go:noescape
func ssmBackAVX(mu, prev, e, a, dA, bt, ct, pb, pc, gy, dt, x, dskip, ddt, dx, dD *float32, rows, n int)

func ssmCPUID(leaf, sub uint32) (eax, ebx, ecx, edx uint32)

func ssmXGETBV() uint32

// hasSSMAVX reports AVX2 and FMA in the CPU with the OS saving the YMM registers.
var hasSSMAVX = func() bool {
	if top, _, _, _ := ssmCPUID(0, 0); top < 7 {
		return false
	}
	_, _, c1, _ := ssmCPUID(1, 0)
	const fma, osxsave, avx = 1 << 12, 1 << 27, 1 << 28
	if c1&(fma|osxsave|avx) != fma|osxsave|avx || ssmXGETBV()&6 != 6 {
		return false
	}
	_, b7, _, _ := ssmCPUID(7, 0)
	return b7&(1<<5) != 0 // AVX2
}()
