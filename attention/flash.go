package attention

import (
	"fmt"
	"math"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// Flash attention on the CPU. The forward walks the keys of a block of query rows
// in blocks, keeping per row a running maximum m, a running sum l of exp(s − m)
// and an unnormalised output accumulator, rescaled when m grows (online softmax).
// Only the log-sum-exp of each row, m + ln l, is kept for the backward, which
// recomputes the probabilities from it: beyond inputs and outputs, memory is
// O(B·H·T) plus a few blocks per worker, never T×T.
//
// Blocks of 64 queries by 64 keys keep a key block (and its values) in L1/L2 while
// every row of the query block reads it. Key blocks that a causal or window mask
// hides from every row of a query block are never visited; in a partly visible
// block each row computes scores only for the keys it sees.
const (
	flashQBlock = 64
	flashKBlock = 64
)

// FlashForward computes attention like [SDPAForward] without materialising the
// scores. When lse is not nil (length Batch·QHeads·QLen, laid out (B, Hq, Tq)) it
// receives each row's log-sum-exp of the scaled, masked scores (−Inf for a row that
// sees no key), which [FlashBackward] needs. Work is split over (batch, query head,
// query block); key/value heads are shared by their query group without copies.
func FlashForward[T Float](out, lse, q, k, v []T, d Dims, opt Options) {
	d.check("FlashForward", len(q), len(k), len(v), len(out))
	rows := d.Batch * d.QHeads * d.QLen
	if lse != nil && len(lse) != rows {
		panic(fmt.Sprintf("attention: FlashForward: lse has %d elements, want %d for %+v", len(lse), rows, d))
	}
	g := newGeometry[T](d, opt)
	nqb := (d.QLen + flashQBlock - 1) / flashQBlock
	heads := d.Batch * d.QHeads
	// Later query blocks see more keys under a causal mask: hand them out first.
	parallelUnits(nqb*heads, func() *forwardScratch[T] {
		return &forwardScratch[T]{
			m: make([]T, flashQBlock), l: make([]T, flashQBlock),
			s: make([]T, flashKBlock), acc: make([]T, flashQBlock*d.VDim),
		}
	}, func(w *forwardScratch[T], u int) {
		qb := nqb - 1 - u/heads
		b, h := (u%heads)/d.QHeads, u%d.QHeads
		i0 := qb * flashQBlock
		g.forwardBlock(w, out, lse, q, k, v, b, h, i0, min(i0+flashQBlock, d.QLen))
	})
}

type forwardScratch[T Float] struct{ m, l, s, acc []T }

// forwardBlock computes the output rows [i0, i1) of batch b, query head h.
func (g geometry[T]) forwardBlock(w *forwardScratch[T], out, lse, q, k, v []T, b, h, i0, i1 int) {
	d := g.d
	hk := h / g.group
	rows := i1 - i0
	m, l, acc := w.m[:rows], w.l[:rows], w.acc[:rows*d.VDim]
	for r := range rows {
		m[r], l[r] = negInf[T](), 0
	}
	clear(acc)
	kbase, vbase := g.kv.at(b, 0, hk), g.vv.at(b, 0, hk)
	ulo, _ := g.sp.rows(i0)
	_, uhi := g.sp.rows(i1 - 1)
	for j0 := ulo; j0 < uhi; j0 += flashKBlock {
		j1 := min(j0+flashKBlock, uhi)
		for r := range rows {
			lo, hi := g.sp.clip(i0+r, j0, j1)
			if lo == hi {
				continue
			}
			s := w.s[:hi-lo]
			dots(s, q[g.qv.at(b, i0+r, h):][:d.HeadDim], k[kbase+lo*g.kv.s:], g.kv.s, g.scale)
			mOld := m[r]
			mNew := mOld
			for _, x := range s {
				if x > mNew {
					mNew = x
				}
			}
			sum := expShift(s, mNew)
			a := acc[r*d.VDim : (r+1)*d.VDim]
			if mNew != mOld && l[r] != 0 {
				c := exp(mOld - mNew)
				l[r] *= c
				scaleVec(a, c)
			}
			l[r] += sum
			m[r] = mNew
			combine(a, s, v[vbase+lo*g.vv.s:], g.vv.s)
		}
	}
	for r := range rows {
		o := out[g.ov.at(b, i0+r, h):][:d.VDim]
		li := (b*d.QHeads+h)*d.QLen + i0 + r
		if l[r] == 0 {
			clear(o)
			if lse != nil {
				lse[li] = negInf[T]()
			}
			continue
		}
		inv := 1 / l[r]
		for c, x := range acc[r*d.VDim : (r+1)*d.VDim] {
			o[c] = x * inv
		}
		if lse != nil {
			lse[li] = m[r] + T(math.Log(float64(l[r])))
		}
	}
}

// FlashBackward overwrites dq, dk and dv with the gradients of attention given the
// forward's output out and log-sum-exp lse (both from [FlashForward] on the same
// q, k, v) and the output gradient dout. Block by block it recomputes
// P = exp(scale·QKᵀ − lse) and, with δ_i = dO_i·O_i and dS = P∘(dO Vᵀ − δ),
// accumulates dV = Pᵀ dO, dK = scale·dSᵀ Q and dQ = scale·dS K. Beyond its
// arguments it allocates δ (one per query row) and a few blocks per worker. Work is split over (batch, key/value head): a unit owns dk
// and dv of its head and dq of its query group, so no two write the same element.
// When there are too few such units for the workers, each is split further over
// interleaved key blocks, the extra parts summing dq in their own buffers.
func FlashBackward[T Float](dq, dk, dv, q, k, v, out, dout, lse []T, d Dims, opt Options) {
	d.check("FlashBackward", len(q), len(k), len(v), len(out))
	d.check("FlashBackward", len(dq), len(dk), len(dv), len(dout))
	nrows := d.Batch * d.QHeads * d.QLen
	if len(lse) != nrows {
		panic(fmt.Sprintf("attention: FlashBackward: lse has %d elements, want %d for %+v", len(lse), nrows, d))
	}
	g := newGeometry[T](d, opt)

	// δ_i = dO_i·O_i = Σ_j P_ij dP_ij, one per row.
	delta := make([]T, nrows)
	metal.ParallelFor(nrows, 1024, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			bh, i := r/max(d.QLen, 1), r%max(d.QLen, 1)
			b, h := bh/d.QHeads, bh%d.QHeads
			o := g.ov.at(b, i, h)
			delta[r] = dot(dout[o:o+d.VDim], out[o:o+d.VDim])
		}
	})

	nkb := (d.KLen + flashKBlock - 1) / flashKBlock
	units := d.Batch * d.KVHeads
	parts := backwardParts(units, nkb)
	dqs := make([][]T, parts)
	dqs[0] = dq
	clear(dq)
	for c := 1; c < parts; c++ {
		dqs[c] = make([]T, len(dq))
	}
	parallelUnits(units*parts, func() *backwardScratch[T] {
		return &backwardScratch[T]{
			p: make([]T, flashQBlock*flashKBlock), ds: make([]T, flashQBlock*flashKBlock),
			pt: make([]T, flashKBlock*flashQBlock), dst: make([]T, flashKBlock*flashQBlock),
			dk: make([]T, flashKBlock*d.HeadDim), dv: make([]T, flashKBlock*d.VDim),
		}
	}, func(w *backwardScratch[T], u int) {
		c := u % parts
		b, hk := (u/parts)/d.KVHeads, (u/parts)%d.KVHeads
		for kb := c; kb < nkb; kb += parts {
			j0 := kb * flashKBlock
			g.backwardBlock(w, dqs[c], dk, dv, q, k, v, dout, lse, delta, b, hk, j0, min(j0+flashKBlock, d.KLen))
		}
	})
	if parts > 1 {
		metal.ParallelFor(len(dq), 1<<14, func(lo, hi int) {
			for _, part := range dqs[1:] {
				for i := lo; i < hi; i++ {
					dq[i] += part[i]
				}
			}
		})
	}
}

// backwardParts is how many parts each (batch, key/value head) unit of the
// backward is split into: one when the units already keep every worker busy.
func backwardParts(units, keyBlocks int) int {
	t := metal.Threads()
	if units == 0 || units >= 4*t || units%t == 0 {
		return 1
	}
	a, b := units, t
	for b != 0 {
		a, b = b, a%b
	}
	return max(1, min(keyBlocks, t/a))
}

type backwardScratch[T Float] struct{ p, ds, pt, dst, dk, dv []T }

// backwardBlock accumulates into dq the gradient through keys [j0, j1) of key/value
// head hk in batch b, and writes dk and dv of those keys, visiting every query head
// of the group and every query block that sees one of the keys.
func (g geometry[T]) backwardBlock(w *backwardScratch[T], dq, dk, dv, q, k, v, dout, lse, delta []T, b, hk, j0, j1 int) {
	d := g.d
	nk := j1 - j0
	gk, gv := w.dk[:nk*d.HeadDim], w.dv[:nk*d.VDim]
	clear(gk)
	clear(gv)
	kbase, vbase := g.kv.at(b, 0, hk), g.vv.at(b, 0, hk)
	for h := hk * g.group; h < (hk+1)*g.group; h++ {
		for i0 := 0; i0 < d.QLen; i0 += flashQBlock {
			i1 := min(i0+flashQBlock, d.QLen)
			if ulo, _ := g.sp.rows(i0); ulo >= j1 {
				break // later blocks start further right
			}
			if _, uhi := g.sp.rows(i1 - 1); uhi <= j0 {
				continue
			}
			rows := i1 - i0
			seen := false
			for r := range rows {
				i := i0 + r
				pr, dr := w.p[r*flashKBlock:][:nk], w.ds[r*flashKBlock:][:nk]
				clear(pr)
				clear(dr)
				lo, hi := g.sp.clip(i, j0, j1)
				if lo == hi {
					continue
				}
				seen = true
				li := (b*d.QHeads+h)*d.QLen + i
				ps, dss := pr[lo-j0:hi-j0], dr[lo-j0:hi-j0]
				dots(ps, q[g.qv.at(b, i, h):][:d.HeadDim], k[kbase+lo*g.kv.s:], g.kv.s, g.scale)
				expShift(ps, lse[li])
				dots(dss, dout[g.ov.at(b, i, h):][:d.VDim], v[vbase+lo*g.vv.s:], g.vv.s, 1)
				del := delta[li]
				for j, x := range dss {
					dss[j] = ps[j] * (x - del) * g.scale
				}
				combine(dq[g.qv.at(b, i, h):][:d.HeadDim], dss, k[kbase+lo*g.kv.s:], g.kv.s)
			}
			if !seen {
				continue
			}
			// Column j of P and dS weighs the rows of dO and Q into dV_j and dK_j:
			// transpose the blocks so those weights are contiguous.
			for r := range rows {
				pr, dr := w.p[r*flashKBlock:][:nk], w.ds[r*flashKBlock:][:nk]
				for j := range nk {
					w.pt[j*flashQBlock+r] = pr[j]
					w.dst[j*flashQBlock+r] = dr[j]
				}
			}
			obase, qbase := g.ov.at(b, i0, h), g.qv.at(b, i0, h)
			for j := range nk {
				combine(gv[j*d.VDim:(j+1)*d.VDim], w.pt[j*flashQBlock:][:rows], dout[obase:], g.ov.s)
				combine(gk[j*d.HeadDim:(j+1)*d.HeadDim], w.dst[j*flashQBlock:][:rows], q[qbase:], g.qv.s)
			}
		}
	}
	for j := range nk {
		copy(dk[g.kv.at(b, j0+j, hk):][:d.HeadDim], gk[j*d.HeadDim:(j+1)*d.HeadDim])
		copy(dv[g.vv.at(b, j0+j, hk):][:d.VDim], gv[j*d.VDim:(j+1)*d.VDim])
	}
}

// FlashAttention is attention as a differentiable op on (float32 or float64)
// tensors in the layout opt.Layout: q (B, Tq, Hq, D), k (B, Tk, Hkv, D), v (B, Tk,
// Hkv, Dv) in BSHD, giving (B, Tq, Hq, Dv). It runs [FlashForward] and records the
// fused [FlashBackward], keeping only the per-row log-sum-exp between the two.
// Where a device takes the op it runs there; float32 with Dv = D and at least 16
// queries runs the same algorithm on the attention block's tile kernels (AVX2
// where the CPU has them; about 10× the generic loops), profiled as
// "tiled_attention".
func FlashAttention(q, k, v *autodiff.Tensor, opt Options) *autodiff.Tensor {
	return attentionOp("flash_attention", q, k, v, opt, true)
}
