package advanced

import (
	"fmt"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// Prefix scans. A scan under an associative operator ∘ turns x0, x1, … into
// x0, x0∘x1, x0∘x1∘x2, … (inclusive) or e, x0, x0∘x1, … (exclusive, e the
// identity). The operator need not commute: the scans always combine an earlier
// prefix on the left.
//
// The parallel scans split the input into contiguous chunks and run in three
// phases (the reduce-then-scan form of Blelloch's work-efficient scan):
//  1. each chunk but the last is reduced to its total (the first chunk, which
//     nothing precedes, is scanned outright);
//  2. the chunk totals are scanned, giving each chunk the prefix that precedes it;
//  3. each chunk but the first is scanned, seeded with that prefix.
//
// That is fewer than 2n applications of ∘ in all, against n−1 for the sequential
// scan, and with p workers the two parallel phases each take about n/(p+1).

// scanGrain is the fewest elements a parallel scan hands one chunk: below it,
// starting a worker costs more than the operator calls it would save.
const scanGrain = 1 << 12

// Scan writes the inclusive prefix scan of xs under the associative op into dst
// (dst[i] = xs[0]∘…∘xs[i]), sequentially. dst may be xs.
func Scan[E any](dst, xs []E, op func(a, b E) E) {
	checkScanLens("Scan", len(dst), len(xs))
	if len(xs) == 0 {
		return
	}
	scanSeeded(dst, xs, op, nil)
}

// ScanExclusive writes the exclusive prefix scan of xs into dst (dst[0] =
// identity, dst[i] = xs[0]∘…∘xs[i−1]), sequentially, and returns the reduction of
// all of xs. dst may be xs.
func ScanExclusive[E any](dst, xs []E, identity E, op func(a, b E) E) E {
	checkScanLens("ScanExclusive", len(dst), len(xs))
	return scanExclusiveSeeded(dst, xs, op, identity)
}

// ParallelScan is [Scan] computed by chunks on up to metal.Threads() workers. For
// an operator that is associative in exact arithmetic but rounds (a float sum),
// the result may differ from Scan's in the last bits.
func ParallelScan[E any](dst, xs []E, op func(a, b E) E) {
	checkScanLens("ParallelScan", len(dst), len(xs))
	scanChunked(dst, xs, op, nil, scanChunks(len(xs)))
}

// ParallelScanExclusive is [ScanExclusive] computed by chunks on up to
// metal.Threads() workers; it returns the reduction of all of xs.
func ParallelScanExclusive[E any](dst, xs []E, identity E, op func(a, b E) E) E {
	checkScanLens("ParallelScanExclusive", len(dst), len(xs))
	return scanChunked(dst, xs, op, &identity, scanChunks(len(xs)))
}

// scanChunks is the chunk count the parallel scans use for n elements: one more
// than the workers (the first and last chunk each idle a phase), or 1 when the
// input is too short to be worth splitting.
func scanChunks(n int) int {
	th := metal.Threads()
	if th <= 1 || n < 2*scanGrain {
		return 1
	}
	return min(th+1, n/scanGrain)
}

func checkScanLens(op string, dst, src int) {
	if dst != src {
		panic(fmt.Sprintf("advanced: %s: dst has %d elements, input %d", op, dst, src))
	}
}

// scanSeeded writes the inclusive scan of xs, each prefix preceded by *seed when
// seed is not nil, and returns the last prefix. xs is not empty.
func scanSeeded[E any](dst, xs []E, op func(a, b E) E, seed *E) E {
	acc := xs[0]
	if seed != nil {
		acc = op(*seed, acc)
	}
	dst[0] = acc
	for i := 1; i < len(xs); i++ {
		acc = op(acc, xs[i])
		dst[i] = acc
	}
	return acc
}

// scanExclusiveSeeded writes the exclusive scan of xs starting from seed and
// returns seed∘xs[0]∘…∘xs[n−1].
func scanExclusiveSeeded[E any](dst, xs []E, op func(a, b E) E, seed E) E {
	acc := seed
	for i := range xs {
		v := xs[i]
		dst[i] = acc
		acc = op(acc, v)
	}
	return acc
}

// reduce returns xs[0]∘…∘xs[n−1] for a non-empty xs.
func reduce[E any](xs []E, op func(a, b E) E) E {
	acc := xs[0]
	for _, v := range xs[1:] {
		acc = op(acc, v)
	}
	return acc
}

// scanChunked runs the three-phase scan over the given number of chunks: inclusive
// when identity is nil, else exclusive (then it returns the total reduction; the
// inclusive form returns the zero E). Chunks are handed to metal.ParallelFor, so
// any chunk count works at any worker count; the result does not depend on the
// worker count, only on the chunk count.
func scanChunked[E any](dst, xs []E, op func(a, b E) E, identity *E, chunks int) E {
	n := len(xs)
	var zero E
	chunks = min(chunks, n)
	if chunks <= 1 {
		switch {
		case identity != nil:
			return scanExclusiveSeeded(dst, xs, op, *identity)
		case n > 0:
			scanSeeded(dst, xs, op, nil)
		}
		return zero
	}
	bound := func(c int) int { return c * n / chunks }
	// totals[c] is chunk c's reduction after phase 1 and, after phase 2, the prefix
	// through the end of chunk c (for the exclusive scan, identity∘…).
	totals := make([]E, chunks)
	metal.ParallelFor(chunks-1, 1, func(lo, hi int) {
		for c := lo; c < hi; c++ {
			s, e := bound(c), bound(c+1)
			switch {
			case c > 0:
				totals[c] = reduce(xs[s:e], op)
			case identity != nil:
				totals[0] = scanExclusiveSeeded(dst[s:e], xs[s:e], op, *identity)
			default:
				totals[0] = scanSeeded(dst[s:e], xs[s:e], op, nil)
			}
		}
	})
	for c := 1; c < chunks-1; c++ {
		totals[c] = op(totals[c-1], totals[c])
	}
	var last E
	metal.ParallelFor(chunks-1, 1, func(lo, hi int) {
		for c := lo + 1; c <= hi; c++ {
			s, e := bound(c), bound(c+1)
			var t E
			if identity != nil {
				t = scanExclusiveSeeded(dst[s:e], xs[s:e], op, totals[c-1])
			} else {
				t = scanSeeded(dst[s:e], xs[s:e], op, &totals[c-1])
			}
			if c == chunks-1 {
				last = t
			}
		}
	})
	if identity == nil {
		return zero
	}
	return last
}

// Affine is the map h ↦ A·h + B, the element of the linear recurrence
// h_t = a_t·h_{t−1} + b_t. Composing the steps of a recurrence in order is
// associative, so a prefix scan of them under [Affine.Then] gives every h_t (from
// h_{−1} = 0: h_t is the B of the t-th prefix).
type Affine[T autodiff.Float] struct{ A, B T }

// Then is f followed by g: h ↦ g.A·(f.A·h + f.B) + g.B, that is
// (f.A·g.A, g.A·f.B + g.B).
func (f Affine[T]) Then(g Affine[T]) Affine[T] { return Affine[T]{f.A * g.A, g.A*f.B + g.B} }

// Apply returns f.A·h + f.B.
func (f Affine[T]) Apply(h T) T { return f.A*h + f.B }

// linearGrain is the fewest elements (steps × channels) that LinearScan splits
// across workers; linearMinCols the fewest channels a worker takes when the
// channels are split.
const (
	linearGrain   = 1 << 14
	linearMinCols = 32
)

// LinearScan computes the linear recurrence h_t = a_t·h_{t−1} + b_t for `channels`
// independent channels over `steps` steps. a, b and h are (steps, channels)
// row-major; h0 (channels) is the state before step 0, or nil for zeros. h may be
// a or b (the recurrence is then computed in place).
//
// With enough channels each worker runs the recurrence over a block of them; with
// few channels and many steps the steps are split into segments scanned in
// parallel: each segment is first reduced to its composed map (the product of its
// a and its end state from zero), those maps are scanned to find each segment's
// starting state, and each segment is then run from it.
func LinearScan[T autodiff.Float](h, a, b, h0 []T, steps, channels int) {
	n := steps * channels
	if steps < 0 || channels < 0 || len(h) != n || len(a) != n || len(b) != n || (h0 != nil && len(h0) != channels) {
		panic(fmt.Sprintf("advanced: LinearScan: %d steps × %d channels with h %d, a %d, b %d, h0 %d elements", steps, channels, len(h), len(a), len(b), len(h0)))
	}
	th := metal.Threads()
	switch {
	case n == 0:
	case th <= 1 || n < linearGrain:
		linearRun(h, a, b, h0, 0, steps, 0, channels, channels)
	case channels >= th*linearMinCols:
		metal.ParallelFor(channels, linearMinCols, func(lo, hi int) {
			linearRun(h, a, b, h0, 0, steps, lo, hi, channels)
		})
	default:
		linearScanSegments(h, a, b, h0, steps, channels, min(steps, th+1))
	}
}

// linearRun runs the recurrence over steps [t0, t1) for channels [c0, c1) (of a row
// of width ld), starting from h0[c0:c1] (zeros when nil) before step t0.
func linearRun[T autodiff.Float](h, a, b, h0 []T, t0, t1, c0, c1, ld int) {
	if t0 >= t1 {
		return
	}
	row := t0 * ld
	if h0 == nil {
		copy(h[row+c0:row+c1], b[row+c0:row+c1])
	} else {
		hs, as, bs, ps := h[row+c0:row+c1], a[row+c0:row+c1], b[row+c0:row+c1], h0[c0:c1]
		for i := range hs {
			hs[i] = as[i]*ps[i] + bs[i]
		}
	}
	for t := t0 + 1; t < t1; t++ {
		prev := h[row+c0 : row+c1]
		row += ld
		hs, as, bs := h[row+c0:row+c1], a[row+c0:row+c1], b[row+c0:row+c1]
		prev, as, bs = prev[:len(hs)], as[:len(hs)], bs[:len(hs)]
		for i := range hs {
			hs[i] = as[i]*prev[i] + bs[i]
		}
	}
}

// linearScanSegments is the three-phase scan of LinearScan over `segs` segments of
// steps, each phase parallel over segments (and the phases' segment work over all
// channels at once, rows being contiguous).
func linearScanSegments[T autodiff.Float](h, a, b, h0 []T, steps, channels, segs int) {
	if segs <= 1 {
		linearRun(h, a, b, h0, 0, steps, 0, channels, channels)
		return
	}
	bound := func(s int) int { return s * steps / segs }
	// prod[s], end[s]: segment s's composed map h ↦ prod·h + end (phase 1), then end
	// becomes the state after segment s (phase 2).
	prod := make([]T, segs*channels)
	end := make([]T, segs*channels)
	metal.ParallelFor(segs-1, 1, func(lo, hi int) {
		for s := lo; s < hi; s++ {
			t0, t1 := bound(s), bound(s+1)
			e := end[s*channels : (s+1)*channels]
			if s == 0 {
				linearRun(h, a, b, h0, t0, t1, 0, channels, channels)
				copy(e, h[(t1-1)*channels:t1*channels])
				continue
			}
			p := prod[s*channels : (s+1)*channels]
			copy(p, a[t0*channels:(t0+1)*channels])
			copy(e, b[t0*channels:(t0+1)*channels])
			for t := t0 + 1; t < t1; t++ {
				as, bs := a[t*channels:(t+1)*channels], b[t*channels:(t+1)*channels]
				as, bs, e := as[:len(p)], bs[:len(p)], e[:len(p)]
				for i := range p {
					p[i] *= as[i]
					e[i] = as[i]*e[i] + bs[i]
				}
			}
		}
	})
	for s := 1; s < segs-1; s++ {
		prev, p, e := end[(s-1)*channels:s*channels], prod[s*channels:(s+1)*channels], end[s*channels:(s+1)*channels]
		for i := range e {
			e[i] += p[i] * prev[i]
		}
	}
	metal.ParallelFor(segs-1, 1, func(lo, hi int) {
		for s := lo + 1; s <= hi; s++ {
			linearRun(h, a, b, end[(s-1)*channels:s*channels], bound(s), bound(s+1), 0, channels, channels)
		}
	})
}
