//go:build !amd64

package advanced

// The assembly kernels exist on amd64 only; nothing calls these where
// vecmath.AVX2FMA is false.

func ssmFwdAVX(h, a, bt, ct, dt, x, y *float32, rows, n int) { panic("advanced: no SIMD kernels") }

func ssmRecAVX(prev, cur, e, a, bt, dt, x *float32, rows, n int) {
	panic("advanced: no SIMD kernels")
}

func ssmBackAVX(mu, prev, e, a, dA, bt, ct, pb, pc, gy, dt, x, dskip, ddt, dx, dD *float32, rows, n int) {
	panic("advanced: no SIMD kernels")
}
