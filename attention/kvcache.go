package attention

import (
	"fmt"
	"slices"

	"github.com/mlxtrain/mlxtrain/autodiff"
)

// The KV caches of generation. Besides [KVCache]'s Update, which hands the
// attention kernel one contiguous tensor, these caches implement [SpanCache]:
// each sequence's cached positions are runs of rows in the cache's own storage
// (spans) that the decode kernel ([SpanAttention]) reads where they lie, so a
// step copies only its new keys and values, whatever the cache's length:
//
//   - [GrowingCache]: one buffer per key and value whose capacity doubles
//     (amortised O(1) copying per token).
//   - [RotatingCache]: a ring of Max positions, the first Keep of them never
//     overwritten ("attention sinks"), for sliding-window layers and for a bound
//     on the cache (mlx-lm's max_kv_size).
//   - [PagedCache]: fixed-size blocks from a shared [BlockPool], a block table
//     per sequence; Fork shares a prefix's blocks between sequences (refcounts,
//     copy on write of a shared partial block).
//   - [RowsCache]: sequences of different lengths side by side in one batch,
//     each row its own single-sequence cache.

// KVSpan is a run of consecutive cached positions of one sequence: Rows rows of
// K and V starting at element Off, each row (kv heads × head dim) contiguous, for
// the positions Pos…Pos+Rows−1. K and V are the cache's storage: read them,
// never keep or release them.
type KVSpan struct {
	K, V      *autodiff.Tensor
	Off       int
	Pos, Rows int
}

// SpanCache is a KV cache whose rows may differ in length and whose storage the
// kernel reads in place.
type SpanCache interface {
	KVCache
	// Rows is the batch size, 0 before the first Append.
	Rows() int
	// RowOffset is the position of the next token of row b.
	RowOffset(b int) int
	// Append stores k and v (batch, n, kv heads, head dim), keys after RoPE, at
	// positions RowOffset(b)… of each row b.
	Append(k, v *autodiff.Tensor)
	// Spans lists the positions of row b that a query may attend, oldest first
	// (after Append: the new ones included).
	Spans(b int) []KVSpan
}

// offsetsOf returns every row's next position.
func offsetsOf(c SpanCache, rows int) []int {
	offs := make([]int, rows)
	for b := range offs {
		offs[b] = c.RowOffset(b)
	}
	return offs
}

// gatherSpans copies the spans of every row of c into contiguous (batch, len,
// kv heads, head dim) tensors of dtype dt (float16 storage converts to
// float32); every row must hold the same number of positions.
func gatherSpans(c SpanCache, dt autodiff.DType) (keys, values *autodiff.Tensor) {
	rows := c.Rows()
	var n, kvh, hd int
	for _, s := range c.Spans(0) {
		n += s.Rows
		kvh, hd = s.K.Dim(-2), s.K.Dim(-1)
	}
	if n == 0 {
		panic("attention: gatherSpans: empty cache")
	}
	keys, values = autodiff.Empty(dt, rows, n, kvh, hd), autodiff.Empty(dt, rows, n, kvh, hd)
	row := kvh * hd
	cp := newKVCopy("kv_cache_gather", 2*rows*n*row)
	defer cp.done()
	for b := range rows {
		at := b * n * row
		got := 0
		for _, s := range c.Spans(b) {
			cp.copy(keys, at, s.K, s.Off, s.Rows*row)
			cp.copy(values, at, s.V, s.Off, s.Rows*row)
			at += s.Rows * row
			got += s.Rows
		}
		if got != n {
			panic(fmt.Sprintf("attention: gatherSpans: row %d holds %d positions, row 0 %d", b, got, n))
		}
	}
	return keys, values
}

// copyElems copies n elements of src from element so to dst from element do,
// converting between float32 and float16 when their dtypes differ.
func copyElems(dst *autodiff.Tensor, do int, src *autodiff.Tensor, so, n int) {
	switch dt, st := dst.DType(), src.DType(); {
	case dt == st:
		z := dt.Size()
		copy(dst.Bytes()[do*z:(do+n)*z], src.Bytes()[so*z:(so+n)*z])
	case dt == autodiff.Float16 && st == autodiff.Float32:
		float32ToHalves(dst.Halves()[do:do+n], src.Float32s()[so:so+n])
	case dt == autodiff.Float32 && st == autodiff.Float16:
		halvesToFloat32(dst.Float32s()[do:do+n], src.Halves()[so:so+n])
	default:
		panic(fmt.Sprintf("attention: KV cache: cannot store %s as %s", st, dt))
	}
}

// storage is the dtype a cache keeps keys and values of dtype in as: float16
// for float32 input when half is set, else in's own.
func storage(in autodiff.DType, half bool) autodiff.DType {
	if half && in == autodiff.Float32 {
		return autodiff.Float16
	}
	return in
}

// checkKV panics unless k and v are rank-4 float tensors of one shape.
func checkKV(op string, k, v *autodiff.Tensor) {
	if k.Rank() != 4 || !k.DType().IsFloat() || k.DType() != v.DType() || !slices.Equal(k.Shape(), v.Shape()) {
		panic(fmt.Sprintf("attention: %s: k %s %v, v %s %v: want two (batch, n, kv heads, head dim) float tensors of one shape", op, k.DType(), k.Shape(), v.DType(), v.Shape()))
	}
}

// sameGeometry panics unless k continues a cache of rows rows of kvh×hd rows of dt.
func sameGeometry(op string, k *autodiff.Tensor, rows, kvh, hd int, dt autodiff.DType) {
	if k.Dim(0) != rows || k.Dim(2) != kvh || k.Dim(3) != hd || k.DType() != dt {
		panic(fmt.Sprintf("attention: %s: k %s %v for a cache of %d rows of %d×%d %s", op, k.DType(), k.Shape(), rows, kvh, hd, dt))
	}
}

// GrowingCache holds every position of a batch of sequences of equal length in
// one key and one value buffer, (batch, capacity, kv heads, head dim), whose
// capacity doubles when full: appending a token copies that token only, and the
// total copying over a generation is linear in its length.
//
// With Half set (before the first Append), float32 keys and values are stored
// as float16: half the memory and the memory traffic of a decoding step, at
// float16's precision (about 3 decimal digits).
type GrowingCache struct {
	Half bool

	k, v          *autodiff.Tensor
	n             int // positions held
	rows, kvh, hd int
	in            autodiff.DType
}

// Offset is the number of cached positions.
func (c *GrowingCache) Offset() int { return c.n }

// Rows is the batch size.
func (c *GrowingCache) Rows() int { return c.rows }

// RowOffset is the number of cached positions (every row has as many).
func (c *GrowingCache) RowOffset(int) int { return c.n }

// Len is the number of cached positions.
func (c *GrowingCache) Len() int { return c.n }

// Capacity is how many positions fit before the buffers grow.
func (c *GrowingCache) Capacity() int {
	if c.k == nil {
		return 0
	}
	return c.k.Dim(1)
}

// Append stores k and v after the cached positions.
func (c *GrowingCache) Append(k, v *autodiff.Tensor) {
	checkKV("GrowingCache.Append", k, v)
	if c.k == nil && c.rows == 0 {
		c.rows, c.kvh, c.hd, c.in = k.Dim(0), k.Dim(2), k.Dim(3), k.DType()
	} else {
		sameGeometry("GrowingCache.Append", k, c.rows, c.kvh, c.hd, c.in)
	}
	n := k.Dim(1)
	if c.n+n > c.Capacity() {
		c.grow(c.n+n, storage(c.in, c.Half))
	}
	row := c.kvh * c.hd
	capa := c.Capacity()
	cp := newKVCopy("kv_cache_append", 2*c.rows*n*row)
	defer cp.done()
	for b := range c.rows {
		cp.copy(c.k, (b*capa+c.n)*row, k, b*n*row, n*row)
		cp.copy(c.v, (b*capa+c.n)*row, v, b*n*row, n*row)
	}
	c.n += n
}

// grow moves the cache into buffers of at least need positions: twice the old
// capacity, and no fewer than 256.
func (c *GrowingCache) grow(need int, dt autodiff.DType) {
	capa := max(need, 2*c.Capacity(), 256)
	k, v := autodiff.Empty(dt, c.rows, capa, c.kvh, c.hd), autodiff.Empty(dt, c.rows, capa, c.kvh, c.hd)
	if c.k != nil {
		row := c.kvh * c.hd
		old := c.Capacity()
		cp := newKVCopy("kv_cache_append", 2*c.rows*c.n*row)
		for b := range c.rows {
			cp.copy(k, b*capa*row, c.k, b*old*row, c.n*row)
			cp.copy(v, b*capa*row, c.v, b*old*row, c.n*row)
		}
		cp.done()
		c.k.Release()
		c.v.Release()
	}
	c.k, c.v = k, v
}

// Spans is row b's one span.
func (c *GrowingCache) Spans(b int) []KVSpan {
	if c.n == 0 {
		return nil
	}
	return []KVSpan{{K: c.k, V: c.v, Off: b * c.Capacity() * c.kvh * c.hd, Pos: 0, Rows: c.n}}
}

// Update appends k and v and returns copies of the whole cache (for callers
// that need contiguous tensors; the attention block reads the spans instead).
func (c *GrowingCache) Update(k, v *autodiff.Tensor) (*autodiff.Tensor, *autodiff.Tensor) {
	c.Append(k, v)
	return gatherSpans(c, k.DType())
}

// Fork returns an independent copy.
func (c *GrowingCache) Fork() KVCache {
	f := *c
	if c.k != nil {
		f.k, f.v = c.k.Clone(), c.v.Clone()
	}
	return &f
}

// Release frees the storage; the cache is empty afterwards.
func (c *GrowingCache) Release() {
	if c.k != nil {
		c.k.Release()
		c.v.Release()
	}
	*c = GrowingCache{Half: c.Half}
}

// RotatingCache keeps at most Max positions per sequence: the first Keep
// positions (attention sinks) and the most recent Max − Keep in a ring. For a
// sliding-window layer of window W, Max = W and Keep = 0 keep exactly what its
// queries see; a smaller Max bounds the memory of full-attention layers
// (mlx-lm's max_kv_size), who then attend only the sinks and the recent keys.
//
// Positions stay absolute (RoPE uses the true offsets). A prefill of n tokens
// at once reads the ring as it was plus the n new keys, which enter the ring
// only at the next Append, so each new query sees the Max − 1 positions before
// the chunk as the window needs.
type RotatingCache struct {
	Max, Keep int
	Half      bool // store float32 keys and values as float16 (see GrowingCache)

	k, v          *autodiff.Tensor // (rows, Max, kv heads, head dim)
	seen          int              // positions written into the ring
	pk, pv        *autodiff.Tensor // the last Append, not in the ring yet
	rows, kvh, hd int
	in            autodiff.DType
}

// NewRotatingCache returns an empty rotating cache; it panics unless
// 0 ≤ keep < max.
func NewRotatingCache(max, keep int) *RotatingCache {
	if max <= 0 || keep < 0 || keep >= max {
		panic(fmt.Sprintf("attention: NewRotatingCache: max %d, keep %d: want 0 ≤ keep < max", max, keep))
	}
	return &RotatingCache{Max: max, Keep: keep}
}

func (c *RotatingCache) pending() int {
	if c.pk == nil {
		return 0
	}
	return c.pk.Dim(1)
}

// Offset is the number of positions seen (not only those kept).
func (c *RotatingCache) Offset() int { return c.seen + c.pending() }

// Rows is the batch size.
func (c *RotatingCache) Rows() int { return c.rows }

// RowOffset is Offset (every row has as many).
func (c *RotatingCache) RowOffset(int) int { return c.Offset() }

// Held is the number of positions stored (at most Max, besides the last
// Append's).
func (c *RotatingCache) Held() int { return min(c.seen, c.Max) }

// slot is where position p lives in the ring.
func (c *RotatingCache) slot(p int) int {
	if p < c.Keep {
		return p
	}
	return c.Keep + (p-c.Keep)%(c.Max-c.Keep)
}

// commit writes the pending positions into the ring.
func (c *RotatingCache) commit() {
	if c.pk == nil {
		return
	}
	n := c.pk.Dim(1)
	row := c.kvh * c.hd
	cp := newKVCopy("kv_cache_append", 2*c.rows*n*row)
	defer cp.done()
	// Only the last Max − Keep of a long chunk survive beyond the sinks.
	for i := range n {
		p := c.seen + i
		if p >= c.Keep && c.seen+n-p > c.Max-c.Keep {
			continue
		}
		s := c.slot(p)
		for b := range c.rows {
			cp.copy(c.k, (b*c.Max+s)*row, c.pk, (b*n+i)*row, row)
			cp.copy(c.v, (b*c.Max+s)*row, c.pv, (b*n+i)*row, row)
		}
	}
	c.seen += n
	c.pk.Release()
	c.pv.Release()
	c.pk, c.pv = nil, nil
}

// Append stores k and v after the positions seen.
func (c *RotatingCache) Append(k, v *autodiff.Tensor) {
	checkKV("RotatingCache.Append", k, v)
	if c.k == nil {
		if c.Max <= 0 || c.Keep < 0 || c.Keep >= c.Max {
			panic(fmt.Sprintf("attention: RotatingCache: max %d, keep %d: want 0 ≤ keep < max", c.Max, c.Keep))
		}
		c.rows, c.kvh, c.hd, c.in = k.Dim(0), k.Dim(2), k.Dim(3), k.DType()
		st := storage(k.DType(), c.Half)
		c.k, c.v = autodiff.Zeros(st, c.rows, c.Max, c.kvh, c.hd), autodiff.Zeros(st, c.rows, c.Max, c.kvh, c.hd)
	} else {
		sameGeometry("RotatingCache.Append", k, c.rows, c.kvh, c.hd, c.in)
	}
	c.commit()
	c.pk, c.pv = autodiff.Empty(k.DType(), k.Shape()...), autodiff.Empty(v.DType(), v.Shape()...)
	cp := newKVCopy("kv_cache_append", 2*k.Len())
	cp.copy(c.pk, 0, k, 0, k.Len())
	cp.copy(c.pv, 0, v, 0, v.Len())
	cp.done()
}

// Spans lists the sinks, the ring oldest first, and the last Append.
func (c *RotatingCache) Spans(b int) []KVSpan {
	var out []KVSpan
	if c.k == nil {
		return nil
	}
	row := c.kvh * c.hd
	base := b * c.Max * row
	span := func(slot, pos, n int) {
		if n > 0 {
			out = append(out, KVSpan{K: c.k, V: c.v, Off: base + slot*row, Pos: pos, Rows: n})
		}
	}
	if c.seen <= c.Max {
		span(0, 0, c.seen)
	} else {
		span(0, 0, c.Keep)
		first := c.seen - (c.Max - c.Keep) // oldest position in the ring
		s := c.slot(first)
		tail := c.Max - s // slots s…Max−1 hold first…
		span(s, first, tail)
		span(c.Keep, first+tail, c.Max-c.Keep-tail)
	}
	if n := c.pending(); n > 0 {
		out = append(out, KVSpan{K: c.pk, V: c.pv, Off: b * n * row, Pos: c.seen, Rows: n})
	}
	return out
}

// Update appends k and v and returns copies of what Spans lists, in order.
func (c *RotatingCache) Update(k, v *autodiff.Tensor) (*autodiff.Tensor, *autodiff.Tensor) {
	c.Append(k, v)
	return gatherSpans(c, k.DType())
}

// Fork returns an independent copy.
func (c *RotatingCache) Fork() KVCache {
	f := *c
	if c.k != nil {
		f.k, f.v = c.k.Clone(), c.v.Clone()
	}
	if c.pk != nil {
		f.pk, f.pv = c.pk.Clone(), c.pv.Clone()
	}
	return &f
}

// Release frees the storage; the cache is empty afterwards (Max and Keep stay).
func (c *RotatingCache) Release() {
	for _, t := range []*autodiff.Tensor{c.k, c.v, c.pk, c.pv} {
		if t != nil {
			t.Release()
		}
	}
	*c = RotatingCache{Max: c.Max, Keep: c.Keep, Half: c.Half}
}

// RowsCache puts single-sequence caches side by side as the rows of one batch,
// so that sequences of different lengths decode together: row b's keys go to
// Seqs[b], and each query attends its own row's positions.
type RowsCache struct {
	Seqs []SpanCache
}

// Offset is the largest row offset.
func (c *RowsCache) Offset() int {
	n := 0
	for _, s := range c.Seqs {
		n = max(n, s.Offset())
	}
	return n
}

// Rows is the number of sequences.
func (c *RowsCache) Rows() int { return len(c.Seqs) }

// RowOffset is the next position of sequence b.
func (c *RowsCache) RowOffset(b int) int { return c.Seqs[b].Offset() }

// Append gives row b of k and v to sequence b.
func (c *RowsCache) Append(k, v *autodiff.Tensor) {
	checkKV("RowsCache.Append", k, v)
	if k.Dim(0) != len(c.Seqs) {
		panic(fmt.Sprintf("attention: RowsCache.Append: k %v for %d sequences", k.Shape(), len(c.Seqs)))
	}
	for b, s := range c.Seqs {
		kb, vb := autodiff.Slice(k, 0, b, b+1), autodiff.Slice(v, 0, b, b+1)
		s.Append(kb, vb)
		kb.Release()
		vb.Release()
	}
}

// Spans is sequence b's spans.
func (c *RowsCache) Spans(b int) []KVSpan { return c.Seqs[b].Spans(0) }

// Update appends and returns contiguous copies; the rows must be of one length.
func (c *RowsCache) Update(k, v *autodiff.Tensor) (*autodiff.Tensor, *autodiff.Tensor) {
	c.Append(k, v)
	return gatherSpans(c, k.DType())
}

// Forker is a cache that can copy itself: the copy continues independently
// (a paged cache shares the blocks it has filled until either side writes).
type Forker interface {
	Fork() KVCache
}

// Releaser is a cache with storage to give back.
type Releaser interface {
	Release()
}

// Trimmer is a cache that can forget its last positions (speculative decoding
// drops the rejected draft tokens).
type Trimmer interface {
	// TrimTo keeps positions 0…n−1 and reports whether it could: false, and
	// nothing changed, when positions before n are no longer stored as they were
	// (a ring that has overwritten them).
	TrimTo(n int) bool
}

// TrimTo keeps the first n positions.
func (c *GrowingCache) TrimTo(n int) bool {
	if n < 0 || n > c.n {
		return false
	}
	c.n = n
	return true
}

// CanTrimTo reports whether TrimTo(n) would succeed.
func (c *RotatingCache) CanTrimTo(n int) bool {
	return n >= 0 && n <= c.Offset() && (n >= c.seen || c.seen <= c.Max)
}

// TrimTo keeps the first n positions: always possible within the last Append
// (not yet in the ring), or before the ring first wraps.
func (c *RotatingCache) TrimTo(n int) bool {
	switch {
	case !c.CanTrimTo(n):
		return false
	case n >= c.seen:
		if keep := n - c.seen; keep < c.pending() {
			if keep == 0 {
				c.pk.Release()
				c.pv.Release()
				c.pk, c.pv = nil, nil
			} else {
				pk, pv := autodiff.Slice(c.pk, 1, 0, keep), autodiff.Slice(c.pv, 1, 0, keep)
				c.pk.Release()
				c.pv.Release()
				c.pk, c.pv = pk, pv
			}
		}
		return true
	case c.seen <= c.Max:
		if c.pk != nil {
			c.pk.Release()
			c.pv.Release()
			c.pk, c.pv = nil, nil
		}
		c.seen = n
		return true
	}
	return false
}

// TrimTo keeps the first n positions; blocks no longer needed go back to the
// pool (a shared partial block is copied when next written).
func (c *PagedCache) TrimTo(n int) bool {
	if n < 0 || n > c.n {
		return false
	}
	bs := c.Pool.BlockSize
	keep := (n + bs - 1) / bs
	for _, id := range c.table[keep:] {
		c.Pool.drop(id)
	}
	c.table, c.n = c.table[:keep], n
	return true
}
