package attention

import (
	"fmt"
	"math"
	"sync/atomic"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// Float is the element types the kernels are written for.
type Float = autodiff.Float

// Layout is the order of the axes of query, key, value and output tensors. The
// head dimension is always last and contiguous; kernels read the other axes
// through strides, so either layout runs without a transpose.
type Layout uint8

// The layouts.
const (
	BSHD Layout = iota // (batch, seq, heads, head_dim): the default
	BHSD               // (batch, heads, seq, head_dim)
)

func (l Layout) String() string {
	if l == BHSD {
		return "BHSD"
	}
	return "BSHD"
}

// Options configure an attention call. The zero value is full (non-causal)
// attention with scale 1/√D on BSHD tensors.
//
// Positions: with Tq queries and Tk keys, queries are aligned to the end of the
// keys, as when decoding with a cache: query i sits at absolute position
// p = Tk − Tq + i, key j at position j. The masks are defined on these positions:
//
//   - Causal: query p attends keys j ≤ p.
//   - Window W > 0 with Causal: keys p − W < j ≤ p, the W most recent keys, the
//     query's own included. This is mlx-lm's window_size, Hugging Face's
//     sliding_window, and flash-attn's window_size=(W−1, 0).
//   - Window W > 0 without Causal: keys with |p − j| < W (flash-attn's
//     window_size=(W−1, W−1)).
//
// A query row that sees no key at all (possible when Tq > Tk with Causal, or with
// a window) outputs zeros, its log-sum-exp is −Inf, and its gradients are zero.
type Options struct {
	Scale  float64 // multiplies q·k; 0 means 1/√D
	Causal bool
	Window int // sliding window in keys; 0 means none
	Layout Layout
}

// Dims are the sizes of one attention call. Queries are (Batch, QLen, QHeads,
// HeadDim) in BSHD, keys (Batch, KLen, KVHeads, HeadDim), values and outputs have
// VDim for their last axis. Query head h reads key/value head h / (QHeads/KVHeads)
// (grouped-query attention; KVHeads = QHeads is multi-head, 1 is multi-query).
type Dims struct {
	Batch, QLen, KLen, QHeads, KVHeads, HeadDim, VDim int
}

// ShapeDims reads the Dims of an attention call from the shapes of q, k and v in
// the given layout; it panics (naming op and the shapes) when they do not fit
// together.
func ShapeDims(op string, layout Layout, q, k, v []int) Dims {
	bad := func(why string) {
		panic(fmt.Sprintf("attention: %s: %s: q %v, k %v, v %v (%s)", op, why, q, k, v, layout))
	}
	if len(q) != 4 || len(k) != 4 || len(v) != 4 {
		bad("want rank-4 tensors")
	}
	seq, head := 1, 2
	if layout == BHSD {
		seq, head = 2, 1
	}
	d := Dims{Batch: q[0], QLen: q[seq], KLen: k[seq], QHeads: q[head], KVHeads: k[head], HeadDim: q[3], VDim: v[3]}
	if k[0] != d.Batch || v[0] != d.Batch {
		bad("batch sizes differ")
	}
	if k[3] != d.HeadDim {
		bad("q and k head dims differ")
	}
	if v[seq] != d.KLen || v[head] != d.KVHeads {
		bad("k and v differ in length or heads")
	}
	if d.KVHeads == 0 && d.QHeads != 0 || d.KVHeads != 0 && d.QHeads%d.KVHeads != 0 {
		bad("query heads are not a multiple of key/value heads")
	}
	return d
}

// outShape is the shape of the output (and of its gradient) in layout l.
func (d Dims) outShape(l Layout) []int {
	if l == BHSD {
		return []int{d.Batch, d.QHeads, d.QLen, d.VDim}
	}
	return []int{d.Batch, d.QLen, d.QHeads, d.VDim}
}

// check panics unless the slices have the lengths d and the heads ratio need.
func (d Dims) check(op string, q, k, v, out int) {
	if d.KVHeads <= 0 && d.QHeads > 0 || d.KVHeads > 0 && d.QHeads%d.KVHeads != 0 {
		panic(fmt.Sprintf("attention: %s: %d query heads for %d key/value heads", op, d.QHeads, d.KVHeads))
	}
	nq := d.Batch * d.QLen * d.QHeads
	nk := d.Batch * d.KLen * d.KVHeads
	if q != nq*d.HeadDim || k != nk*d.HeadDim || v != nk*d.VDim || out != nq*d.VDim {
		panic(fmt.Sprintf("attention: %s: slice lengths q %d, k %d, v %d, out %d do not fit %+v", op, q, k, v, out, d))
	}
}

// group is the number of query heads sharing one key/value head.
func (d Dims) group() int {
	if d.KVHeads == 0 {
		return 1
	}
	return d.QHeads / d.KVHeads
}

// scale is the factor on q·k.
func (o Options) scale(headDim int) float64 {
	if o.Scale != 0 {
		return o.Scale
	}
	if headDim == 0 {
		return 1
	}
	return 1 / math.Sqrt(float64(headDim))
}

// view holds the element strides of the batch, seq and head axes of a tensor of
// one layout; the last axis has stride 1.
type view struct{ b, s, h int }

func (l Layout) view(seq, heads, dim int) view {
	if l == BHSD {
		return view{heads * seq * dim, dim, seq * dim}
	}
	return view{seq * heads * dim, heads * dim, dim}
}

func (v view) at(b, s, h int) int { return b*v.b + s*v.s + h*v.h }

// geometry holds what every kernel derives from Dims and Options.
type geometry[T Float] struct {
	d              Dims
	sp             span
	scale          T
	group          int
	qv, kv, vv, ov view
}

func newGeometry[T Float](d Dims, opt Options) geometry[T] {
	return geometry[T]{
		d: d, sp: opt.span(d), scale: T(opt.scale(d.HeadDim)), group: d.group(),
		qv: opt.Layout.view(d.QLen, d.QHeads, d.HeadDim),
		kv: opt.Layout.view(d.KLen, d.KVHeads, d.HeadDim),
		vv: opt.Layout.view(d.KLen, d.KVHeads, d.VDim),
		ov: opt.Layout.view(d.QLen, d.QHeads, d.VDim),
	}
}

// span decides which keys each query row attends (see Options).
type span struct {
	off, keys, window int
	causal            bool
}

func (o Options) span(d Dims) span {
	return span{off: d.KLen - d.QLen, keys: d.KLen, window: max(o.Window, 0), causal: o.Causal}
}

// rows returns the keys [lo, hi) that query row i attends; lo == hi when none.
// Both ends are non-decreasing in i, so the keys a block of rows attends form one
// range, from the first row's lo to the last row's hi.
func (s span) rows(i int) (lo, hi int) {
	p := s.off + i
	lo, hi = 0, s.keys
	if s.causal {
		hi = min(hi, p+1)
	}
	if s.window > 0 {
		lo = max(lo, p-s.window+1)
		if !s.causal {
			hi = min(hi, p+s.window)
		}
	}
	lo = min(lo, s.keys)
	return lo, max(hi, lo)
}

// clip returns the part of row i's keys inside [j0, j1), as lo == hi when empty.
func (s span) clip(i, j0, j1 int) (lo, hi int) {
	lo, hi = s.rows(i)
	lo, hi = max(lo, j0), min(hi, j1)
	if lo >= hi {
		return j0, j0
	}
	return lo, hi
}

// parallelUnits runs fn(w, u) for every unit u in [0, n) on up to Threads()
// workers that take units in order from a shared counter, so units of uneven cost
// balance out (list the costly ones first). Each worker builds its scratch w once
// with newWorker. A panic in a worker is re-raised in the caller.
func parallelUnits[W any](n int, newWorker func() W, fn func(w W, u int)) {
	parallelUnitsRelease(n, newWorker, nil, fn)
}

// parallelUnitsRelease is parallelUnits calling release (when not nil) on
// each worker's scratch once the worker ran out of units (to pool it).
func parallelUnitsRelease[W any](n int, newWorker func() W, release func(W), fn func(w W, u int)) {
	if n <= 0 {
		return
	}
	var next atomic.Int64
	workers := min(metal.Threads(), n)
	metal.ParallelFor(workers, 1, func(lo, hi int) {
		w := newWorker()
		for {
			u := int(next.Add(1) - 1)
			if u >= n {
				if release != nil {
					release(w)
				}
				return
			}
			fn(w, u)
		}
	})
}

// resize returns s with length n, reusing its storage when it is large enough
// (the contents are then stale: callers write before they read).
func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

func negInf[T Float]() T { return T(math.Inf(-1)) }
