package attention

import (
	"fmt"
	"math"
	"time"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/internal/vecmath"
	"github.com/mlxtrain/mlxtrain/metal"
)

// SpanAttention is attention for queries q (batch, n, heads, head dim; BSHD)
// against the keys and values a [SpanCache] holds, read in place: query i of
// row b sits at position offsets[b] + i and attends the cached positions j of
// row b that the masks of opt allow, by absolute position (causal: j ≤ p;
// window W: j > p − W). The cache's spans must be in the dtype of q, or
// float16 for float32 queries. The output has q's shape; nothing is recorded
// (generation only).
func SpanAttention(q *autodiff.Tensor, cache SpanCache, offsets []int, opt Options) *autodiff.Tensor {
	if q.Rank() != 4 || len(offsets) != q.Dim(0) || opt.Layout != BSHD {
		panic(fmt.Sprintf("attention: SpanAttention: q %v with %d offsets, layout %s: want BSHD (batch, n, heads, head dim) and one offset per row", q.Shape(), len(offsets), opt.Layout))
	}
	var start time.Time
	if metal.Profiling() {
		start = time.Now()
	}
	out, path := spanAttentionDevice(q, cache, offsets, opt), metal.PathMetal
	if out == nil {
		out, path = autodiff.Empty(q.DType(), q.Shape()...), metal.PathGo
		if q.DType() == autodiff.Float32 {
			spanAttend(out.Float32s(), q.Float32s(), q, cache, offsets, opt, (*autodiff.Tensor).Float32s)
		} else {
			spanAttend(out.Float64s(), q.Float64s(), q, cache, offsets, opt, (*autodiff.Tensor).Float64s)
		}
	}
	if !start.IsZero() {
		elems := 2 * q.Len()
		for b := range q.Dim(0) {
			for _, s := range cache.Spans(b) {
				elems += 2 * s.Rows * s.K.Dim(-2) * s.K.Dim(-1)
			}
		}
		metal.RecordOp("span_attention", path, time.Since(start), int64(elems*q.DType().Size()))
	}
	return out
}

type spanRef[T Float] struct {
	k, v      []T
	k16, v16  []uint16 // float16 storage instead of k and v (float32 queries)
	pos, rows int
}

// spanKeys is the number of keys scored at once.
const spanKeys = 64

func spanAttend[T Float](out, q []T, qt *autodiff.Tensor, cache SpanCache, offsets []int, opt Options, data func(*autodiff.Tensor) []T) {
	B, n, H, D := qt.Dim(0), qt.Dim(1), qt.Dim(2), qt.Dim(3)
	spans := make([][]spanRef[T], B)
	kvh := 0
	for b := range B {
		for _, s := range cache.Spans(b) {
			half := s.K.DType() == autodiff.Float16 && qt.DType() == autodiff.Float32
			if (s.K.DType() != qt.DType() && !half) || s.V.DType() != s.K.DType() || s.K.Dim(-1) != D {
				panic(fmt.Sprintf("attention: SpanAttention: cache of %s %v for q %s %v", s.K.DType(), s.K.Shape(), qt.DType(), qt.Shape()))
			}
			kvh = s.K.Dim(-2)
			row := kvh * D
			r := spanRef[T]{pos: s.Pos, rows: s.Rows}
			if half {
				r.k16, r.v16 = s.K.Halves()[s.Off:s.Off+s.Rows*row], s.V.Halves()[s.Off:s.Off+s.Rows*row]
			} else {
				r.k, r.v = data(s.K)[s.Off:s.Off+s.Rows*row], data(s.V)[s.Off:s.Off+s.Rows*row]
			}
			spans[b] = append(spans[b], r)
		}
	}
	if kvh == 0 || H%kvh != 0 {
		panic(fmt.Sprintf("attention: SpanAttention: %d query heads for %d key/value heads (or an empty cache)", H, kvh))
	}
	group, row := H/kvh, kvh*D
	if o32, ok := any(out).([]float32); ok {
		q32 := any(q).([]float32)
		s32 := any(spans).([][]spanRef[float32])
		spanAttendTiles(o32, q32, s32, offsets, opt, B, n, H, kvh, D)
		return
	}
	scale := T(opt.scale(D))
	// A unit is one key/value head of one row with every query of its group:
	// each chunk of keys and values is read from memory once, then from L1 by
	// every query (the query heads of a GQA group, the positions of a chunk).
	rows := group * n
	type scratch struct {
		s, m, l, acc []T
	}
	parallelUnits(B*kvh, func() *scratch {
		return &scratch{s: make([]T, spanKeys), m: make([]T, rows), l: make([]T, rows), acc: make([]T, rows*D)}
	}, func(w *scratch, u int) {
		b, hk := u/kvh, u%kvh
		for r := range rows {
			w.m[r], w.l[r] = negInf[T](), 0
		}
		clear(w.acc)
		// The keys any query of the unit may see: [first row's lo, last row's hi).
		lo0, _ := spanWindow(opt, offsets[b])
		_, hiN := spanWindow(opt, offsets[b]+n-1)
		for _, sp := range spans[b] {
			a, e := max(lo0, sp.pos), min(hiN, sp.pos+sp.rows)
			for c0 := a; c0 < e; c0 += spanKeys {
				c1 := min(c0+spanKeys, e)
				for r := range rows {
					i, h := r%n, hk*group+r/n
					lo, hi := spanWindow(opt, offsets[b]+i)
					k0, k1 := max(c0, lo), min(c1, hi)
					if k0 >= k1 {
						continue
					}
					s := w.s[:k1-k0]
					at := (k0-sp.pos)*row + hk*D
					dots(s, q[((b*n+i)*H+h)*D:][:D], sp.k[at:], row, scale)
					m := w.m[r]
					mNew := m
					for _, x := range s {
						if x > mNew {
							mNew = x
						}
					}
					sum := expShift(s, mNew)
					acc := w.acc[r*D : (r+1)*D]
					if mNew != m && w.l[r] != 0 {
						c := exp(m - mNew)
						w.l[r] *= c
						scaleVec(acc, c)
					}
					w.l[r] += sum
					w.m[r] = mNew
					combine(acc, s, sp.v[at:], row)
				}
			}
		}
		normaliseRows(out, w.acc, w.l, rows, n, H, D, b*n, hk*group)
	})
}

// normaliseRows writes the accumulated output rows of one kv head's query group
// (row r: query r%n of head h0+r/n) divided by their softmax sums into out
// (batch-major from row b0, heads H, width D); a row with no key gets zeros.
func normaliseRows[T Float](out, acc, l []T, rows, n, H, D, b0, h0 int) {
	for r := range rows {
		i, h := r%n, h0+r/n
		o := out[((b0+i)*H+h)*D:][:D]
		if l[r] == 0 {
			clear(o)
			continue
		}
		inv := 1 / l[r]
		for c, x := range acc[r*D : (r+1)*D] {
			o[c] = x * inv
		}
	}
}

// spanWindow is the keys [lo, hi) a query at position p attends.
func spanWindow(opt Options, p int) (lo, hi int) {
	lo, hi = math.MinInt, math.MaxInt
	if opt.Causal {
		hi = p + 1
	}
	if opt.Window > 0 {
		lo = p - opt.Window + 1
		if !opt.Causal {
			hi = p + opt.Window
		}
	}
	return lo, hi
}

// spanAttendTiles is spanAttend for float32 on the tile products of the tiled
// kernels (AVX2 strips where the CPU has them): per chunk of keys, the scores
// of every query of a unit in one product K·Qᵀ, a masked online softmax per
// query, then P·V into the accumulators in another.
func spanAttendTiles(out, q []float32, spans [][]spanRef[float32], offsets []int, opt Options, B, n, H, kvh, D int) {
	group, row := H/kvh, kvh*D
	scale := float32(opt.scale(D))
	rows := group * n
	pad := (rows + 7) &^ 7 // the scores' columns: a multiple of 8 for the strips
	type scratch struct {
		qt, st, p, m, l, acc, kc, vc []float32
	}
	parallelUnits(B*kvh, func() *scratch {
		return &scratch{
			qt: make([]float32, D*pad), st: make([]float32, spanKeys*pad), p: make([]float32, rows*spanKeys),
			m: make([]float32, rows), l: make([]float32, rows), acc: make([]float32, rows*D),
			kc: make([]float32, spanKeys*D), vc: make([]float32, spanKeys*D),
		}
	}, func(w *scratch, u int) {
		b, hk := u/kvh, u%kvh
		for r := range rows {
			i, h := r%n, hk*group+r/n
			for c, x := range q[((b*n+i)*H+h)*D:][:D] {
				w.qt[c*pad+r] = x
			}
			w.m[r], w.l[r] = negInf[float32](), 0
		}
		clear(w.acc)
		lo0, _ := spanWindow(opt, offsets[b])
		_, hiN := spanWindow(opt, offsets[b]+n-1)
		for _, sp := range spans[b] {
			a, e := max(lo0, sp.pos), min(hiN, sp.pos+sp.rows)
			for c0 := a; c0 < e; c0 += spanKeys {
				nk := min(c0+spanKeys, e) - c0
				at := (c0-sp.pos)*row + hk*D
				keys, values, stride := sp.k, sp.v, row
				if sp.k16 != nil { // float16 storage: this head's rows of the chunk in float32
					halfRowsToFloat32(w.kc, sp.k16[at:], nk, D, row)
					halfRowsToFloat32(w.vc, sp.v16[at:], nk, D, row)
					keys, values, stride, at = w.kc, w.vc, D, 0
				}
				// Scores, keys by queries: st[j·pad + r] = scale · k_j·q_r.
				tileMul(w.st, pad, keys[at:], stride, 1, w.qt, pad, nk, pad, D, scale, false)
				for r := range rows {
					p := w.p[r*spanKeys : r*spanKeys+nk]
					lo, hi := spanWindow(opt, offsets[b]+r%n)
					k0, k1 := max(c0, lo), min(c0+nk, hi)
					if k0 >= k1 {
						clear(p)
						continue
					}
					for j := range p {
						p[j] = w.st[j*pad+r]
					}
					fill(p[:k0-c0], negInf[float32]())
					fill(p[k1-c0:], negInf[float32]())
					mOld := w.m[r]
					mNew, sum := vecmath.SoftmaxRow(p, mOld)
					if mNew != mOld && w.l[r] != 0 {
						c := vecmath.Exp(mOld - mNew)
						w.l[r] *= c
						scaleVec(w.acc[r*D:(r+1)*D], c)
					}
					w.l[r] += sum
					w.m[r] = mNew
				}
				tileMul(w.acc, D, w.p, spanKeys, 1, values[at:], stride, rows, D, nk, 1, true)
			}
		}
		normaliseRows(out, w.acc, w.l, rows, n, H, D, b*n, hk*group)
	})
}
