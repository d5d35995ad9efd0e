package attention

import (
	"fmt"
	"math"
	"time"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// RoPEOptions configure rotary position embeddings. With R rotated dims, pair i
// (0 ≤ i < R/2) of the token at position p is rotated by the angle
// p·Scale·Base^(−2i/R):
//
//	(a, b) ↦ (a·cos − b·sin, a·sin + b·cos)
//
// where the pair is (x[i], x[i+R/2]) by default (Llama, GPT-NeoX, Hugging Face's
// rotate_half; mlx's traditional=false) or (x[2i], x[2i+1]) with Interleaved
// (GPT-J, the original paper; mlx's traditional=true). Dims from R to the head dim
// pass through unchanged. The zero value rotates every dim of BSHD tensors with
// base 10000 from position 0.
type RoPEOptions struct {
	Base        float64 // θ base; 0 means 10000
	Dims        int     // rotated leading dims of each head, even; 0 means the whole head
	Interleaved bool    // pairs (x[2i], x[2i+1]) instead of (x[i], x[i+R/2])
	Offset      int     // position of the first token (those already in a KV cache)
	Scale       float64 // multiplies positions (linear RoPE scaling); 0 means 1
	Layout      Layout  // BSHD (default) or BHSD; the position is the seq axis
}

func (o RoPEOptions) base() float64 {
	if o.Base == 0 {
		return 10000
	}
	return o.Base
}

func (o RoPEOptions) rotated(headDim int) int {
	r := o.Dims
	if r == 0 {
		r = headDim
	}
	return r
}

// RoPEForward writes x rotated by its positions into out (which may be x): both
// have shape (batch, seq, heads, headDim) in BSHD or (batch, heads, seq, headDim)
// in BHSD, as opt.Layout says.
func RoPEForward[T Float](out, x []T, batch, seq, heads, headDim int, opt RoPEOptions) {
	rope(out, x, batch, seq, heads, headDim, opt, 1)
}

// RoPEBackward is the gradient of [RoPEForward]: the rotation by the opposite
// angles (its transpose), written into dx (which may be dout).
func RoPEBackward[T Float](dx, dout []T, batch, seq, heads, headDim int, opt RoPEOptions) {
	rope(dx, dout, batch, seq, heads, headDim, opt, -1)
}

func rope[T Float](out, x []T, batch, seq, heads, headDim int, opt RoPEOptions, sign float64) {
	n := batch * seq * heads * headDim
	r := opt.rotated(headDim)
	if len(x) != n || len(out) != n || r%2 != 0 || r < 0 || r > headDim {
		panic(fmt.Sprintf("attention: RoPE: %d and %d elements for shape (%d,%d,%d,%d), %d rotated dims (want even, at most the head dim)", len(out), len(x), batch, seq, heads, headDim, r))
	}
	half := r / 2
	// cos and sin per (position, pair), computed in float64 once.
	cs := make([]T, 2*seq*half)
	scale := opt.Scale
	if scale == 0 {
		scale = 1
	}
	for i := range half {
		invFreq := math.Pow(opt.base(), -float64(2*i)/float64(r))
		for s := range seq {
			a := float64(opt.Offset+s) * scale * invFreq
			cs[2*(s*half+i)] = T(math.Cos(a))
			cs[2*(s*half+i)+1] = T(sign * math.Sin(a))
		}
	}
	v := opt.Layout.view(seq, heads, headDim)
	metal.ParallelFor(batch*seq*heads, 2048/max(headDim, 1)+1, func(lo, hi int) {
		for u := lo; u < hi; u++ {
			b, s, h := u/(seq*heads), (u/heads)%seq, u%heads
			o := v.at(b, s, h)
			xs, os := x[o:o+headDim], out[o:o+headDim]
			c := cs[2*s*half : 2*(s+1)*half]
			if opt.Interleaved {
				for i := range half {
					cos, sin := c[2*i], c[2*i+1]
					x0, x1 := xs[2*i], xs[2*i+1]
					os[2*i], os[2*i+1] = x0*cos-x1*sin, x0*sin+x1*cos
				}
			} else {
				x0s, x1s := xs[:half], xs[half:r]
				o0s, o1s := os[:half], os[half:r]
				for i := range half {
					cos, sin := c[2*i], c[2*i+1]
					x0, x1 := x0s[i], x1s[i]
					o0s[i], o1s[i] = x0*cos-x1*sin, x0*sin+x1*cos
				}
			}
			if r < headDim {
				copy(os[r:], xs[r:]) // a no-op when out is x
			}
		}
	})
}

// RoPE applies rotary position embeddings to x, a (float32 or float64) tensor of
// shape (batch, seq, heads, head_dim) in BSHD or (batch, heads, seq, head_dim) in
// BHSD, as a differentiable op (see [RoPEOptions]).
func RoPE(x *autodiff.Tensor, opt RoPEOptions) *autodiff.Tensor {
	shape := x.Shape()
	if len(shape) != 4 || !x.DType().IsFloat() {
		panic(fmt.Sprintf("attention: RoPE: want a rank-4 float32 or float64 tensor, have %s %v", x.DType(), shape))
	}
	b, s, h, d := shape[0], shape[1], shape[2], shape[3]
	if opt.Layout == BHSD {
		s, h = h, s
	}
	if r := opt.rotated(d); r%2 != 0 || r < 0 || r > d {
		panic(fmt.Sprintf("attention: RoPE: %d rotated dims for a head dim of %d in %v (want even, at most the head dim)", r, d, shape))
	}
	if out := ropeOnDevice(x, b, s, h, d, opt); out != nil {
		return out
	}
	var start time.Time
	if metal.Profiling() {
		start = time.Now()
	}
	out := autodiff.Empty(x.DType(), shape...)
	apply := func(dst, src *autodiff.Tensor, sign float64) {
		if src.DType() == autodiff.Float32 {
			rope(dst.Float32s(), src.Float32s(), b, s, h, d, opt, sign)
		} else {
			rope(dst.Float64s(), src.Float64s(), b, s, h, d, opt, sign)
		}
	}
	apply(out, x, 1)
	if !start.IsZero() {
		metal.RecordOp("rope", metal.PathGo, time.Since(start), int64(2*x.Len()*x.DType().Size()))
	}
	return autodiff.Record(out, "rope", func(g *autodiff.Tensor) {
		autodiff.Accumulate(x, func() *autodiff.Tensor {
			dx := autodiff.Empty(g.DType(), shape...)
			apply(dx, g, -1)
			return dx
		})
	}, x)
}
