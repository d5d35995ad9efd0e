package advanced

// The AVX2 + FMA kernels of ssm_amd64.s; the Go wrappers in ssm.go check the
// slice lengths they hand over.

//go:noescape
func ssmFwdAVX(h, a, bt, ct, dt, x, y *float32, rows, n int)

//go:noescape
func ssmRecAVX(prev, cur, e, a, bt, dt, x *float32, rows, n int)

//go:noescape
func ssmBackAVX(mu, prev, e, a, dA, bt, ct, pb, pc, gy, dt, x, dskip, ddt, dx, dD *float32, rows, n int)
