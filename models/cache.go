package models

import (
	"fmt"
	"slices"

	"github.com/mlxtrain/mlxtrain/advanced"
	"github.com/mlxtrain/mlxtrain/attention"
	"github.com/mlxtrain/mlxtrain/autodiff"
)

// LayerCache is what one layer keeps between generation calls: the keys and
// values of an attention mixer, or the recurrent state of a Mamba mixer (made
// on the first call, for that call's batch) and the number of positions it has
// seen.
type LayerCache struct {
	KV     attention.KVCache
	SSM    *advanced.MambaState
	SSMLen int
}

// Cache holds every layer's LayerCache for one generation.
type Cache struct {
	Layers []LayerCache

	// rows, when not nil, is each batch row's next position: the rows of a
	// [StackCaches] batch may be at different positions.
	rows []int
}

// CacheOptions choose the KV caches of [NewCacheWith]. The zero value is
// [NewCache]'s: a growing cache per full-attention layer, a rotating cache of
// the window per sliding-window layer.
type CacheOptions struct {
	// MaxKVSize > 0 bounds every attention layer's cache to that many positions
	// (a rotating cache; mlx-lm's max_kv_size): the first Keep positions and the
	// most recent ones are kept. Sliding-window layers keep min(window,
	// MaxKVSize).
	MaxKVSize int
	Keep      int
	// BlockSize > 0 makes paged caches instead (a new block pool per layer,
	// shared by the caches [Cache.Fork] makes). Exclusive with MaxKVSize.
	BlockSize int
	// Float16 stores the keys and values of a float32 model as float16: half
	// the cache's memory and of what a decoding step reads, at float16's
	// precision. Float64 models ignore it.
	Float16 bool
}

// Validate reports options out of range.
func (o CacheOptions) Validate() error {
	switch {
	case o.MaxKVSize < 0 || o.Keep < 0 || o.BlockSize < 0:
		return fmt.Errorf("models: cache options %+v: want sizes ≥ 0", o)
	case o.MaxKVSize > 0 && o.Keep >= o.MaxKVSize:
		return fmt.Errorf("models: max kv size %d keeps %d sink tokens: want fewer than the size", o.MaxKVSize, o.Keep)
	case o.MaxKVSize > 0 && o.BlockSize > 0:
		return fmt.Errorf("models: a paged cache has no max kv size")
	}
	return nil
}

// NewCache returns an empty cache for m: a growing KV cache
// ([attention.GrowingCache]) for each full-attention layer and a rotating one of
// the window's size for each sliding-window layer.
func NewCache(m *Model) *Cache {
	return NewCacheWith(m, CacheOptions{})
}

// NewCacheWith returns an empty cache for m with the KV caches o chooses; it
// panics on options that o.Validate rejects.
func NewCacheWith(m *Model, o CacheOptions) *Cache {
	if err := o.Validate(); err != nil {
		panic(err.Error())
	}
	c := &Cache{Layers: make([]LayerCache, len(m.Layers))}
	for i, l := range m.Layers {
		am, ok := l.Mixer.(AttentionMixer)
		if !ok {
			continue
		}
		w := am.Block.Window
		switch {
		case o.BlockSize > 0:
			pool := attention.NewBlockPool(o.BlockSize)
			pool.Half = o.Float16
			c.Layers[i].KV = attention.NewPagedCache(pool)
		case o.MaxKVSize > 0 && (w == 0 || o.MaxKVSize < w):
			r := attention.NewRotatingCache(o.MaxKVSize, o.Keep)
			r.Half = o.Float16
			c.Layers[i].KV = r
		case w > 0:
			r := attention.NewRotatingCache(w, 0)
			r.Half = o.Float16
			c.Layers[i].KV = r
		default:
			c.Layers[i].KV = &attention.GrowingCache{Half: o.Float16}
		}
	}
	return c
}

// Offset is the number of positions the cache holds (that of its first layer
// with a KV cache, else of its first Mamba layer); for a batch of rows at
// different positions, the largest.
func (c *Cache) Offset() int {
	if c.rows != nil {
		n := 0
		for _, r := range c.rows {
			n = max(n, r)
		}
		return n
	}
	for _, l := range c.Layers {
		if l.KV != nil {
			return l.KV.Offset()
		}
	}
	for _, l := range c.Layers {
		if l.SSM != nil {
			return l.SSMLen
		}
	}
	return 0
}

// RowOffsets is each batch row's next position when the rows differ (a
// [StackCaches] batch), else nil (all at Offset).
func (c *Cache) RowOffsets() []int { return c.rows }

// advance moves the per-row positions on by n.
func (c *Cache) advance(n int) {
	for i := range c.rows {
		c.rows[i] += n
	}
}

// Fork returns a cache that continues from the same state independently: KV
// caches fork (a paged cache shares its filled blocks), Mamba states are copied.
func (c *Cache) Fork() *Cache {
	f := &Cache{Layers: make([]LayerCache, len(c.Layers)), rows: append([]int(nil), c.rows...)}
	for i, l := range c.Layers {
		f.Layers[i].SSMLen = l.SSMLen
		if l.KV != nil {
			fk, ok := l.KV.(attention.Forker)
			if !ok {
				panic(fmt.Sprintf("models: Cache.Fork: layer %d's %T cannot fork", i, l.KV))
			}
			f.Layers[i].KV = fk.Fork()
		}
		if l.SSM != nil {
			f.Layers[i].SSM = &advanced.MambaState{Conv: l.SSM.Conv.Clone(), SSM: l.SSM.SSM.Clone()}
		}
	}
	return f
}

// StackCaches puts caches of single sequences (each of batch 1, any lengths,
// made for the same model) side by side as the rows of one batch: attention
// layers read each row's own cache, Mamba states are stacked. The batch then
// decodes one token per row per call. The caches are taken over: use only the
// result, and release only it.
func StackCaches(caches ...*Cache) *Cache {
	if len(caches) == 0 {
		panic("models: StackCaches: no caches")
	}
	out := &Cache{Layers: make([]LayerCache, len(caches[0].Layers))}
	for _, c := range caches {
		if len(c.Layers) != len(out.Layers) {
			panic(fmt.Sprintf("models: StackCaches: caches of %d and %d layers", len(c.Layers), len(out.Layers)))
		}
		out.rows = append(out.rows, c.Offset())
	}
	for i := range out.Layers {
		var seqs []attention.SpanCache
		var shape *advanced.MambaState
		for _, c := range caches {
			l := c.Layers[i]
			if l.KV != nil {
				sc, ok := l.KV.(attention.SpanCache)
				if !ok {
					panic(fmt.Sprintf("models: StackCaches: layer %d's %T cannot be a batch row", i, l.KV))
				}
				seqs = append(seqs, sc)
			}
			if l.SSM != nil {
				shape = l.SSM
			}
		}
		if len(seqs) > 0 {
			out.Layers[i].KV = &attention.RowsCache{Seqs: seqs}
		}
		if shape == nil {
			continue
		}
		// A row that has seen no token yet has the empty (zero) state.
		var conv, ssm []*autodiff.Tensor
		for _, c := range caches {
			if s := c.Layers[i].SSM; s != nil {
				conv, ssm = append(conv, s.Conv), append(ssm, s.SSM)
			} else {
				cs, ss := slices.Clone(shape.Conv.Shape()), slices.Clone(shape.SSM.Shape())
				cs[0], ss[0] = 1, 1
				conv = append(conv, autodiff.Zeros(shape.Conv.DType(), cs...))
				ssm = append(ssm, autodiff.Zeros(shape.SSM.DType(), ss...))
			}
		}
		out.Layers[i].SSM = &advanced.MambaState{Conv: autodiff.Concat(0, conv...), SSM: autodiff.Concat(0, ssm...)}
		for j := range conv {
			conv[j].Release()
			ssm[j].Release()
		}
		for _, c := range caches {
			c.Layers[i].SSM = nil
		}
	}
	return out
}

// Select keeps the batch rows listed (in that order) of a [StackCaches] batch
// and releases the others: finished sequences leave the batch.
func (c *Cache) Select(rows []int) {
	if c.rows == nil {
		panic("models: Cache.Select: not a stacked batch")
	}
	keep := map[int]bool{}
	for _, r := range rows {
		keep[r] = true
	}
	idx := make([]int32, len(rows))
	newRows := make([]int, len(rows))
	for i, r := range rows {
		idx[i] = int32(r)
		newRows[i] = c.rows[r]
	}
	c.rows = newRows
	for i := range c.Layers {
		l := &c.Layers[i]
		if rc, ok := l.KV.(*attention.RowsCache); ok {
			seqs := make([]attention.SpanCache, len(rows))
			for j, r := range rows {
				seqs[j] = rc.Seqs[r]
			}
			for r, s := range rc.Seqs {
				if rl, ok := s.(attention.Releaser); ok && !keep[r] {
					rl.Release()
				}
			}
			rc.Seqs = seqs
		}
		if l.SSM != nil {
			it := autodiff.FromInt32(idx, len(idx))
			conv, ssm := autodiff.Gather(l.SSM.Conv, 0, it), autodiff.Gather(l.SSM.SSM, 0, it)
			it.Release()
			l.SSM.Release()
			l.SSM = &advanced.MambaState{Conv: conv, SSM: ssm}
		}
	}
}

// Release gives back the storage of the KV caches and the Mamba layers'
// states; the cache is not to be used afterwards.
func (c *Cache) Release() {
	for i := range c.Layers {
		l := &c.Layers[i]
		if s := l.SSM; s != nil {
			s.Release()
			l.SSM, l.SSMLen = nil, 0
		}
		switch kv := l.KV.(type) {
		case *attention.RowsCache:
			for _, s := range kv.Seqs {
				if r, ok := s.(attention.Releaser); ok {
					r.Release()
				}
			}
		case attention.Releaser:
			kv.Release()
		}
	}
}

// embedRows is embedPositions for a batch whose row b starts at position
// offs[b].
func embedRows(table, pos, ids *autodiff.Tensor, offs []int) *autodiff.Tensor {
	if len(offs) != ids.Dim(0) {
		panic(fmt.Sprintf("models: Forward: token ids %v for a cache of %d rows", ids.Shape(), len(offs)))
	}
	parts := make([]*autodiff.Tensor, len(offs))
	for b, o := range offs {
		row := autodiff.Slice(ids, 0, b, b+1)
		parts[b] = embedPositions(table, pos, row, o)
		row.Release()
	}
	x := autodiff.Concat(0, parts...)
	for _, p := range parts {
		p.Release()
	}
	return x
}

// Prefill runs ids (batch, seq) through the model into cache without computing
// logits: the prompt's tokens before the last need only their keys, values and
// states.
func (m *Model) Prefill(ids *autodiff.Tensor, cache *Cache) {
	if cache == nil {
		panic("models: Prefill: no cache")
	}
	m.hidden(nil, ids, cache, nil).Release()
}

// TrimTo keeps positions 0…n−1 in every layer and reports whether it could:
// false, with nothing changed, when a layer cannot forget positions (a Mamba
// state, a ring that has overwritten them; see [Cache.Mark]). Not for stacked
// batches.
func (c *Cache) TrimTo(n int) bool {
	if c.rows != nil {
		return false
	}
	for _, l := range c.Layers {
		if l.SSM != nil {
			return false
		}
		if l.KV != nil {
			if _, ok := l.KV.(attention.Trimmer); !ok {
				return false
			}
			if rc, ok := l.KV.(*attention.RotatingCache); ok && !rc.CanTrimTo(n) {
				return false
			}
		}
	}
	for _, l := range c.Layers {
		if l.KV != nil && !l.KV.(attention.Trimmer).TrimTo(n) {
			panic(fmt.Sprintf("models: Cache.TrimTo(%d): %T refused after the check", n, l.KV))
		}
	}
	return true
}

// CacheMark is a point a cache can go back to ([Cache.Rewind]).
type CacheMark struct {
	offset int
	kv     []attention.KVCache // copies of the layers that cannot trim
	ssm    []*advanced.MambaState
	ssmLen []int
}

// Mark records the cache's state: its offset, and copies of what cannot simply
// be trimmed later (Mamba states, rotating caches).
func (c *Cache) Mark() *CacheMark {
	mk := &CacheMark{offset: c.Offset(), kv: make([]attention.KVCache, len(c.Layers)),
		ssm: make([]*advanced.MambaState, len(c.Layers)), ssmLen: make([]int, len(c.Layers))}
	for i, l := range c.Layers {
		if rc, ok := l.KV.(*attention.RotatingCache); ok {
			mk.kv[i] = rc.Fork()
		}
		if l.SSM != nil {
			mk.ssm[i] = &advanced.MambaState{Conv: l.SSM.Conv.Clone(), SSM: l.SSM.SSM.Clone()}
			mk.ssmLen[i] = l.SSMLen
		}
	}
	return mk
}

// Rewind puts the cache back to mk (taken on this cache, with nothing trimmed
// below it since); mk is used up.
func (c *Cache) Rewind(mk *CacheMark) {
	for i := range c.Layers {
		l := &c.Layers[i]
		switch {
		case mk.kv[i] != nil:
			if r, ok := l.KV.(attention.Releaser); ok {
				r.Release()
			}
			l.KV = mk.kv[i]
		case l.KV != nil:
			if !l.KV.(attention.Trimmer).TrimTo(mk.offset) {
				panic(fmt.Sprintf("models: Cache.Rewind: layer %d cannot go back to %d", i, mk.offset))
			}
		}
		if mk.ssm[i] != nil {
			l.SSM.Release()
			l.SSM, l.SSMLen = mk.ssm[i], mk.ssmLen[i]
		} else if l.SSM != nil { // made after the mark
			l.SSM.Release()
			l.SSM, l.SSMLen = nil, 0
		}
	}
	mk.kv, mk.ssm = nil, nil
}

// Release frees the copies a mark holds, when it is not used for Rewind.
func (mk *CacheMark) Release() {
	for _, kv := range mk.kv {
		if r, ok := kv.(attention.Releaser); ok {
			r.Release()
		}
	}
	for _, s := range mk.ssm {
		if s != nil {
			s.Release()
		}
	}
	mk.kv, mk.ssm = nil, nil
}
