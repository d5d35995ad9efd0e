package attention

import (
	"fmt"

	"github.com/mlxtrain/mlxtrain/autodiff"
)

// BlockPool is the storage of paged KV caches: blocks of BlockSize positions
// (keys and values of every kv head), handed to sequences and shared between
// them with reference counts. One pool serves one attention layer.
type BlockPool struct {
	BlockSize int
	Half      bool // store float32 keys and values as float16 (see GrowingCache)

	k, v    []*autodiff.Tensor // by block id: (BlockSize, kv heads, head dim)
	refs    []int
	free    []int
	kvh, hd int
	in, dt  autodiff.DType // what sequences append, what the blocks hold
}

// NewBlockPool returns an empty pool of blocks of blockSize positions (> 0).
func NewBlockPool(blockSize int) *BlockPool {
	if blockSize <= 0 {
		panic(fmt.Sprintf("attention: NewBlockPool: block size %d", blockSize))
	}
	return &BlockPool{BlockSize: blockSize}
}

// Blocks is the number of blocks allocated; InUse those some sequence holds.
func (p *BlockPool) Blocks() int { return len(p.refs) }

// InUse is the number of blocks some sequence holds.
func (p *BlockPool) InUse() int { return len(p.refs) - len(p.free) }

// Refs is how many sequences hold block id.
func (p *BlockPool) Refs(id int) int { return p.refs[id] }

func (p *BlockPool) alloc() int {
	if n := len(p.free); n > 0 {
		id := p.free[n-1]
		p.free = p.free[:n-1]
		p.refs[id] = 1
		return id
	}
	p.k = append(p.k, autodiff.Empty(p.dt, p.BlockSize, p.kvh, p.hd))
	p.v = append(p.v, autodiff.Empty(p.dt, p.BlockSize, p.kvh, p.hd))
	p.refs = append(p.refs, 1)
	return len(p.refs) - 1
}

func (p *BlockPool) drop(id int) {
	p.refs[id]--
	if p.refs[id] == 0 {
		p.free = append(p.free, id)
	}
}

// Release frees every block's storage; the pool's caches are not to be used
// afterwards.
func (p *BlockPool) Release() {
	for i := range p.k {
		p.k[i].Release()
		p.v[i].Release()
	}
	*p = BlockPool{BlockSize: p.BlockSize, Half: p.Half}
}

// PagedCache is one sequence's KV cache in a [BlockPool]: a block table (the
// pool's block ids, in order) and the number of positions. [PagedCache.Fork]
// starts another sequence that shares every block filled so far: a common prompt
// prefix is computed and stored once. A shared block is never written: the
// first Append into a shared partial block copies it (copy on write).
type PagedCache struct {
	Pool  *BlockPool
	table []int
	n     int
}

// NewPagedCache returns an empty sequence in pool.
func NewPagedCache(pool *BlockPool) *PagedCache { return &PagedCache{Pool: pool} }

// Offset is the number of cached positions.
func (c *PagedCache) Offset() int { return c.n }

// Rows is 1: a paged cache is one sequence (put several in a [RowsCache]).
func (c *PagedCache) Rows() int { return 1 }

// RowOffset is Offset.
func (c *PagedCache) RowOffset(int) int { return c.n }

// Table is the block table: the pool's block ids holding positions 0…, in order.
func (c *PagedCache) Table() []int { return c.table }

// Append stores k and v (1, n, kv heads, head dim).
func (c *PagedCache) Append(k, v *autodiff.Tensor) {
	checkKV("PagedCache.Append", k, v)
	p := c.Pool
	if p.kvh == 0 {
		p.kvh, p.hd, p.in, p.dt = k.Dim(2), k.Dim(3), k.DType(), storage(k.DType(), p.Half)
	}
	sameGeometry("PagedCache.Append", k, 1, p.kvh, p.hd, p.in)
	row := p.kvh * p.hd
	bs := p.BlockSize
	cp := newKVCopy("kv_cache_append", 2*k.Dim(1)*row)
	defer cp.done()
	for i := range k.Dim(1) {
		at := c.n % bs
		if at == 0 {
			c.table = append(c.table, p.alloc())
		} else if last := c.table[len(c.table)-1]; p.refs[last] > 1 {
			id := p.alloc()
			cp.copy(p.k[id], 0, p.k[last], 0, at*row)
			cp.copy(p.v[id], 0, p.v[last], 0, at*row)
			p.drop(last)
			c.table[len(c.table)-1] = id
		}
		id := c.table[len(c.table)-1]
		cp.copy(p.k[id], at*row, k, i*row, row)
		cp.copy(p.v[id], at*row, v, i*row, row)
		c.n++
	}
}

// Spans lists one span per block.
func (c *PagedCache) Spans(int) []KVSpan {
	out := make([]KVSpan, 0, len(c.table))
	bs := c.Pool.BlockSize
	for i, id := range c.table {
		out = append(out, KVSpan{K: c.Pool.k[id], V: c.Pool.v[id], Pos: i * bs, Rows: min(bs, c.n-i*bs)})
	}
	return out
}

// Update appends and returns contiguous copies of the sequence's keys and values.
func (c *PagedCache) Update(k, v *autodiff.Tensor) (*autodiff.Tensor, *autodiff.Tensor) {
	c.Append(k, v)
	return gatherSpans(c, k.DType())
}

// Fork returns a new sequence sharing this one's blocks.
func (c *PagedCache) Fork() KVCache {
	for _, id := range c.table {
		c.Pool.refs[id]++
	}
	return &PagedCache{Pool: c.Pool, table: append([]int(nil), c.table...), n: c.n}
}

// Release gives the sequence's blocks back to the pool (those no other sequence
// holds become free; when none is held any more, the pool frees its storage);
// the cache is empty afterwards.
func (c *PagedCache) Release() {
	for _, id := range c.table {
		c.Pool.drop(id)
	}
	if len(c.table) > 0 && c.Pool.InUse() == 0 {
		c.Pool.Release()
	}
	c.table, c.n = nil, 0
}
