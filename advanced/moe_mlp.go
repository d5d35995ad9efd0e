package advanced

import (
	"fmt"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/autodiff/gemm"
	"github.com/mlxtrain/mlxtrain/layers"
	"github.com/mlxtrain/mlxtrain/metal"
)

// GroupedMLP is GroupedLinear(GroupedLinearGELU(x, w1, b1, offsets), w2, b2,
// offsets), the experts' GELU MLP, as one op on the CPU: x (rows, D) in expert
// order, w1 (E, H, D), b1 (E, H), w2 (E, D, H), b2 (E, D) (either bias may be
// nil), offsets (E+1) the groups' row ranges. It runs expert by expert, each
// expert's two products one after the other, so that the second finds the
// hidden rows the first wrote still in cache; backward multiplies by the GELU's
// derivative and sums the first bias's gradient in the epilogue of the product
// that computes the hidden rows' gradient (gemm.SgemmEpilogue), instead of
// another pass over them. The results are those of the two ops up to float32
// rounding (the same products; sums in the same order).
func GroupedMLP(x, w1, b1, w2, b2 *autodiff.Tensor, offsets []int) *autodiff.Tensor {
	checkGrouped("moe_grouped_mlp", x, w1, b1, offsets)
	if w2.Rank() != 3 || w2.Dim(0) != w1.Dim(0) || w2.Dim(2) != w1.Dim(1) || w2.DType() != x.DType() ||
		b2 != nil && (b2.Rank() != 2 || b2.Dim(0) != w2.Dim(0) || b2.Dim(1) != w2.Dim(1) || b2.DType() != x.DType()) {
		b2s := "none"
		if b2 != nil {
			b2s = fmt.Sprint(b2.Shape())
		}
		panic(fmt.Sprintf("advanced: moe_grouped_mlp: first weight %v, second weight %s %v, second bias %s", w1.Shape(), w2.DType(), w2.Shape(), b2s))
	}
	if metal.OffloadDevice() != nil {
		// The device runs each projection as one launch over every expert.
		h := GroupedLinearGELU(x, w1, b1, offsets)
		defer h.Release()
		return GroupedLinear(h, w2, b2, offsets)
	}
	if x.DType() == autodiff.Float32 {
		return groupedMLP[float32](x, w1, b1, w2, b2, offsets, nil)
	}
	return groupedMLP[float64](x, w1, b1, w2, b2, offsets, nil)
}

// dispatchedMLP is GroupedMLP(Dispatch(x, r), w1, b1, w2, b2, r.Offsets) on the
// CPU, x (..., D) the tokens: each expert gathers its rows right before its
// first product, which then finds them in cache, instead of a pass over all
// the rows before the experts run. Backward sums the rows' gradient back into
// the tokens' as Dispatch does. The results are those of Dispatch and
// GroupedMLP bit for bit.
func dispatchedMLP(x, w1, b1, w2, b2 *autodiff.Tensor, r *Routing) *autodiff.Tensor {
	if x.Rank() == 0 || !x.DType().IsFloat() || x.Len() != r.Tokens*x.Dim(-1) {
		panic(fmt.Sprintf("advanced: moe_grouped_mlp: input %s %v for a routing of %d tokens", x.DType(), x.Shape(), r.Tokens))
	}
	r = r.host()
	if x.DType() == autodiff.Float32 {
		return groupedMLP[float32](x, w1, b1, w2, b2, r.Offsets, r)
	}
	return groupedMLP[float64](x, w1, b1, w2, b2, r.Offsets, r)
}

// gemmEp is C = op(A)·op(B) (β = 0) followed by ep over C: fused in the
// float32 assembly path (gemm.SgemmEpilogue; on the calling goroutine alone
// when serial), one pass after the product in float64.
func gemmEp[T autodiff.Float](serial, transA, transB bool, m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int, ep gemm.Epilogue) {
	if a32, ok := any(a).([]float32); ok {
		f := gemm.SgemmEpilogue
		if serial {
			f = gemm.SgemmEpilogueSerial
		}
		f(transA, transB, m, n, k, 1, a32, lda, any(b).([]float32), ldb, 0, any(c).([]float32), ldc, ep)
		return
	}
	gemmT(transA, transB, m, n, k, a, lda, b, ldb, 0, c, ldc)
	if m > 0 && n > 0 {
		ep(0, m, 0, n)
	}
}

// gemmOn is gemmT, on the calling goroutine alone when serial (float32).
func gemmOn[T autodiff.Float](serial, transA, transB bool, m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int) {
	if a32, ok := any(a).([]float32); ok && serial {
		gemm.SgemmSerial(transA, transB, m, n, k, 1, a32, lda, any(b).([]float32), ldb, 0, any(c).([]float32), ldc)
		return
	}
	gemmT(transA, transB, m, n, k, a, lda, b, ldb, 0, c, ldc)
}

// mulSumRow sets dst = a·d and, when sum is not nil, adds dst to sum.
func mulSumRow[T autodiff.Float](dst, sum, a, d []T) {
	if sum != nil {
		mulSum(dst, sum, a, d)
		return
	}
	mulTo(dst, a, d)
}

// forEachExpert runs fn(e, serial) for every expert with rows: side by side on
// the workers when there are enough of them in float32 (forExperts), each on one
// goroutine (serial), else one after the other, each product split across the
// workers.
func forEachExpert[T autodiff.Float](offsets []int, fn func(e int, serial bool)) {
	var z T
	if _, ok := any(z).(float32); ok && forExperts(offsets, func(e int) { fn(e, true) }) {
		return
	}
	serial := metal.Threads() <= 1
	for e := range len(offsets) - 1 {
		if offsets[e+1] > offsets[e] {
			fn(e, serial)
		}
	}
}

// groupedMLP runs GroupedMLP; with a routing r, x holds the tokens and each
// expert gathers its rows into the dispatched rows xd first (dispatchedMLP).
func groupedMLP[T autodiff.Float](x, w1, b1, w2, b2 *autodiff.Tensor, offsets []int, r *Routing) *autodiff.Tensor {
	H, D := w1.Dim(1), w1.Dim(2)
	rows := offsets[len(offsets)-1]
	dt := x.DType()
	var xd *autodiff.Tensor // the dispatched rows, when gathered here
	if r != nil {
		xd = autodiff.Empty(dt, rows, D)
	}
	tracked := x.Tape() != nil || w1.Tape() != nil || w2.Tape() != nil || b1 != nil && b1.Tape() != nil || b2 != nil && b2.Tape() != nil
	hT := autodiff.Empty(dt, rows, H)
	yT := autodiff.Empty(dt, rows, D)
	var derivT *autodiff.Tensor
	if tracked {
		derivT = autodiff.Empty(dt, rows, H)
	}
	xs, w1s, w2s, b1s, b2s := slice[T](x), slice[T](w1), slice[T](w2), slice[T](b1), slice[T](b2)
	hs, ys, ds := slice[T](hT), slice[T](yT), slice[T](derivT)
	var src []T
	if xd != nil {
		src, xs = xs, slice[T](xd)
	}
	tm := startTimer()
	forEachExpert[T](offsets, func(e int, serial bool) {
		lo, hi := offsets[e], offsets[e+1]
		n := hi - lo
		he, ye := hs[lo*H:hi*H], ys[lo*D:hi*D]
		var de, be1, be2 []T
		if ds != nil {
			de = ds[lo*H : hi*H]
		}
		if b1s != nil {
			be1 = b1s[e*H : (e+1)*H]
		}
		if b2s != nil {
			be2 = b2s[e*D : (e+1)*D]
		}
		if src != nil {
			gatherRows(xs[lo*D:hi*D], src, r.Token[lo:hi], D)
		}
		gemmEp(serial, false, true, n, H, D, xs[lo*D:hi*D], D, w1s[e*H*D:(e+1)*H*D], D, he, H, func(i0, i1, j0, j1 int) {
			var bj []T
			if be1 != nil {
				bj = be1[j0:j1]
			}
			for r := i0; r < i1; r++ {
				var dr []T
				if de != nil {
					dr = de[r*H+j0 : r*H+j1]
				}
				geluBiasRow(he[r*H+j0:r*H+j1], dr, bj)
			}
		})
		gemmEp(serial, false, true, n, D, H, he, H, w2s[e*D*H:(e+1)*D*H], H, ye, D, func(i0, i1, j0, j1 int) {
			if be2 == nil {
				return
			}
			for r := i0; r < i1; r++ {
				addTo(ye[r*D+j0:r*D+j1], be2[j0:j1])
			}
		})
	})
	tm.done("moe_grouped_mlp", (rows*D+w1.Len()+w2.Len()+2*hT.Len()+yT.Len())*dt.Size())
	inputs := []*autodiff.Tensor{x, w1, w2}
	for _, b := range []*autodiff.Tensor{b1, b2} {
		if b != nil {
			inputs = append(inputs, b)
		}
	}
	res := autodiff.Record(yT, "moe_grouped_mlp", func(g *autodiff.Tensor) {
		groupedMLPBackward[T](g, x, xd, w1, b1, w2, b2, hT, derivT, offsets, r)
	}, inputs...)
	if tp := res.Tape(); tp != nil {
		tp.Own(hT) // released with the tape, whether backward runs or not
		tp.Own(derivT)
		if xd != nil {
			tp.Own(xd)
		}
	} else {
		hT.Release()
		if derivT != nil {
			derivT.Release()
		}
		if xd != nil {
			xd.Release()
		}
	}
	return res
}

// groupedMLPBackward is groupedMLP's backward; with a routing r, x holds the
// tokens, xd the dispatched rows, and dx is the tokens' gradient.
func groupedMLPBackward[T autodiff.Float](g, x, xd, w1, b1, w2, b2, hT, derivT *autodiff.Tensor, offsets []int, r *Routing) {
	needX, needW1, needW2 := autodiff.NeedsGrad(x), autodiff.NeedsGrad(w1), autodiff.NeedsGrad(w2)
	needB1, needB2 := b1 != nil && autodiff.NeedsGrad(b1), b2 != nil && autodiff.NeedsGrad(b2)
	needDy := needX || needW1 || needB1 // the first projection's output gradient
	if !needDy && !needW2 && !needB2 {
		return
	}
	E, H, D := w1.Dim(0), w1.Dim(1), w1.Dim(2)
	rows := offsets[len(offsets)-1]
	dt := x.DType()
	var dx, dw1, dw2, db1, db2, dy *autodiff.Tensor
	var ddx *autodiff.Tensor // the dispatched rows' gradient, when x holds the tokens
	if needX {
		if r != nil {
			dx = autodiff.Empty(dt, x.Shape()...)
			ddx = autodiff.Empty(dt, rows, D)
			defer ddx.Release()
		} else {
			dx = autodiff.Empty(dt, rows, D)
		}
	}
	if needW1 {
		dw1 = autodiff.Empty(dt, E, H, D)
	}
	if needW2 {
		dw2 = autodiff.Empty(dt, E, D, H)
	}
	if needB1 {
		db1 = autodiff.Zeros(dt, E, H)
	}
	if needB2 {
		db2 = autodiff.Zeros(dt, E, D)
	}
	if needDy {
		dy = autodiff.Empty(dt, rows, H)
		defer dy.Release()
	}
	gs, xs, w1s, w2s, hs, ds := slice[T](g), slice[T](x), slice[T](w1), slice[T](w2), slice[T](hT), slice[T](derivT)
	dxs, dw1s, dw2s, db1s, db2s, dys := slice[T](dx), slice[T](dw1), slice[T](dw2), slice[T](db1), slice[T](db2), slice[T](dy)
	var dtok []T // the tokens' gradient, when dxs holds the rows'
	if r != nil {
		xs = slice[T](xd)
		if dxs != nil {
			dtok, dxs = dxs, slice[T](ddx)
		}
	}
	tm := startTimer()
	// The second projection's gradients: db2 = Σ g, dW2 = gᵀ·h.
	grads2 := func(e int, serial bool) {
		lo, hi := offsets[e], offsets[e+1]
		n := hi - lo
		ge := gs[lo*D : hi*D]
		if db2s != nil {
			sum := db2s[e*D : (e+1)*D]
			for r := range n {
				addTo(sum, ge[r*D:(r+1)*D])
			}
		}
		if dw2s != nil {
			gemmOn(serial, true, false, D, H, n, ge, D, hs[lo*H:hi*H], H, dw2s[e*D*H:(e+1)*D*H], H)
		}
	}
	// The first projection's: dy, then dx = dy·W1, dW1 = dyᵀ·x, db1 = Σ dy.
	grads1 := func(e int, serial bool) {
		if !needDy {
			return
		}
		lo, hi := offsets[e], offsets[e+1]
		n := hi - lo
		ge := gs[lo*D : hi*D]
		// dy = (g·W2) ⊙ GELU′, and db1 its column sums: in the product's epilogue
		// when it runs on one goroutine (its blocks then come in row order), after
		// it otherwise (blocks of one column range may run concurrently).
		dye, de := dys[lo*H:hi*H], ds[lo*H:hi*H]
		var sum []T
		if db1s != nil {
			sum = db1s[e*H : (e+1)*H]
		}
		epSum := sum
		if !serial {
			epSum = nil
		}
		gemmEp(serial, false, false, n, H, D, ge, D, w2s[e*D*H:(e+1)*D*H], H, dye, H, func(i0, i1, j0, j1 int) {
			var sj []T
			if epSum != nil {
				sj = epSum[j0:j1]
			}
			for r := i0; r < i1; r++ {
				row := dye[r*H+j0 : r*H+j1]
				mulSumRow(row, sj, row, de[r*H+j0:r*H+j1])
			}
		})
		if sum != nil && epSum == nil {
			for r := range n {
				addTo(sum, dye[r*H:(r+1)*H])
			}
		}
		if dxs != nil { // dx = dy·W1
			gemmOn(serial, false, false, n, D, H, dye, H, w1s[e*H*D:(e+1)*H*D], D, dxs[lo*D:hi*D], D)
		}
		if dw1s != nil { // dW1 = dyᵀ·x
			gemmOn(serial, true, false, H, D, n, dye, H, xs[lo*D:hi*D], D, dw1s[e*H*D:(e+1)*H*D], D)
		}
	}
	var z T
	if _, f32 := any(z).(float32); f32 && forExperts(offsets, func(e int) { grads1(e, true) }) {
		// Experts side by side: the second projection's gradients in a pass of
		// their own, whose smaller pieces even out the workers' ends.
		forExperts(offsets, func(e int) { grads2(e, true) })
	} else {
		// One expert after the other, g still in cache for its second product.
		forEachExpert[T](offsets, func(e int, serial bool) {
			grads2(e, serial)
			grads1(e, serial)
		})
	}
	if dtok != nil { // Dispatch's backward: each token sums its rows in slot order
		DispatchBackward(dtok, dxs, r.Pos, r.K, D)
	}
	// Experts without rows get zero weight gradients.
	for e := range E {
		if offsets[e+1] == offsets[e] {
			if dw1s != nil {
				clear(dw1s[e*H*D : (e+1)*H*D])
			}
			if dw2s != nil {
				clear(dw2s[e*D*H : (e+1)*D*H])
			}
		}
	}
	tm.done("moe_grouped_mlp_backward", (2*x.Len()+2*w1.Len()+2*w2.Len()+2*g.Len()+3*hT.Len())*dt.Size())
	hand(x, dx)
	hand(w1, dw1)
	hand(w2, dw2)
	hand(b1, db1)
	hand(b2, db2)
}

// experts is the experts' MLP on the tokens x dispatched by r: one op that
// gathers each expert's rows itself (dispatchedMLP) for a GELU MLP of plain
// weights on the CPU, else Dispatch and the projections one by one.
func (m *MoE) experts(c *layers.Ctx, x *autodiff.Tensor, r *Routing, tmp *scratchTensors) *autodiff.Tensor {
	if m.Config.Act == layers.ActGELU && m.UpPacked == nil && m.DownPacked == nil && r.dev == nil && metal.OffloadDevice() == nil {
		return dispatchedMLP(x, c.Param(m.UpProj), c.Param(m.UpBias), c.Param(m.DownProj), c.Param(m.DownBias), r)
	}
	xs := tmp.add(Dispatch(x, r))
	h := m.hidden(c, xs, r, tmp)
	return m.grouped(c, h, m.DownProj, m.DownPacked, m.DownBias, r)
}
