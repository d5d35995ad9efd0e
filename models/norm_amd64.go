//go:build amd64

package models

// lnForwardAVX2 is lnForwardGo on n elements (a multiple of 8) with 8 lanes,
// its two sums over four vector accumulators (another order of the additions).
//
//go:noescape
func lnForwardAVX2(y, x, w, b *float32, n int, eps float32) (mean, rstd float32)

// lnBackwardAVX2 is lnBackwardGo on n elements (a multiple of 8) with 8 lanes.
//
//go:noescape
func lnBackwardAVX2(dx, dw, db, grad, x, w *float32, n int, mean, rstd float32, add bool)
