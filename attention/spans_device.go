package attention

import (
	"errors"
	"time"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// Generation's decode path on a device: [SpanAttention] runs flash attention's
// kernel on the cache's storage (in place when each row is one span of one
// buffer, as in a GrowingCache; on a gathered copy otherwise), and the caches'
// appends and gathers copy on the device (copy_strided_u32) when their tensors
// live there. Thresholds: metal.Tunings.
var (
	// "span_attention" (rows = batch·heads·queries, keys): SpanAttention.
	spanOp *metal.Op
	// "kv_cache_copy" (elements): a cache's append ("kv_cache_append") and its
	// gather into contiguous tensors ("kv_cache_gather"). The copy kernel has
	// the self-test of the "copy" op.
	kvCopyOp = metal.Kernels.Register("kv_cache_copy", []string{"elements"},
		metal.DeviceImpl("kv_cache_copy", nil), &metal.Impl{Path: metal.PathGo})
)

func init() {
	spanOp = metal.Kernels.Register("span_attention", []string{"rows", "keys"},
		metal.DeviceImpl("span_attention", spanSelfTest), &metal.Impl{Path: metal.PathGo})
}

// kvCopy copies runs of elements between a KV cache's tensors for one op: on
// the device when kvCopyOp picks it for the op's elements and both tensors
// live there in float32, else on the CPU ([copyElems]); done records one
// profile entry.
type kvCopy struct {
	op    string
	elems int
	start time.Time
	path  metal.Path
	bytes int64
}

func newKVCopy(op string, elems int) *kvCopy {
	c := &kvCopy{op: op, elems: elems, path: metal.PathMetal}
	if metal.Profiling() {
		c.start = time.Now()
	}
	return c
}

func (c *kvCopy) copy(dst *autodiff.Tensor, do int, src *autodiff.Tensor, so, n int) {
	if n == 0 {
		return
	}
	c.bytes += int64(n * (dst.DType().Size() + src.DType().Size()))
	if dst.DType() == autodiff.Float32 && src.DType() == autodiff.Float32 {
		dev := autodiff.DeviceFor(kvCopyOp, []*autodiff.Tensor{dst, src}, c.elems)
		if dev != nil && autodiff.Launched(c.op, metal.RunCopy(dev, dst.Buffer(), src.Buffer(), []int{n}, []int{1}, []int{1}, do, so, metal.ReadWrite)) {
			return
		}
	}
	c.path = metal.PathGo
	copyElems(dst, do, src, so, n)
}

func (c *kvCopy) done() {
	if !c.start.IsZero() && c.bytes > 0 {
		metal.RecordOp(c.op, c.path, time.Since(c.start), c.bytes)
	}
}

// spanAttentionDevice is SpanAttention on the device, or nil when the CPU runs
// it: float32 queries and storage, every row at the same offset, its cached
// positions consecutive and ending with the queries'.
func spanAttentionDevice(q *autodiff.Tensor, cache SpanCache, offsets []int, opt Options) *autodiff.Tensor {
	a, ts, ok := spanDims(q, cache, offsets, opt)
	if !ok {
		return nil
	}
	dev := autodiff.DeviceFor(spanOp, ts, a.Batch*a.QHeads*a.QLen, a.KLen)
	if dev == nil {
		return nil
	}
	out := autodiff.Empty(autodiff.Float32, q.Shape()...)
	if !autodiff.Launched("span_attention", runSpanAttention(dev, out, q, cache, a)) {
		out.Release()
		return nil
	}
	return out
}

// spanDims is the flash-attention call of SpanAttention on the device and the
// tensors it reads; false when the device cannot run it.
func spanDims(q *autodiff.Tensor, cache SpanCache, offsets []int, opt Options) (metal.Attention, []*autodiff.Tensor, bool) {
	B, n, H, D := q.Dim(0), q.Dim(1), q.Dim(2), q.Dim(3)
	if q.DType() != autodiff.Float32 || B == 0 || n == 0 || !consecutive(cache) {
		return metal.Attention{}, nil, false
	}
	ts := []*autodiff.Tensor{q}
	first, kvh, klen := -1, 0, 0
	for b := range B {
		if offsets[b] != offsets[0] {
			return metal.Attention{}, nil, false
		}
		for _, s := range cache.Spans(b) {
			if s.K.DType() != autodiff.Float32 || s.V.DType() != autodiff.Float32 || s.K.Dim(-1) != D {
				return metal.Attention{}, nil, false
			}
			if first < 0 {
				first, kvh = s.Pos, s.K.Dim(-2)
			}
			if b == 0 {
				klen += s.Rows
			}
			ts = append(ts, s.K, s.V)
		}
	}
	if klen == 0 || first+klen != offsets[0]+n || kvh == 0 || H%kvh != 0 || D > metal.AttentionMaxHeadDim {
		return metal.Attention{}, nil, false
	}
	return Dims{Batch: B, QLen: n, KLen: klen, QHeads: H, KVHeads: kvh, HeadDim: D, VDim: D}.device(opt), ts, true
}

// runSpanAttention records a's flash attention of q over the cache into out:
// on the cache's storage in place when it can, else on a gathered copy.
func runSpanAttention(dev metal.Compute, out, q *autodiff.Tensor, cache SpanCache, a metal.Attention) error {
	lse := autodiff.Empty(autodiff.Float32, a.Batch*a.QHeads*a.QLen)
	defer lse.Release() // back to the pool once the launch is done
	if k, v, off, stride, ok := inPlace(cache, a.Batch, a.KLen*a.KVHeads*a.HeadDim); ok {
		return metal.RunFlashAttentionKV(dev, out.Buffer(), lse.Buffer(), q.Buffer(), k.Buffer(), v.Buffer(), a, off, stride)
	}
	keys, values := gatherSpans(cache, autodiff.Float32)
	defer keys.Release()
	defer values.Release()
	return metal.RunFlashAttention(dev, out.Buffer(), lse.Buffer(), q.Buffer(), keys.Buffer(), values.Buffer(), a)
}

// inPlace reports whether each of the rows rows of c is one span of the same
// key and value storage, the rows stride elements apart from off on (stride
// at least a row's span of elems).
func inPlace(c SpanCache, rows, elems int) (k, v *autodiff.Tensor, off, stride int, ok bool) {
	for b := range rows {
		s := c.Spans(b)
		if len(s) != 1 {
			return nil, nil, 0, 0, false
		}
		switch b {
		case 0:
			k, v, off, stride = s[0].K, s[0].V, s[0].Off, elems
		case 1:
			stride = s[0].Off - off
		}
		if s[0].K != k || s[0].V != v || s[0].Off != off+b*stride || stride < elems {
			return nil, nil, 0, 0, false
		}
	}
	return k, v, off, stride, true
}

// spanSelfTest compares SpanAttention's device path with the CPU on a
// GrowingCache of 2 rows (read in place) and a paged cache of 3 blocks (a
// gathered copy), 3 queries each, 4 query heads on 2 key/value heads.
func spanSelfTest() error {
	return autodiff.DeviceSelfTest(func(dev metal.Compute) ([]*autodiff.Tensor, error) {
		r := autodiff.SelfTestRand()
		opt := Options{Causal: true, Layout: BSHD}
		var outs []*autodiff.Tensor
		var err error
		for _, rows := range []int{2, 1} {
			k, v := autodiff.RandomTensor(r, -1, 1, rows, 9, 2, 16), autodiff.RandomTensor(r, -1, 1, rows, 9, 2, 16)
			q := autodiff.RandomTensor(r, -1, 1, rows, 3, 4, 16)
			var cache SpanCache = &GrowingCache{}
			pool := &BlockPool{BlockSize: 4}
			if rows == 1 {
				cache = NewPagedCache(pool)
			}
			cache.Append(k, v)
			offs := []int{6, 6}[:rows]
			out := autodiff.Empty(autodiff.Float32, q.Shape()...)
			a, _, ok := spanDims(q, cache, offs, opt)
			switch {
			case dev == nil:
				spanAttend(out.Float32s(), q.Float32s(), q, cache, offs, opt, (*autodiff.Tensor).Float32s)
			case !ok:
				return append(outs, out), errors.New("span_attention: the cache does not take the device path")
			default:
				err = runSpanAttention(dev, out, q, cache, a)
			}
			outs = append(outs, out)
			if dev != nil && err == nil {
				err = dev.Synchronize()
			}
			cache.(interface{ Release() }).Release()
			pool.Release()
			for _, t := range []*autodiff.Tensor{k, v, q} {
				t.Release()
			}
			if err != nil {
				return outs, err
			}
		}
		return outs, nil
	})()
}
