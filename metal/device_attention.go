package metal

import (
	"fmt"
	"math"
)

// Attention describes one flash-attention call, with the conventions of the CPU
// package attention: queries (Batch, QLen, QHeads, HeadDim) and keys (Batch, KLen,
// KVHeads, HeadDim), values and outputs with VDim for their last axis, in BSHD or
// BHSD as Layout says. Query head h reads key/value head h/(QHeads/KVHeads).
// Query i sits at position KLen − QLen + i; Causal attends keys j ≤ that position;
// Window W > 0 keeps the W most recent of those (causal) or keys with |p − j| < W
// (not causal). A row that sees no key outputs zeros and has log-sum-exp −Inf.
type Attention struct {
	Batch, QLen, KLen, QHeads, KVHeads, HeadDim, VDim int
	Scale                                             float32 // multiplies q·k; 0 means 1/√HeadDim
	Causal                                            bool
	Window                                            int
	Layout                                            AttentionLayout
}

func init() {
	// Generation's decode path (package attention): attention over a KV cache
	// (rows = batch·heads·queries, keys) as flash attention; the caches'
	// appends and gathers (elements) as copies. Estimates, like the rest.
	Tunings["span_attention"] = Tuning{0: {64, 64}, 9: {32, 32}}
	Tunings["kv_cache_copy"] = Tuning{0: {1 << 15}, 9: {1 << 14}}
}

// AttentionMaxHeadDim is the largest HeadDim and VDim the kernels take.
const AttentionMaxHeadDim = 128

type attnParams struct {
	Batch, QLen, KLen, QHeads, KVHeads, Dim, VDim, Causal, Window uint32
	Scale                                                         float32
	QB, QS, QH, KB, KS, KH, VB, VS, VH, OB, OS, OH                uint32
}

// Attention kernel tiles (attention.metal): rows or keys per threadgroup.
const (
	attnThreads = 128
	attnFwdQ    = 16
	attnKVK     = 16
	attnDQQ     = 16
)

func (a Attention) strides(seq, heads, dim int) (b, s, h uint32) {
	if a.Layout == LayoutBHSD {
		return uint32(heads * seq * dim), uint32(dim), uint32(seq * dim)
	}
	return uint32(seq * heads * dim), uint32(heads * dim), uint32(dim)
}

// sizes returns the elements of q, k, v and out, and of lse.
func (a Attention) sizes() (q, k, v, o, rows int) {
	nq, nk := a.Batch*a.QLen*a.QHeads, a.Batch*a.KLen*a.KVHeads
	return nq * a.HeadDim, nk * a.HeadDim, nk * a.VDim, nq * a.VDim, nq
}

func (a Attention) params(kernel string) (attnParams, error) {
	if err := checkCount(kernel, a.Batch, a.QLen, a.QHeads, max(a.HeadDim, a.VDim)); err != nil {
		return attnParams{}, err
	}
	if err := checkCount(kernel, a.Batch, a.KLen, a.KVHeads, max(a.HeadDim, a.VDim)); err != nil {
		return attnParams{}, err
	}
	switch {
	case a.KVHeads <= 0 && a.QHeads > 0 || a.KVHeads > 0 && a.QHeads%a.KVHeads != 0:
		return attnParams{}, fmt.Errorf("%s: %d query heads for %d key/value heads", kernel, a.QHeads, a.KVHeads)
	case a.HeadDim > AttentionMaxHeadDim || a.VDim > AttentionMaxHeadDim:
		return attnParams{}, fmt.Errorf("%s: head dims %d and %d, the kernels take at most %d", kernel, a.HeadDim, a.VDim, AttentionMaxHeadDim)
	case a.Window < 0:
		return attnParams{}, fmt.Errorf("%s: window %d", kernel, a.Window)
	case a.Layout > LayoutBHSD:
		return attnParams{}, fmt.Errorf("%s: unknown layout %d", kernel, a.Layout)
	}
	scale := a.Scale
	if scale == 0 && a.HeadDim > 0 {
		scale = float32(1 / math.Sqrt(float64(a.HeadDim)))
	}
	if math.IsNaN(float64(scale)) || math.IsInf(float64(scale), 0) {
		return attnParams{}, fmt.Errorf("%s: scale %g", kernel, scale)
	}
	p := attnParams{
		Batch: uint32(a.Batch), QLen: uint32(a.QLen), KLen: uint32(a.KLen), QHeads: uint32(a.QHeads),
		KVHeads: uint32(max(a.KVHeads, 1)), Dim: uint32(a.HeadDim), VDim: uint32(a.VDim),
		Window: uint32(a.Window), Scale: scale,
	}
	if a.Causal {
		p.Causal = 1
	}
	p.QB, p.QS, p.QH = a.strides(a.QLen, a.QHeads, a.HeadDim)
	p.KB, p.KS, p.KH = a.strides(a.KLen, a.KVHeads, a.HeadDim)
	p.VB, p.VS, p.VH = a.strides(a.KLen, a.KVHeads, a.VDim)
	p.OB, p.OS, p.OH = a.strides(a.QLen, a.QHeads, a.VDim)
	return p, nil
}

// RunFlashAttention writes out = softmax(scale·q·kᵀ + mask)·v and, per query row,
// lse (Batch, QHeads, QLen) = the log-sum-exp of its scaled, masked scores, which
// [RunFlashAttentionBackward] needs. One launch (flash_fwd_f32, a group per 16
// query rows of a head); memory beyond the inputs and outputs is O(1).
func RunFlashAttention(d Compute, out, lse, q, k, v *Buffer, a Attention) error {
	return runFlash(d, out, lse, q, k, v, a, 0, 0)
}

// RunFlashAttentionKV is [RunFlashAttention] (layout BSHD, VDim = HeadDim) on
// keys and values read in place from a KV cache's storage: row b's KLen keys
// and values start at element kvOff + b·kvStride of k and v, kvStride ≥
// KLen·KVHeads·HeadDim (the cache's capacity may exceed KLen).
func RunFlashAttentionKV(d Compute, out, lse, q, k, v *Buffer, a Attention, kvOff, kvStride int) error {
	if a.Layout != LayoutBSHD || a.VDim != a.HeadDim || kvOff < 0 || kvStride < a.KLen*a.KVHeads*a.HeadDim {
		return fmt.Errorf("flash_fwd_f32: cache rows %d apart from %d for %d keys of %d×%d (layout %d, value dim %d)", kvStride, kvOff, a.KLen, a.KVHeads, a.HeadDim, a.Layout, a.VDim)
	}
	return runFlash(d, out, lse, q, k, v, a, kvOff, kvStride)
}

// runFlash is RunFlashAttention, with k and v rows kvStride elements apart
// from kvOff on when kvStride > 0.
func runFlash(d Compute, out, lse, q, k, v *Buffer, a Attention, kvOff, kvStride int) error {
	const kernel = "flash_fwd_f32"
	p, err := a.params(kernel)
	if err != nil {
		return err
	}
	nq, nk, nv, no, rows := a.sizes()
	if kvStride > 0 && a.Batch > 0 {
		p.KB, p.VB = uint32(kvStride), uint32(kvStride)
		nk = kvOff + (a.Batch-1)*kvStride + a.KLen*a.KVHeads*a.HeadDim
		nv = nk
	}
	if err := checkBuffers(kernel, need{"out", out, no, false}, need{"lse", lse, rows, false},
		need{"q", q, nq, false}, need{"k", k, nk, false}, need{"v", v, nv, false}); err != nil {
		return err
	}
	if rows == 0 {
		return nil
	}
	return d.Dispatch(&Launch{
		Kernel:  kernel,
		Groups:  [3]int{groupsFor(a.QLen, attnFwdQ), a.QHeads, a.Batch},
		Threads: [3]int{attnThreads, 1, 1},
		Args:    []Arg{Out(0, out), Out(1, lse), In(2, q), at(In(3, k), kvOff), at(In(4, v), kvOff), Params(5, p)},
	})
}

// RunFlashAttentionBackward writes dq, dk and dv, the gradients of
// [RunFlashAttention] for the upstream gradient dout, from its inputs, its output
// out and its lse. Three launches: flash_bwd_delta_f32 (delta = rowsum(dout∘out)
// into a scratch buffer of one float per query row), then flash_bwd_dkdv_f32 (a
// group per 16 keys of a key/value head, over the query heads that share it and
// the query rows that see the keys) and flash_bwd_dq_f32 (a group per 16 query
// rows, over the keys they see), both recomputing the probabilities from q, k and
// lse. Every sum has one owner: no atomics, the same bits on every run.
func RunFlashAttentionBackward(d Compute, dq, dk, dv, q, k, v, out, dout, lse *Buffer, a Attention) error {
	const kernel = "flash_bwd_f32"
	p, err := a.params(kernel)
	if err != nil {
		return err
	}
	nq, nk, nv, no, rows := a.sizes()
	if err := checkBuffers(kernel, need{"dq", dq, nq, false}, need{"dk", dk, nk, false}, need{"dv", dv, nv, false},
		need{"q", q, nq, false}, need{"k", k, nk, false}, need{"v", v, nv, false},
		need{"out", out, no, false}, need{"dout", dout, no, false}, need{"lse", lse, rows, false}); err != nil {
		return err
	}
	keyRows := a.Batch * a.KLen * a.KVHeads
	if rows == 0 && keyRows == 0 {
		return nil
	}
	if rows == 0 {
		// no query: the key gradients are zero
		if err := zeroFill(d, dk, nk, k); err != nil {
			return err
		}
		return zeroFill(d, dv, nv, k)
	}
	delta, err := d.NewBuffer(4 * rows)
	if err != nil {
		return fmt.Errorf("%s: scratch: %w", kernel, err)
	}
	defer delta.Release()
	err = d.Dispatch(&Launch{
		Kernel:  "flash_bwd_delta_f32",
		Groups:  [3]int{groupsFor(rows, 8), 1, 1},
		Threads: [3]int{256, 1, 1},
		Args:    []Arg{Out(0, delta), In(1, out), In(2, dout), Params(3, p)},
	})
	if err != nil {
		return err
	}
	if keyRows > 0 {
		err = d.Dispatch(&Launch{
			Kernel:  "flash_bwd_dkdv_f32",
			Groups:  [3]int{groupsFor(a.KLen, attnKVK), a.KVHeads, a.Batch},
			Threads: [3]int{attnThreads, 1, 1},
			Args: []Arg{Out(0, dk), Out(1, dv), In(2, q), In(3, k), In(4, v), In(5, dout), In(6, lse), In(7, delta),
				Params(8, p)},
		})
		if err != nil {
			return err
		}
	}
	return d.Dispatch(&Launch{
		Kernel:  "flash_bwd_dq_f32",
		Groups:  [3]int{groupsFor(a.QLen, attnDQQ), a.QHeads, a.Batch},
		Threads: [3]int{attnThreads, 1, 1},
		Args:    []Arg{Out(0, dq), In(1, q), In(2, k), In(3, v), In(4, dout), In(5, lse), In(6, delta), Params(7, p)},
	})
}

// zeroFill writes zeros to the first n floats of dst: reduce_cols_f32 summing
// zero rows, with src (not read) bound as its input.
func zeroFill(d Compute, dst *Buffer, n int, src *Buffer) error {
	if n == 0 {
		return nil
	}
	return reduceColsPass(d, 0, 1, dst, src, 0, 1, n)
}
