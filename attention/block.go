package attention

import (
	"fmt"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/layers"
)

// BlockConfig describes an attention block. Heads·HeadDim is the width of the
// queries and of the output projection's input; KVHeads·HeadDim that of the keys
// and values.
type BlockConfig struct {
	Dim     int // model width: the input and output of the block
	Heads   int // query heads
	KVHeads int // key/value heads; 0 means Heads. Must divide Heads (GQA, MQA).
	HeadDim int // 0 means Dim/Heads

	QKVBias bool // biases on q_proj, k_proj and v_proj
	OutBias bool // bias on o_proj

	// RoPE rotates queries and keys by their positions when not nil (its Offset
	// and Layout are ignored: the block sets them). Nil means no rotary
	// embeddings (learned or no positions).
	RoPE *RoPEOptions

	Causal bool
	Window int // sliding window in keys (see Options); 0 means none

	Init    layers.Init // q, k and v projections
	OutInit layers.Init // o_proj (GPT-2 scales it down with the depth)
}

// Block is multi-head attention with grouped-query heads: llama's self_attn with
// q_proj, k_proj, v_proj and o_proj. Key/value heads are never expanded: query
// head h reads key/value head h/(Heads/KVHeads) inside the attention kernel.
//
// The kernel is [FlashAttention], except in float32 from 16 queries on: then the
// block runs the same flash algorithm with its tile products on an AVX2 strip
// kernel (see block_kernels.go), and in training and prefill (no cache, no LoRA on
// q, k, v) projects q, k and v with one matrix product into a packed tensor that
// RoPE and the kernels read in place, so the backward returns one packed gradient.
type Block struct {
	Q, K, V, O *layers.Linear

	Heads, KVHeads, HeadDim int
	RoPE                    *RoPEOptions
	Causal                  bool
	Window                  int
}

// NewBlock builds an attention block of float dtype with weights drawn from rng.
// A bad configuration is a programmer error and panics (models validate configs
// from users before they reach here).
func NewBlock(rng *autodiff.RNG, dtype autodiff.DType, cfg BlockConfig) *Block {
	kv := cfg.KVHeads
	if kv == 0 {
		kv = cfg.Heads
	}
	hd := cfg.HeadDim
	if hd == 0 && cfg.Heads > 0 {
		hd = cfg.Dim / cfg.Heads
	}
	switch {
	case cfg.Dim <= 0 || cfg.Heads <= 0 || hd <= 0:
		panic(fmt.Sprintf("attention: NewBlock: dim %d, %d heads, head dim %d", cfg.Dim, cfg.Heads, hd))
	case kv <= 0 || cfg.Heads%kv != 0:
		panic(fmt.Sprintf("attention: NewBlock: %d key/value heads do not divide %d heads", kv, cfg.Heads))
	case cfg.RoPE != nil && cfg.RoPE.rotated(hd)%2 != 0:
		panic(fmt.Sprintf("attention: NewBlock: RoPE over %d dims of a head of %d: want an even count", cfg.RoPE.rotated(hd), hd))
	case cfg.Window < 0:
		panic(fmt.Sprintf("attention: NewBlock: window %d", cfg.Window))
	}
	b := &Block{
		Q:       layers.NewLinear(rng, dtype, cfg.Dim, cfg.Heads*hd, cfg.QKVBias, cfg.Init),
		K:       layers.NewLinear(rng, dtype, cfg.Dim, kv*hd, cfg.QKVBias, cfg.Init),
		V:       layers.NewLinear(rng, dtype, cfg.Dim, kv*hd, cfg.QKVBias, cfg.Init),
		O:       layers.NewLinear(rng, dtype, cfg.Heads*hd, cfg.Dim, cfg.OutBias, cfg.OutInit),
		Heads:   cfg.Heads,
		KVHeads: kv,
		HeadDim: hd,
		Causal:  cfg.Causal,
		Window:  cfg.Window,
	}
	if cfg.RoPE != nil {
		r := *cfg.RoPE
		b.RoPE = &r
	}
	return b
}

// Params lists q_proj, k_proj, v_proj and o_proj (weight, then bias) in that order.
func (b *Block) Params(prefix string) []autodiff.Param {
	var ps []autodiff.Param
	for _, nl := range b.Linears(prefix) {
		ps = append(ps, nl.Linear.Params(nl.Name+".")...)
	}
	return ps
}

// Linears lists the four projections by name, for LoRA.
func (b *Block) Linears(prefix string) []layers.NamedLinear {
	return []layers.NamedLinear{
		{Name: prefix + "q_proj", Linear: b.Q},
		{Name: prefix + "k_proj", Linear: b.K},
		{Name: prefix + "v_proj", Linear: b.V},
		{Name: prefix + "o_proj", Linear: b.O},
	}
}

// Forward applies the block to x (batch, seq, dim). With cache nil (training, or
// a whole sequence at once) the tokens sit at positions 0…seq−1. With a cache the
// tokens continue the cached ones: their positions start at cache.Offset(), their
// keys and values are appended to it, and the queries attend every cached key the
// masks allow.
func (b *Block) Forward(c *layers.Ctx, x *autodiff.Tensor, cache KVCache) *autodiff.Tensor {
	return b.O.Forward(c, b.Attend(c, x, cache))
}

// Attend is Forward without the output projection: the attention output of every
// head, (batch, seq, heads·head_dim), which o_proj maps back to the model width.
// A caller fusing o_proj with what follows (a residual addition) starts here.
func (b *Block) Attend(c *layers.Ctx, x *autodiff.Tensor, cache KVCache) *autodiff.Tensor {
	if x.Rank() != 3 || x.Dim(2) != b.Q.In() {
		panic(fmt.Sprintf("attention: Block.Forward: input %v for a block of width %d", x.Shape(), b.Q.In()))
	}
	bs, t := x.Dim(0), x.Dim(1)
	onDevice := packedOp.OnMetal(bs * t) // a device runs the parts, each with its kernel
	if !onDevice && cache == nil && x.DType() == autodiff.Float32 && t >= tiledMinRows && b.Q.LoRA == nil && b.K.LoRA == nil && b.V.LoRA == nil && b.Q.Packed == nil && b.K.Packed == nil && b.V.Packed == nil &&
		(b.Q.Bias == nil) == (b.K.Bias == nil) && (b.Q.Bias == nil) == (b.V.Bias == nil) {
		return b.attendPacked(c, x)
	}
	q := autodiff.Reshape(b.Q.Forward(c, x), bs, t, b.Heads, b.HeadDim)
	k := autodiff.Reshape(b.K.Forward(c, x), bs, t, b.KVHeads, b.HeadDim)
	v := autodiff.Reshape(b.V.Forward(c, x), bs, t, b.KVHeads, b.HeadDim)
	if sc, ok := cache.(SpanCache); ok {
		return autodiff.Reshape(b.attendSpans(q, k, v, sc), bs, t, b.Heads*b.HeadDim)
	}
	offset := 0
	if cache != nil {
		offset = cache.Offset()
	}
	if b.RoPE != nil {
		ro := *b.RoPE
		ro.Offset, ro.Layout = offset, BSHD
		q, k = RoPE(q, ro), RoPE(k, ro)
	}
	if cache != nil {
		k, v = cache.Update(k, v)
	}
	opt := Options{Causal: b.Causal, Window: b.Window, Layout: BSHD}
	var o *autodiff.Tensor
	if !onDevice && q.DType() == autodiff.Float32 && t >= tiledMinRows {
		o = tiledAttention(q, k, v, opt)
	} else {
		o = FlashAttention(q, k, v, opt)
	}
	return autodiff.Reshape(o, bs, t, b.Heads*b.HeadDim)
}

// attendSpans is Attend's attention with a [SpanCache]: RoPE at each row's own
// offset, the new keys and values appended, and the queries attending the cache
// in place (a long chunk of a row of consecutive positions goes through the
// tiled kernels on a gathered copy instead).
func (b *Block) attendSpans(q, k, v *autodiff.Tensor, cache SpanCache) *autodiff.Tensor {
	offs := offsetsOf(cache, q.Dim(0))
	same := true
	for _, o := range offs {
		same = same && o == offs[0]
	}
	if b.RoPE != nil {
		ro := *b.RoPE
		ro.Layout = BSHD
		if same {
			ro.Offset = offs[0]
			q, k = RoPE(q, ro), RoPE(k, ro)
		} else {
			q, k = ropeRows(q, ro, offs), ropeRows(k, ro, offs)
		}
	}
	cache.Append(k, v)
	opt := Options{Causal: b.Causal, Window: b.Window, Layout: BSHD}
	if same && q.DType() == autodiff.Float32 && q.Dim(1) >= tiledMinRows && consecutive(cache) {
		keys, values := gatherSpans(cache, q.DType())
		var o *autodiff.Tensor
		if packedOp.OnMetal(q.Dim(0) * q.Dim(1)) { // a device runs FlashAttention's kernel
			o = FlashAttention(q, keys, values, opt)
		} else {
			o = tiledAttention(q, keys, values, opt)
		}
		keys.Release()
		values.Release()
		return o
	}
	return SpanAttention(q, cache, offs, opt)
}

// consecutive reports whether every row's spans hold consecutive positions
// ending at the same one (so relative positions in a gathered copy are right).
func consecutive(c SpanCache) bool {
	end := -1
	for b := range c.Rows() {
		next := -1
		for _, s := range c.Spans(b) {
			if next >= 0 && s.Pos != next {
				return false
			}
			next = s.Pos + s.Rows
		}
		if end >= 0 && next != end {
			return false
		}
		end = next
	}
	return true
}

// ropeRows is RoPE (untracked) with row b of x (batch, n, heads, head dim)
// starting at position offs[b].
func ropeRows(x *autodiff.Tensor, opt RoPEOptions, offs []int) *autodiff.Tensor {
	out := autodiff.Empty(x.DType(), x.Shape()...)
	n, h, d := x.Dim(1), x.Dim(2), x.Dim(3)
	per := n * h * d
	for b, o := range offs {
		ro := opt
		ro.Offset = o
		if x.DType() == autodiff.Float32 {
			RoPEForward(out.Float32s()[b*per:(b+1)*per], x.Float32s()[b*per:(b+1)*per], 1, n, h, d, ro)
		} else {
			RoPEForward(out.Float64s()[b*per:(b+1)*per], x.Float64s()[b*per:(b+1)*per], 1, n, h, d, ro)
		}
	}
	return out
}

// attendPacked is Attend for float32 training and prefill: q, k and v in one
// packed tensor (see projectQKV).
func (b *Block) attendPacked(c *layers.Ctx, x *autodiff.Tensor) *autodiff.Tensor {
	bs, t := x.Dim(0), x.Dim(1)
	qkv := projectQKV(x, c.Param(b.Q.Weight), c.Param(b.K.Weight), c.Param(b.V.Weight), c.Param(b.Q.Bias), c.Param(b.K.Bias), c.Param(b.V.Bias))
	// Without a tape nothing keeps the intermediates: give them back now
	// (prefill, and the forward run of a checkpointed layer).
	untracked := qkv.Tape() == nil
	if b.RoPE != nil {
		r := ropePacked(qkv, b.Heads+b.KVHeads, b.HeadDim, *b.RoPE)
		if untracked {
			qkv.Release()
		}
		qkv = r
	}
	o := packedAttention(qkv, b.Heads, b.KVHeads, b.HeadDim, Options{Causal: b.Causal, Window: b.Window})
	y := autodiff.Reshape(o, bs, t, b.Heads*b.HeadDim)
	if untracked {
		qkv.Release()
		o.Release() // y shares its storage
	}
	return y
}

// tiledMinRows is the query count from which the block runs the float32 tiled
// kernels: a decoding step (one query) gains nothing from tile products.
const tiledMinRows = 16

// KVCache keeps the keys and values of the tokens an attention block has seen, so
// generation feeds only the new tokens. Keys and values are BSHD: (batch, seq,
// key/value heads, head dim), keys after RoPE.
type KVCache interface {
	// Offset is the number of positions cached: the position of the next token.
	Offset() int
	// Update appends k and v (batch, n, kv heads, head dim) at positions
	// [Offset, Offset+n) and returns the keys and values of every cached position,
	// (batch, Offset+n, kv heads, head dim), or of the last ones it keeps (a
	// [RotatingCache]), oldest first. What it returns stays valid until the next
	// Update; it does not record on any tape. Caches that also implement
	// [SpanCache] are read in place by the block instead.
	Update(k, v *autodiff.Tensor) (keys, values *autodiff.Tensor)
}

// ConcatCache is the simplest KVCache: it holds every key and value in one
// tensor each and copies them into larger ones as tokens arrive (quadratic copying
// over a long generation). Generation uses the caches of kvcache.go instead
// ([GrowingCache], [RotatingCache], [PagedCache]), which the block reads in place.
type ConcatCache struct {
	k, v *autodiff.Tensor
}

// Offset is the number of cached positions.
func (c *ConcatCache) Offset() int {
	if c.k == nil {
		return 0
	}
	return c.k.Dim(1)
}

// Update appends k and v and returns the whole cache.
func (c *ConcatCache) Update(k, v *autodiff.Tensor) (*autodiff.Tensor, *autodiff.Tensor) {
	if c.k != nil && (k.Rank() != 4 || v.Rank() != 4 || k.Dim(0) != c.k.Dim(0) || k.Dim(2) != c.k.Dim(2) || k.Dim(3) != c.k.Dim(3) ||
		v.Dim(0) != c.v.Dim(0) || v.Dim(2) != c.v.Dim(2) || v.Dim(3) != c.v.Dim(3) || k.DType() != c.k.DType() || v.DType() != c.v.DType()) {
		panic(fmt.Sprintf("attention: ConcatCache.Update: k %s %v, v %s %v for a cache of %v and %v", k.DType(), k.Shape(), v.DType(), v.Shape(), c.k.Shape(), c.v.Shape()))
	}
	c.k, c.v = appendSeq(c.k, k), appendSeq(c.v, v)
	return c.k, c.v
}

// Reset empties the cache and frees its storage.
func (c *ConcatCache) Reset() {
	if c.k != nil {
		c.k.Release()
		c.v.Release()
	}
	c.k, c.v = nil, nil
}

// appendSeq returns old followed by x along axis 1 in a new untracked tensor and
// frees old; x's storage is only read.
func appendSeq(old, x *autodiff.Tensor) *autodiff.Tensor {
	b, n, row := x.Dim(0), x.Dim(1), x.Dim(2)*x.Dim(3)
	have := 0
	if old != nil {
		have = old.Dim(1)
	}
	out := autodiff.Empty(x.DType(), b, have+n, x.Dim(2), x.Dim(3))
	size := x.DType().Size()
	dst, src := out.Bytes(), x.Bytes()
	for i := range b {
		o := dst[i*(have+n)*row*size:]
		if old != nil {
			copy(o, old.Bytes()[i*have*row*size:(i+1)*have*row*size])
		}
		copy(o[have*row*size:], src[i*n*row*size:(i+1)*n*row*size])
	}
	if old != nil {
		old.Release()
	}
	return out
}
