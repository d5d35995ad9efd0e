package optim

// adamwConsts are adamwRange's scalars, in the order adamwAVX reads them.
type adamwConsts struct {
	stepSize, b1, c1, b2, c2, eps, rbc2, decay float32
}

//go:noescape
func adamwAVX(p, grad, m, v *float32, n int, c *adamwConsts)

// adamwRangeAVX is adamwRange for float32 with 8 lanes a step; the last len(p)%8
// elements go through the Go loop.
func adamwRangeAVX(p, g, m, v []float32, c adamwConsts) {
	n := len(p) &^ 7
	if n > 0 {
		g, m, v := g[:n], m[:n], v[:n] // bounds checked here, not in the assembly
		adamwAVX(&p[0], &g[0], &m[0], &v[0], n, &c)
	}
	adamwRange(p[n:], g[n:len(p)], m[n:len(p)], v[n:len(p)], c.stepSize, c.b1, c.c1, c.b2, c.c2, c.eps, c.rbc2, c.decay)
}
