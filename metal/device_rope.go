package metal

import (
	"fmt"
	"math"
)

// AttentionLayout is the order of the axes of attention tensors; the head dim is
// last and contiguous in both.
type AttentionLayout uint8

// The layouts.
const (
	LayoutBSHD AttentionLayout = iota // (batch, seq, heads, head_dim)
	LayoutBHSD                        // (batch, heads, seq, head_dim)
)

// RoPEConfig configures [RunRoPE] as attention.RoPEOptions does the CPU kernel:
// pair i (0 ≤ i < R/2) of the token at position p = Offset + s turns by the angle
// p·Scale·Base^(−2i/R), the pair being (x[i], x[i+R/2]) or, Interleaved,
// (x[2i], x[2i+1]); dims from R on pass through.
type RoPEConfig struct {
	Base        float64 // 0 means 10000
	Dims        int     // R, even; 0 means the head dim
	Interleaved bool
	Offset      int
	Scale       float64 // 0 means 1
	Layout      AttentionLayout
}

const ropeMaxPairs = 128

type ropeParams struct {
	Tokens, Seq, Heads, Dim, Rotated, Offset, SeqMajorHeads uint32
	Sign                                                    float32
	Freq                                                    [2 * ropeMaxPairs]float32
}

// RunRoPE writes x rotated by its positions to out (not x itself): both of shape
// (batch, seq, heads, headDim) in BSHD or (batch, heads, seq, headDim) in BHSD.
// One launch (rope_f32). Up to 256 rotated dims; positions below 2²⁴.
func RunRoPE(d Compute, out, x *Buffer, batch, seq, heads, headDim int, c RoPEConfig) error {
	return runRoPE(d, out, x, batch, seq, heads, headDim, c, 1)
}

// RunRoPEBackward writes the gradient of [RunRoPE]: dout rotated by the opposite
// angles. One launch.
func RunRoPEBackward(d Compute, dx, dout *Buffer, batch, seq, heads, headDim int, c RoPEConfig) error {
	return runRoPE(d, dx, dout, batch, seq, heads, headDim, c, -1)
}

func runRoPE(d Compute, out, x *Buffer, batch, seq, heads, headDim int, c RoPEConfig, sign float32) error {
	const kernel = "rope_f32"
	if err := checkCount(kernel, batch, seq, heads, headDim); err != nil {
		return err
	}
	r := c.Dims
	if r == 0 {
		r = headDim
	}
	base, scale := c.Base, c.Scale
	if base == 0 {
		base = 10000
	}
	if scale == 0 {
		scale = 1
	}
	switch {
	case r < 0 || r%2 != 0 || r > headDim:
		return fmt.Errorf("%s: %d rotated dims for a head dim of %d (want even, at most the head dim)", kernel, r, headDim)
	case r/2 > ropeMaxPairs:
		return fmt.Errorf("%s: %d rotated dims, the kernel takes at most %d", kernel, r, 2*ropeMaxPairs)
	case c.Offset < 0 || c.Offset+seq > 1<<24:
		return fmt.Errorf("%s: positions %d..%d outside [0, 2²⁴)", kernel, c.Offset, c.Offset+seq)
	case !(base > 0) || math.IsInf(base, 0) || math.IsNaN(scale) || math.IsInf(scale, 0):
		return fmt.Errorf("%s: base %g, scale %g", kernel, base, scale)
	}
	n := batch * seq * heads * headDim
	if err := checkBuffers(kernel, need{"out", out, n, false}, need{"x", x, n, false}); err != nil {
		return err
	}
	if out == x {
		return fmt.Errorf("%s: out and x are one buffer (the kernel does not run in place)", kernel)
	}
	if n == 0 {
		return nil
	}
	p := ropeParams{
		Tokens: uint32(batch * seq * heads), Seq: uint32(seq), Heads: uint32(heads), Dim: uint32(headDim),
		Rotated: uint32(r), Offset: uint32(c.Offset), Sign: sign,
	}
	if c.Layout == LayoutBSHD {
		p.SeqMajorHeads = 1
	}
	for i := 0; i < r/2; i++ {
		f := scale * math.Pow(base, -float64(2*i)/float64(r))
		hi := float32(f)
		p.Freq[2*i] = hi
		p.Freq[2*i+1] = float32(f - float64(hi))
	}
	threads := (r/2 + headDim - r) * batch * seq * heads
	return d.Dispatch(&Launch{
		Kernel:    kernel,
		Constants: []Constant{{Index: 0, Value: c.Interleaved}},
		Groups:    [3]int{groupsFor(threads, elementwiseGroup), 1, 1},
		Threads:   [3]int{elementwiseGroup, 1, 1},
		Args:      []Arg{Out(0, out), In(1, x), Params(2, p)},
	})
}
