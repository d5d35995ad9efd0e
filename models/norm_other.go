//go:build !amd64

package models

import "unsafe"

func lnForwardAVX2(y, x, w, b *float32, n int, eps float32) (mean, rstd float32) {
	return lnForwardGo(unsafe.Slice(y, n), unsafe.Slice(x, n), unsafe.Slice(w, n), unsafe.Slice(b, n), eps)
}

func lnBackwardAVX2(dx, dw, db, g, x, w *float32, n int, mean, rstd float32, add bool) {
	lnBackwardGo(unsafe.Slice(dx, n), unsafe.Slice(dw, n), unsafe.Slice(db, n), unsafe.Slice(g, n), unsafe.Slice(x, n), unsafe.Slice(w, n), mean, rstd, add)
}
