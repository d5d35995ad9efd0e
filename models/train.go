package models

import (
	"fmt"
	"math"

	"github.com/mlxtrain/mlxtrain/advanced"
	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/layers"
	"github.com/mlxtrain/mlxtrain/metal"
)

// Precision says in which format a training forward keeps its activations.
type Precision string

// The precisions. In every one the weights, their gradients, the optimizer
// state and every kernel's arithmetic and accumulation stay in the model's
// dtype (float32); a 16-bit precision rounds the activations to its format.
const (
	PrecisionF32  Precision = "f32"
	PrecisionBF16 Precision = "bf16" // bfloat16 activations and activation gradients
	PrecisionF16  Precision = "f16"  // float16 activations and activation gradients (needs loss scaling)
	// PrecisionAuto rounds an activation to float16 only where that is safe, the
	// seed's rule: the sequence is at most AutoHalfMaxSeqLen long and the
	// tensor's largest magnitude is at most AutoHalfMaxAbs; elsewhere it stays
	// float32. Gradients stay float32 (float32 accumulation always), so it needs
	// no loss scaling.
	PrecisionAuto Precision = "auto"
)

// The bounds of PrecisionAuto. Float16's largest finite value is 65504: a
// tensor up to 4096 in magnitude keeps 16× headroom for the sums and products
// computed from it, and sequences over 2048 positions (longer accumulations in
// attention and the scan) stay float32.
const (
	AutoHalfMaxSeqLen = 2048
	AutoHalfMaxAbs    = 4096
)

// TrainOptions change how a training forward ([Model.Loss] with c.Train) runs,
// not what it computes. The zero value is plain float32 training.
type TrainOptions struct {
	// GradCheckpoint recomputes each layer's forward during backward
	// ([autodiff.Checkpoint]): the tape keeps only the layers' inputs, so
	// activation memory drops from every intermediate of every layer to the
	// layer inputs plus one layer's intermediates, for about a third more
	// compute. With a 16-bit Precision the kept inputs are stored in 16 bits.
	GradCheckpoint bool
	// Precision of the activations; "" is PrecisionF32. The rounding points are
	// the embedding output, each norm's output (the mixer's and feed-forward's
	// inputs), the residual stream after every mixer and feed-forward, and the
	// final norm; their gradients are rounded to the same format in backward
	// (bf16, f16). The GELU MLP keeps what its backward reads of its wide
	// hidden layer (the GELU's derivative, down_proj's input) in 16 bits, and
	// checkpointed layers keep their inputs in 16 bits; the rest (attention,
	// SwiGLU, experts, the scan) computes and keeps float32.
	Precision Precision
	// Dropout is the residual dropout probability (GPT-2's embd_pdrop and
	// resid_pdrop): in training, the embedding output and each mixer's and
	// feed-forward's output, before it is added to the residual stream, are
	// dropped out with masks from c.RNG.
	Dropout float64
}

// Validate checks the options.
func (o TrainOptions) Validate() error {
	switch o.Precision {
	case "", PrecisionF32, PrecisionBF16, PrecisionF16, PrecisionAuto:
	default:
		return fmt.Errorf("models: precision %q: want f32, bf16, f16 or auto", o.Precision)
	}
	if !(o.Dropout >= 0 && o.Dropout < 1) {
		return fmt.Errorf("models: dropout %g: want 0 ≤ p < 1", o.Dropout)
	}
	return nil
}

// halfFormat is the 16-bit format activations are rounded to in training, or
// Float32 for none; auto is Float16 subject to halfSafe.
func (m *Model) halfFormat(c *layers.Ctx, seq int) autodiff.DType {
	if !c.Training() || m.Config.DType() != autodiff.Float32 {
		return autodiff.Float32
	}
	switch m.Train.Precision {
	case PrecisionBF16:
		return autodiff.BFloat16
	case PrecisionF16:
		return autodiff.Float16
	case PrecisionAuto:
		if seq <= AutoHalfMaxSeqLen {
			return autodiff.Float16
		}
	}
	return autodiff.Float32
}

// maxAbs is the largest magnitude in a float32 tensor; a NaN counts as larger
// than any number (comparing the bits of |v| orders NaN above Inf).
func maxAbs(x *autodiff.Tensor) float32 {
	var most uint32
	for _, v := range x.Float32s() {
		most = max(most, math.Float32bits(v)&0x7fffffff)
	}
	if most > 0x7f800000 {
		return float32(math.Inf(1))
	}
	return math.Float32frombits(most)
}

// RoundHalf rounds float32 x in place to the 16-bit format dt (round to nearest
// even; Float16 overflows to ±Inf) and returns it as a new differentiable tensor
// sharing x's storage, whose backward rounds the gradient to dt as well, so
// activation gradients carry dt's range and precision (hence loss scaling for
// float16). With auto set the gradient is not rounded, and x is rounded only
// when its largest magnitude is at most AutoHalfMaxAbs (else it is returned
// unchanged as the view). x must be an activation no other op's backward reads
// before this rounding was applied (a fresh op output).
func RoundHalf(x *autodiff.Tensor, dt autodiff.DType, auto bool) *autodiff.Tensor {
	if x.DType() != autodiff.Float32 || dt != autodiff.Float16 && dt != autodiff.BFloat16 {
		panic(fmt.Sprintf("models: round_half: %s input to %s", x.DType(), dt))
	}
	if !auto || maxAbs(x) <= AutoHalfMaxAbs {
		roundHalfKernel(x.Float32s(), dt)
	}
	out := x.Detached()
	return autodiff.Record(out, "round_half", func(g *autodiff.Tensor) {
		autodiff.Accumulate(x, func() *autodiff.Tensor {
			// g is this node's alone and freed after it: round it in place and
			// pass its storage on.
			if !auto {
				roundHalfKernel(g.Float32s(), dt)
			}
			return g.Detached()
		})
	}, x)
}

// roundHalfKernel rounds each element of v to dt's nearest value, in place.
func roundHalfKernel(v []float32, dt autodiff.DType) {
	metal.ParallelFor(len(v), rowGrain, func(lo, hi int) {
		s := v[lo:hi]
		if dt == autodiff.BFloat16 {
			for i, x := range s {
				s[i] = roundBFloat16(x)
			}
			return
		}
		for i, x := range s {
			s[i] = roundFloat16(x)
		}
	})
}

// roundBFloat16 is x rounded to the nearest bfloat16 value (ties to even), as
// a float32: the mantissa rounded to 7 bits in place (overflow carries into
// Inf, as it should); Inf and NaN are kept.
func roundBFloat16(x float32) float32 {
	b := math.Float32bits(x)
	if b&0x7fffffff < 0x7f800000 {
		b += 0x7fff + (b>>16)&1
		b &^= 0xffff
	}
	return math.Float32frombits(b)
}

// roundFloat16 is x rounded to the nearest float16 value (ties to even), as a
// float32. Over float16's normal range it rounds the float32 mantissa to 10
// bits in place; below it, float16's subnormals are the multiples of 2⁻²⁴, the
// spacing of float32 in [0.5, 1), so adding and subtracting 0.75 rounds to
// them; overflow, Inf and NaN take the exact conversion.
func roundFloat16(x float32) float32 {
	b := math.Float32bits(x)
	a := b & 0x7fffffff
	switch {
	case a >= 0x38800000 && a < 0x477ff000: // 2⁻¹⁴ ≤ |x| < 65520 (which rounds to Inf)
		b += 0xfff + (b>>13)&1
		return math.Float32frombits(b &^ 0x1fff)
	case a < 0x38800000:
		y := math.Float32bits(subnormalStep(math.Float32frombits(a)))
		return math.Float32frombits(y | b&0x80000000)
	}
	return autodiff.HalfToFloat32(autodiff.Float32ToHalf(x))
}

// subnormalStep rounds 0 ≤ a < 2⁻¹⁴ to a multiple of 2⁻²⁴ in float32 arithmetic.
func subnormalStep(a float32) float32 {
	const shift = 0.75
	return (a + shift) - shift
}

// stepCtx is what one training forward threads through the layers.
type stepCtx struct {
	half autodiff.DType // rounding format, Float32 for none
	auto bool
	drop float64 // residual dropout in effect (0 outside training)
}

func (m *Model) newStepCtx(c *layers.Ctx, seq int) stepCtx {
	s := stepCtx{half: m.halfFormat(c, seq), auto: m.Train.Precision == PrecisionAuto}
	if c.Training() {
		s.drop = m.Train.Dropout
	}
	return s
}

// round applies the precision's rounding to x, a fresh activation, and
// returns what replaces it.
func (s stepCtx) round(c *layers.Ctx, x *autodiff.Tensor) *autodiff.Tensor {
	if s.half == autodiff.Float32 {
		return x
	}
	r := RoundHalf(x, s.half, s.auto)
	release(c, x) // the view r holds the storage
	return r
}

// release frees intermediates of a forward that records nothing (inference and
// the forward run of a checkpointed layer); on a tape, the tape owns them.
func release(c *layers.Ctx, ts ...*autodiff.Tensor) {
	if c != nil && c.Tape != nil {
		return
	}
	for _, t := range ts {
		t.Release()
	}
}

// layer runs layer i on x (not released here); with acc, a mixture-of-experts
// feed-forward leaves its auxiliary loss and statistics in it.
func (m *Model) layer(c *layers.Ctx, s stepCtx, i int, x *autodiff.Tensor, lc *LayerCache, acc *moeAcc) *autodiff.Tensor {
	l := m.Layers[i]
	// x + mixer(input_layernorm(x))
	n := s.round(c, l.InputNorm.Forward(c, x))
	var h *autodiff.Tensor
	if rm, ok := l.Mixer.(residualMixer); ok && s.drop == 0 {
		h = rm.ForwardResidual(c, n, x, lc)
	} else {
		y := l.Mixer.Forward(c, n, lc)
		d := m.dropout(c, s, y)
		h = autodiff.Add(x, d)
		release(c, y, d)
	}
	release(c, n)
	h = s.round(c, h)
	// h + feed_forward(post_attention_layernorm(h))
	n = s.round(c, l.PostNorm.Forward(c, h))
	var out *autodiff.Tensor
	if af, ok := l.FeedForward.(auxFeedForward); ok && acc != nil {
		var aux *autodiff.Tensor
		var st advanced.MoEStats
		if rf, ok := l.FeedForward.(auxResidualFeedForward); ok && s.drop == 0 {
			out, aux, st = rf.ForwardAuxResidual(c, n, h)
		} else {
			var y *autodiff.Tensor
			y, aux, st = af.ForwardAux(c, n)
			d := m.dropout(c, s, y)
			out = autodiff.Add(h, d)
			release(c, y, d)
		}
		if aux != nil {
			acc.aux = append(acc.aux, aux)
		}
		acc.stats[i] = st
	} else if mlp, ok := l.FeedForward.(DenseMLP); ok && s.drop == 0 && s.half != autodiff.Float32 {
		out = mlp.forwardResidualHalf(c, n, h, s.half, s.auto)
	} else if rf, ok := l.FeedForward.(residualFeedForward); ok && s.drop == 0 {
		out = rf.ForwardResidual(c, n, h)
	} else {
		y := l.FeedForward.Forward(c, n)
		d := m.dropout(c, s, y)
		out = autodiff.Add(h, d)
		release(c, y, d)
	}
	release(c, n, h)
	return s.round(c, out)
}

// dropout is residual dropout of y in training (a view of y otherwise).
func (m *Model) dropout(c *layers.Ctx, s stepCtx, y *autodiff.Tensor) *autodiff.Tensor {
	if s.drop == 0 {
		return y
	}
	return autodiff.Dropout(y, s.drop, c.RNG, s.drop > 0)
}

// checkpointLayer is layer i recomputed during backward. The layer's dropout
// masks come from the same RNG position in both runs, and a mixture of experts'
// auxiliary loss leaves the checkpoint as one more element of its output (so
// its gradient reaches the router through the recompute), its statistics taken
// from the forward run only.
func (m *Model) checkpointLayer(c *layers.Ctx, s stepCtx, i int, x *autodiff.Tensor, acc *moeAcc) *autodiff.Tensor {
	var start autodiff.RNG
	if c.RNG != nil {
		start = *c.RNG
	}
	fn := func(tp *autodiff.Tape, in []*autodiff.Tensor) *autodiff.Tensor {
		cc := &layers.Ctx{Tape: tp, Train: c.Train}
		if c.RNG != nil {
			rng := start
			cc.RNG = &rng
		}
		var la *moeAcc
		if acc != nil {
			la = &moeAcc{stats: map[int]advanced.MoEStats{}}
		}
		y := m.layer(cc, s, i, in[0], nil, la)
		if tp == nil { // the forward run: it alone advances the RNG and reports statistics
			if c.RNG != nil {
				*c.RNG = *cc.RNG
			}
			if st, ok := la.statsOf(i); ok {
				acc.stats[i] = st
			}
		}
		if la == nil || len(la.aux) == 0 {
			return y
		}
		flat, aux := autodiff.Reshape(y, -1), autodiff.Reshape(la.aux[0], 1)
		out := autodiff.Concat(0, flat, aux)
		release(cc, y, flat, aux, la.aux[0])
		return out
	}
	var out *autodiff.Tensor
	if st := m.storeFormat(s, x); st != autodiff.Float32 {
		out = autodiff.CheckpointStored(st, fn, x)
	} else {
		out = autodiff.Checkpoint(fn, x)
	}
	n := x.Len()
	if out.Len() == n {
		return out
	}
	acc.aux = append(acc.aux, autodiff.Reshape(autodiff.Slice(out, 0, n, n+1)))
	return autodiff.Reshape(autodiff.Slice(out, 0, 0, n), x.Shape()...)
}

// storeFormat is the 16-bit format a checkpointed layer's input x is kept in,
// when x is exactly representable there (it was rounded), else Float32.
func (m *Model) storeFormat(s stepCtx, x *autodiff.Tensor) autodiff.DType {
	if s.half == autodiff.Float32 || s.auto && maxAbs(x) > AutoHalfMaxAbs {
		return autodiff.Float32
	}
	return s.half
}

func (a *moeAcc) statsOf(i int) (advanced.MoEStats, bool) {
	if a == nil {
		return advanced.MoEStats{}, false
	}
	st, ok := a.stats[i]
	return st, ok
}
