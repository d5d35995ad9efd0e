package layers

import (
	"fmt"
	"math"
	"path"
	"strings"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// Embedding maps token ids to rows of Weight (vocab, dim). Tied to an output head,
// the same matrix computes logits with [Embedding.AsHead].
type Embedding struct {
	Weight *autodiff.Tensor
	Packed PackedWeight // a frozen, quantized table in place of Weight, or nil
}

// NewEmbedding returns an embedding with N(0, std²) rows (std 0.02 when 0).
func NewEmbedding(rng *autodiff.RNG, dtype autodiff.DType, vocab, dim int, std float64) *Embedding {
	if std <= 0 {
		std = 0.02
	}
	return &Embedding{Weight: autodiff.RandNormal(rng, dtype, 0, std, vocab, dim)}
}

// Params lists the weight.
func (e *Embedding) Params(prefix string) []autodiff.Param {
	if e.Packed != nil {
		return e.Packed.Params(prefix)
	}
	return []autodiff.Param{param(prefix, "weight", e.Weight)}
}

// Forward looks ids (int32, any shape) up: the result has shape (..., dim).
func (e *Embedding) Forward(c *Ctx, ids *autodiff.Tensor) *autodiff.Tensor {
	if e.Packed != nil {
		return e.Packed.Gather(ids)
	}
	return autodiff.Embedding(c.Param(e.Weight), ids)
}

// AsHead computes logits x·Weightᵀ for x (..., dim), the tied output head.
func (e *Embedding) AsHead(c *Ctx, x *autodiff.Tensor) *autodiff.Tensor {
	if e.Packed != nil {
		return e.Packed.MatMulT(x)
	}
	return LinearOp(x, c.Param(e.Weight), nil)
}

// RMSNorm normalises the last axis by its root mean square, with a learned gain.
type RMSNorm struct {
	Weight *autodiff.Tensor
	Eps    float64
}

// NewRMSNorm returns an RMSNorm of width dim with unit gain.
func NewRMSNorm(dtype autodiff.DType, dim int, eps float64) *RMSNorm {
	return &RMSNorm{Weight: autodiff.Full(dtype, 1, dim), Eps: eps}
}

// Params lists the gain.
func (n *RMSNorm) Params(prefix string) []autodiff.Param {
	return []autodiff.Param{param(prefix, "weight", n.Weight)}
}

// Forward applies the fused kernel.
func (n *RMSNorm) Forward(c *Ctx, x *autodiff.Tensor) *autodiff.Tensor {
	return RMSNormOp(x, c.Param(n.Weight), n.Eps)
}

// LayerNorm normalises the last axis to zero mean and unit variance, then applies a
// learned gain and (optionally) bias.
type LayerNorm struct {
	Weight, Bias *autodiff.Tensor
	Eps          float64
}

// NewLayerNorm returns a LayerNorm of width dim with unit gain and zero bias.
func NewLayerNorm(dtype autodiff.DType, dim int, eps float64, bias bool) *LayerNorm {
	n := &LayerNorm{Weight: autodiff.Full(dtype, 1, dim), Eps: eps}
	if bias {
		n.Bias = autodiff.Zeros(dtype, dim)
	}
	return n
}

// Params lists gain and bias.
func (n *LayerNorm) Params(prefix string) []autodiff.Param {
	ps := []autodiff.Param{param(prefix, "weight", n.Weight)}
	if n.Bias != nil {
		ps = append(ps, param(prefix, "bias", n.Bias))
	}
	return ps
}

// Forward applies the fused kernel.
func (n *LayerNorm) Forward(c *Ctx, x *autodiff.Tensor) *autodiff.Tensor {
	return LayerNormOp(x, c.Param(n.Weight), c.Param(n.Bias), n.Eps)
}

// Dropout zeroes each element with probability P in training and scales the rest
// by 1/(1−P); it is the identity in inference.
type Dropout struct{ P float64 }

// Forward applies dropout when c is training.
func (d Dropout) Forward(c *Ctx, x *autodiff.Tensor) *autodiff.Tensor {
	if d.P == 0 || !c.Training() {
		return x
	}
	if c.RNG == nil {
		panic("layers: dropout in training needs Ctx.RNG")
	}
	return autodiff.Dropout(x, d.P, c.RNG, true)
}

// Activation names the nonlinearity of an MLP.
type Activation string

// The MLP activations. SwiGLU uses a gate projection: down(silu(gate(x))·up(x)).
const (
	ActGELU     Activation = "gelu"
	ActGELUTanh Activation = "gelu_tanh"
	ActReLU     Activation = "relu"
	ActSiLU     Activation = "silu"
	ActSwiGLU   Activation = "swiglu"
)

// MLP is the feed-forward block: down(act(up(x))), or with SwiGLU
// down(silu(gate(x))·up(x)). Parameter names follow llama: gate_proj, up_proj,
// down_proj.
type MLP struct {
	Gate, Up, Down *Linear
	Act            Activation
}

// NewMLP returns an MLP of width dim with a hidden width hidden.
func NewMLP(rng *autodiff.RNG, dtype autodiff.DType, dim, hidden int, act Activation, bias bool, init Init) *MLP {
	m := &MLP{Act: act}
	switch act {
	case ActGELU, ActGELUTanh, ActReLU, ActSiLU:
	case ActSwiGLU:
		m.Gate = NewLinear(rng, dtype, dim, hidden, bias, init)
	default:
		panic(fmt.Sprintf("layers: unknown activation %q", act))
	}
	m.Up = NewLinear(rng, dtype, dim, hidden, bias, init)
	m.Down = NewLinear(rng, dtype, hidden, dim, bias, init)
	return m
}

// Params lists the projections.
func (m *MLP) Params(prefix string) []autodiff.Param {
	var ps []autodiff.Param
	if m.Gate != nil {
		ps = append(ps, m.Gate.Params(prefix+"gate_proj.")...)
	}
	ps = append(ps, m.Up.Params(prefix+"up_proj.")...)
	return append(ps, m.Down.Params(prefix+"down_proj.")...)
}

// Linears lists the projections by name, for LoRA.
func (m *MLP) Linears(prefix string) []NamedLinear {
	var ls []NamedLinear
	if m.Gate != nil {
		ls = append(ls, NamedLinear{prefix + "gate_proj", m.Gate})
	}
	return append(ls, NamedLinear{prefix + "up_proj", m.Up}, NamedLinear{prefix + "down_proj", m.Down})
}

// Forward applies the block to x (..., dim).
func (m *MLP) Forward(c *Ctx, x *autodiff.Tensor) *autodiff.Tensor {
	h := m.Up.Forward(c, x)
	switch m.Act {
	case ActSwiGLU:
		h = SwiGLUOp(m.Gate.Forward(c, x), h)
	case ActGELU:
		h = autodiff.GELU(h)
	case ActGELUTanh:
		h = autodiff.GELUTanh(h)
	case ActReLU:
		h = autodiff.ReLU(h)
	case ActSiLU:
		h = autodiff.SiLU(h)
	}
	return m.Down.Forward(c, h)
}

// SwiGLUForward computes y = silu(gate)·up elementwise.
func SwiGLUForward[T autodiff.Float](y, gate, up []T) {
	up = up[:len(gate)]
	y = y[:len(gate)]
	metal.ParallelFor(len(gate), 1<<13, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			g := float64(gate[i])
			y[i] = T(g / (1 + math.Exp(-g)) * float64(up[i]))
		}
	})
}

// SwiGLUBackward computes dgate and dup from the output gradient dy (either may
// be nil when not needed).
func SwiGLUBackward[T autodiff.Float](dgate, dup, dy, gate, up []T) {
	metal.ParallelFor(len(gate), 1<<13, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			g := float64(gate[i])
			s := 1 / (1 + math.Exp(-g))
			d := float64(dy[i])
			if dup != nil {
				dup[i] = T(d * g * s)
			}
			if dgate != nil {
				dgate[i] = T(d * float64(up[i]) * s * (1 + g*(1-s)))
			}
		}
	})
}

// SwiGLUOp is the fused, differentiable silu(gate)·up.
func SwiGLUOp(gate, up *autodiff.Tensor) *autodiff.Tensor {
	if !sameShape(gate.Shape(), up.Shape()) || gate.DType() != up.DType() || !gate.DType().IsFloat() {
		panic(fmt.Sprintf("layers: swiglu: gate %s %v, up %s %v", gate.DType(), gate.Shape(), up.DType(), up.Shape()))
	}
	y := autodiff.Empty(gate.DType(), gate.Shape()...)
	n := gate.Len()
	tm := startOp()
	dev := autodiff.DeviceFor(swigluOp, []*autodiff.Tensor{y, gate, up}, n)
	switch {
	case tryDevice("swiglu", dev, func(d metal.Compute) error { return metal.RunSwiGLU(d, y.Buffer(), gate.Buffer(), up.Buffer(), n) }):
	case gate.DType() == autodiff.Float32:
		dev = nil
		SwiGLUForward(y.Float32s(), gate.Float32s(), up.Float32s())
	default:
		SwiGLUForward(y.Float64s(), gate.Float64s(), up.Float64s())
	}
	tm.done("swiglu", dev != nil, 3*n*gate.DType().Size())
	return autodiff.Record(y, "swiglu", func(g *autodiff.Tensor) {
		var dg, du *autodiff.Tensor
		if autodiff.NeedsGrad(gate) {
			dg = autodiff.Empty(gate.DType(), gate.Shape()...)
		}
		if autodiff.NeedsGrad(up) {
			du = autodiff.Empty(up.DType(), up.Shape()...)
		}
		if dg == nil && du == nil {
			return
		}
		if dev != nil {
			// the kernel writes both gradients
			dgd, dud := dg, du
			if dgd == nil {
				dgd = autodiff.Empty(gate.DType(), gate.Shape()...)
				defer dgd.Release()
			}
			if dud == nil {
				dud = autodiff.Empty(up.DType(), up.Shape()...)
				defer dud.Release()
			}
			if !tryDevice("swiglu", autodiff.DeviceFor(swigluOp, []*autodiff.Tensor{g, gate, up}, n), func(d metal.Compute) error {
				return metal.RunSwiGLUBackward(d, dgd.Buffer(), dud.Buffer(), g.Buffer(), gate.Buffer(), up.Buffer(), n)
			}) {
				dev = nil
			}
		}
		switch {
		case dev != nil:
		case gate.DType() == autodiff.Float32:
			SwiGLUBackward(optSlice(dg, f32), optSlice(du, f32), g.Float32s(), gate.Float32s(), up.Float32s())
		default:
			SwiGLUBackward(optSlice(dg, f64), optSlice(du, f64), g.Float64s(), gate.Float64s(), up.Float64s())
		}
		if dg != nil {
			handOff(gate, dg)
		}
		if du != nil {
			handOff(up, du)
		}
	}, gate, up)
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// NamedLinear is a Linear with its full module path (no trailing dot), e.g.
// "model.layers.0.self_attn.q_proj".
type NamedLinear struct {
	Name   string
	Linear *Linear
}

// LoRAConfig describes adapters: rank, scale (mlx-lm's "scale", applied as is),
// dropout on the adapter's input, and which linears get one: patterns matched
// against the module path with path.Match, or as a suffix ("q_proj" matches
// "model.layers.3.self_attn.q_proj").
type LoRAConfig struct {
	Rank    int
	Scale   float64
	Dropout float64
	Keys    []string
}

// LoRA is a low-rank adapter in mlx-lm's layout: A (in, rank), B (rank, out), and
// y += scale·(dropout(x)·A)·B. B starts at zero so a new adapter changes nothing.
type LoRA struct {
	A, B    *autodiff.Tensor
	Scale   float64
	Dropout Dropout
}

// Params lists the adapter's matrices as lora_a and lora_b.
func (a *LoRA) Params(prefix string) []autodiff.Param {
	return []autodiff.Param{param(prefix, "lora_a", a.A), param(prefix, "lora_b", a.B)}
}

func (a *LoRA) addTo(c *Ctx, x, y *autodiff.Tensor) *autodiff.Tensor {
	return LoRAOp(y, a.Dropout.Forward(c, x), c.Param(a.A), c.Param(a.B), a.Scale)
}

// MatchesLoRAKey reports whether a module path is selected by the patterns.
func MatchesLoRAKey(name string, keys []string) bool {
	for _, k := range keys {
		if ok, _ := path.Match(k, name); ok || name == k || strings.HasSuffix(name, "."+k) {
			return true
		}
	}
	return false
}

// AttachLoRA gives every selected linear an adapter and returns the names of the
// adapted modules. It is an error when nothing matches.
func AttachLoRA(rng *autodiff.RNG, linears []NamedLinear, cfg LoRAConfig) ([]string, error) {
	if cfg.Rank <= 0 {
		return nil, fmt.Errorf("lora: rank %d: want ≥ 1", cfg.Rank)
	}
	if cfg.Dropout < 0 || cfg.Dropout >= 1 {
		return nil, fmt.Errorf("lora: dropout %g: want 0 ≤ p < 1", cfg.Dropout)
	}
	var names []string
	for _, nl := range linears {
		if !MatchesLoRAKey(nl.Name, cfg.Keys) {
			continue
		}
		l := nl.Linear
		dt := l.DType()
		bound := 1 / math.Sqrt(float64(l.In()))
		l.LoRA = &LoRA{
			A:       autodiff.RandUniform(rng, dt, -bound, bound, l.In(), cfg.Rank),
			B:       autodiff.Zeros(dt, cfg.Rank, l.Out()),
			Scale:   cfg.Scale,
			Dropout: Dropout{P: cfg.Dropout},
		}
		names = append(names, nl.Name)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("lora: keys %q match no linear layer", cfg.Keys)
	}
	return names, nil
}

// Requantizer is a PackedWeight that can unpack itself and pack a new float
// matrix with its own parameters, so that a LoRA adapter merges into a
// quantized base (which is then re-quantized, as mlx-lm's fuse does).
type Requantizer interface {
	PackedWeight
	Dequantize(dtype autodiff.DType) *autodiff.Tensor
	Requantize(w *autodiff.Tensor) (PackedWeight, error)
}

// Merge folds the adapter into the base weight, W += scale·(A·B)ᵀ, and removes it.
// A packed base is unpacked, merged and packed again with its own parameters.
func (l *Linear) Merge() {
	if l.LoRA == nil {
		return
	}
	w := l.Weight
	var rq Requantizer
	if l.Packed != nil {
		rq = l.Packed.(Requantizer)
		w = rq.Dequantize(l.LoRA.A.DType())
	}
	ab := autodiff.MatMul(l.LoRA.A, l.LoRA.B) // (in, out)
	in, out := l.In(), l.Out()
	for i := range in {
		for o := range out {
			d := l.LoRA.Scale * ab.At(i*out+o)
			switch w.DType() {
			case autodiff.Float32:
				w.Float32s()[o*in+i] += float32(d)
			case autodiff.Float64:
				w.Float64s()[o*in+i] += d
			}
		}
	}
	ab.Release()
	if rq != nil {
		p, err := rq.Requantize(w)
		if err != nil {
			panic("layers: Merge: " + err.Error())
		}
		w.Release()
		l.Packed = p
	}
	l.LoRA = nil
}
