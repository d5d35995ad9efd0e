package attention

import "unsafe"

// prefetchQueue holds rows a work unit fetches into L2 for the unit after it,
// issued a few cache lines at a time between the strips of its products (see
// tileMulPF) rather than all at once: a burst of a few thousand prefetches fills
// the core's miss buffers, and every prefetch after the first few dozen then
// waits for a line to arrive from memory while the arithmetic behind it waits
// too. Spread out, the misses overlap the products.
type prefetchQueue struct {
	items []prefetchRange
	at    int // the first range not wholly issued
	lines int // cache lines a strip issues (see step)
}

// prefetchRange is rows rows of width floats from address p, stride floats
// apart, each spanning per cache lines (at least), step rows a step. The address
// is kept as an integer: a range holds no pointer for the garbage collector to
// trace or clear (the tensors it points into outlive the unit; a prefetch of an
// address that is no longer mapped would be dropped anyway, never fault).
type prefetchRange struct {
	p                              uintptr
	stride, rows, width, per, step int
}

// reset empties the queue and sets the lines issued a step (before add).
func (q *prefetchQueue) reset(lines int) {
	q.items, q.at, q.lines = q.items[:0], 0, max(lines, 1)
}

// add queues rows rows of width floats, stride apart in s from off; rows past
// the end of s are left out.
func (q *prefetchQueue) add(s []float32, off, stride, rows, width int) {
	if stride > 0 {
		rows = min(rows, (len(s)-off-width)/stride+1)
	}
	if rows <= 0 || width <= 0 || off < 0 || off+width > len(s) {
		return
	}
	per := (width + 15) / 16
	q.items = append(q.items, prefetchRange{uintptr(unsafe.Pointer(&s[off])), stride, rows, width, per, max(1, q.lines/per)})
}

// step issues the next q.lines cache lines (whole rows: at least one row).
func (q *prefetchQueue) step() {
	if q != nil && q.at < len(q.items) {
		q.issue(q.lines)
	}
}

// issue prefetches rows from the queue until about lines cache lines went out
// (lines is q.lines: a range's step is the rows of that many lines).
func (q *prefetchQueue) issue(lines int) {
	for lines > 0 && q.at < len(q.items) {
		it := &q.items[q.at]
		n := min(it.rows, it.step)
		if lines < q.lines { // what is left of a step after another range
			n = min(n, max(1, lines/it.per))
		}
		prefetchL2Addr(it.p, it.stride, n, it.width)
		it.p += uintptr(4 * n * it.stride)
		it.rows -= n
		lines -= n * it.per
		if it.rows == 0 {
			q.at++
		}
	}
}

// flush issues everything left.
func (q *prefetchQueue) flush() {
	for q.at < len(q.items) {
		it := &q.items[q.at]
		prefetchL2Addr(it.p, it.stride, it.rows, it.width)
		q.at++
	}
}

// The cache lines a strip of a forward or backward unit issues for the next
// unit: a forward unit of the tiny GPT (T 128, head dim 32) runs about 32
// strips and queues about a thousand lines, a backward one about 160 strips for
// about 2300 lines; what is left at the end of a unit goes out at once. (Measured
// cold: 16 to 64 lines forward and 8 to 32 backward are all within the noise of
// each other, and all well ahead of one burst at the start of the unit.)
const (
	prefetchLinesFwd = 32
	prefetchLinesBwd = 16
)
