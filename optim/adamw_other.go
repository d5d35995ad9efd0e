//go:build !amd64

package optim

type adamwConsts struct {
	stepSize, b1, c1, b2, c2, eps, rbc2, decay float32
}

func adamwRangeAVX(p, g, m, v []float32, c adamwConsts) {
	adamwRange(p, g, m, v, c.stepSize, c.b1, c.c1, c.b2, c.c2, c.eps, c.rbc2, c.decay)
}
