//go:build !amd64

package attention

func softmaxRow(s []float32, mOld float32) (m, sum float32) { return softmaxRowGo(s, mOld) }

func gradRow(p, ds []float32, lse, delta, scale float32) { gradRowGo(p, ds, lse, delta, scale) }
