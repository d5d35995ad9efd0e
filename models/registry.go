package models

import (
	"math"

	"github.com/mlxtrain/mlxtrain/advanced"
	"github.com/mlxtrain/mlxtrain/attention"
	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/layers"
)

// Mixer is the part of a layer that mixes information across positions:
// attention (now) or a state-space model. Its input and output are (batch, seq,
// hidden). cache is nil in training; in generation it carries the layer's state
// from one call to the next.
type Mixer interface {
	Params(prefix string) []autodiff.Param
	Forward(c *layers.Ctx, x *autodiff.Tensor, cache *LayerCache) *autodiff.Tensor
}

// FeedForward is the part of a layer that transforms each position on its own: a
// dense MLP (now) or a mixture of experts. Input and output are (batch, seq,
// hidden).
type FeedForward interface {
	Params(prefix string) []autodiff.Param
	Forward(c *layers.Ctx, x *autodiff.Tensor) *autodiff.Tensor
}

// Norm is a layer norm or RMS norm as the model uses it.
type Norm interface {
	Params(prefix string) []autodiff.Param
	Forward(c *layers.Ctx, x *autodiff.Tensor) *autodiff.Tensor
}

// residualMixer is a Mixer that can add its output to the residual stream itself:
// ForwardResidual(c, x, res, cache) is res + Forward(c, x, cache), with the
// addition fused into its last projection.
type residualMixer interface {
	ForwardResidual(c *layers.Ctx, x, res *autodiff.Tensor, cache *LayerCache) *autodiff.Tensor
}

// residualFeedForward is residualMixer for a FeedForward.
type residualFeedForward interface {
	ForwardResidual(c *layers.Ctx, x, res *autodiff.Tensor) *autodiff.Tensor
}

// linearLister is implemented by modules whose linears LoRA may adapt.
type linearLister interface {
	Linears(prefix string) []layers.NamedLinear
}

// Mixer and feed-forward kinds, as layer_types and feed_forward_types name them.
const (
	MixerFullAttention    = "full_attention"
	MixerAttention        = "attention" // same as full_attention
	MixerSlidingAttention = "sliding_attention"
	MixerMamba            = "mamba" // a Mamba (selective SSM) block

	FeedForwardMLP = "mlp"
	FeedForwardMoE = "moe" // a mixture of experts
)

// mixerKind builds one kind of mixer; Name is its module name in the layer
// ("self_attn" in model.layers.0.self_attn.q_proj.weight).
type mixerKind struct {
	Name string
	New  func(cfg Config, layer int, rng *autodiff.RNG) Mixer
}

type feedForwardKind struct {
	Name string
	New  func(cfg Config, layer int, rng *autodiff.RNG) FeedForward
}

// The registries: adding a mixer (an SSM) or a feed-forward (a mixture of experts)
// is one entry here, with its builder.
var (
	mixers = map[string]mixerKind{
		MixerFullAttention:    {"self_attn", newAttention(false)},
		MixerAttention:        {"self_attn", newAttention(false)},
		MixerSlidingAttention: {"self_attn", newAttention(true)},
		MixerMamba:            {"mixer", newMamba},
	}
	feedForwards = map[string]feedForwardKind{
		FeedForwardMLP: {"mlp", newMLP},
		FeedForwardMoE: {"mlp", newMoE},
	}
)

// initStd returns the weight inits: N(0, range²) for inputs, and for the
// projections that write into the residual stream N(0, range²/(2·layers)).
func initStd(cfg Config) (in, residual layers.Init) {
	if cfg.InitScheme == InitPyTorch {
		return layers.Init{}, layers.Init{} // uniform in ±1/√fan_in
	}
	std := cfg.InitializerRange
	return layers.Init{Std: std}, layers.Init{Std: std / math.Sqrt(2*float64(cfg.NumHiddenLayers))}
}

// AttentionMixer is the attention mixer: an [attention.Block] whose cache is the
// layer's KV cache.
type AttentionMixer struct{ *attention.Block }

// Forward runs the block with the layer's KV cache, if any.
func (m AttentionMixer) Forward(c *layers.Ctx, x *autodiff.Tensor, cache *LayerCache) *autodiff.Tensor {
	var kv attention.KVCache
	if cache != nil {
		kv = cache.KV
	}
	return m.Block.Forward(c, x, kv)
}

// ForwardResidual is res + Forward(c, x, cache), the addition fused into o_proj.
func (m AttentionMixer) ForwardResidual(c *layers.Ctx, x, res *autodiff.Tensor, cache *LayerCache) *autodiff.Tensor {
	var kv attention.KVCache
	if cache != nil {
		kv = cache.KV
	}
	if m.O.LoRA != nil || m.O.Packed != nil {
		return autodiff.Add(res, m.Block.Forward(c, x, kv))
	}
	a := m.Attend(c, x, kv)
	y := linearResidual(a, c.Param(m.O.Weight), c.Param(m.O.Bias), res)
	release(c, a)
	return y
}

func newAttention(sliding bool) func(Config, int, *autodiff.RNG) Mixer {
	return func(cfg Config, _ int, rng *autodiff.RNG) Mixer {
		in, res := initStd(cfg)
		bc := attention.BlockConfig{
			Dim: cfg.HiddenSize, Heads: cfg.NumAttentionHeads, KVHeads: cfg.NumKeyValueHeads, HeadDim: cfg.HeadDim,
			QKVBias: cfg.AttentionBias, OutBias: cfg.AttentionBias,
			Causal: true, Init: in, OutInit: res,
		}
		if sliding {
			bc.Window = cfg.SlidingWindow
		}
		if cfg.PositionEmbeddingType == PositionsRoPE {
			bc.RoPE = &attention.RoPEOptions{Base: cfg.RopeTheta, Interleaved: cfg.RopeTraditional}
		}
		return AttentionMixer{attention.NewBlock(rng, cfg.DType(), bc)}
	}
}

func newMLP(cfg Config, _ int, rng *autodiff.RNG) FeedForward {
	in, res := initStd(cfg)
	act := layers.Activation(activations[cfg.HiddenAct])
	if cfg.MLPGated {
		act = layers.ActSwiGLU
	}
	m := &layers.MLP{Act: act}
	dt := cfg.DType()
	if act == layers.ActSwiGLU {
		m.Gate = layers.NewLinear(rng, dt, cfg.HiddenSize, cfg.IntermediateSize, cfg.MLPBias, in)
	}
	m.Up = layers.NewLinear(rng, dt, cfg.HiddenSize, cfg.IntermediateSize, cfg.MLPBias, in)
	m.Down = layers.NewLinear(rng, dt, cfg.IntermediateSize, cfg.HiddenSize, cfg.MLPBias, res)
	return DenseMLP{m}
}

// DenseMLP is the dense feed-forward: a [layers.MLP] (gate_proj, up_proj,
// down_proj), whose GELU form runs the up projection, bias and GELU as one fused
// op ([LinearGELU]).
type DenseMLP struct{ *layers.MLP }

// Forward applies the MLP.
func (m DenseMLP) Forward(c *layers.Ctx, x *autodiff.Tensor) *autodiff.Tensor {
	return m.Down.Forward(c, m.hidden(c, x))
}

// ForwardResidual is res + Forward(c, x), the addition fused into down_proj.
func (m DenseMLP) ForwardResidual(c *layers.Ctx, x, res *autodiff.Tensor) *autodiff.Tensor {
	if m.Down.LoRA != nil || m.Down.Packed != nil {
		return autodiff.Add(res, m.Forward(c, x))
	}
	h := m.hidden(c, x)
	y := linearResidual(h, c.Param(m.Down.Weight), c.Param(m.Down.Bias), res)
	release(c, h)
	return y
}

// forwardResidualHalf is ForwardResidual keeping what backward reads of the
// GELU MLP's wide hidden layer (the GELU's derivative, down_proj's input) in
// the 16-bit format dt: half of the MLP's activation memory. It falls back to
// ForwardResidual for other activations and LoRA, and in auto keeps a hidden
// layer over AutoHalfMaxAbs in float32.
func (m DenseMLP) forwardResidualHalf(c *layers.Ctx, x, res *autodiff.Tensor, dt autodiff.DType, auto bool) *autodiff.Tensor {
	if m.Act != layers.ActGELU || m.Up.LoRA != nil || m.Down.LoRA != nil || c == nil || c.Tape == nil {
		return m.ForwardResidual(c, x, res)
	}
	h := linearGELU(x, c.Param(m.Up.Weight), c.Param(m.Up.Bias), dt) // |gelu'| < 1.13: always fits
	store := dt
	if auto && maxAbs(h) > AutoHalfMaxAbs {
		store = autodiff.Float32
	}
	// linear_gelu's backward does not read h, and nothing else does: down_proj
	// keeps its 16-bit copy and gives h's storage back.
	return linearResidualStored(h, c.Param(m.Down.Weight), c.Param(m.Down.Bias), res, store)
}

// hidden is the MLP up to down_proj's input.
func (m DenseMLP) hidden(c *layers.Ctx, x *autodiff.Tensor) *autodiff.Tensor {
	if m.Act == layers.ActGELU && m.Up.LoRA == nil && m.Up.Packed == nil {
		return LinearGELU(x, c.Param(m.Up.Weight), c.Param(m.Up.Bias))
	}
	h := m.Up.Forward(c, x)
	switch m.Act {
	case layers.ActSwiGLU:
		return layers.SwiGLUOp(m.Gate.Forward(c, x), h)
	case layers.ActGELU:
		return autodiff.GELU(h)
	case layers.ActGELUTanh:
		return autodiff.GELUTanh(h)
	case layers.ActReLU:
		return autodiff.ReLU(h)
	case layers.ActSiLU:
		return autodiff.SiLU(h)
	}
	panic("models: unknown activation " + string(m.Act))
}

// MambaMixer is the "mamba" mixer: an [advanced.Mamba] block, whose cache is the
// layer's MambaState.
type MambaMixer struct{ *advanced.Mamba }

// Forward runs the block; with a cache it continues from the layer's state
// (made for x's batch on the first call) and advances it. Cached calls record
// nothing: they are for generation.
func (m MambaMixer) Forward(c *layers.Ctx, x *autodiff.Tensor, cache *LayerCache) *autodiff.Tensor {
	if cache == nil {
		return m.Mamba.Forward(c, x)
	}
	if cache.SSM == nil {
		cache.SSM, cache.SSMLen = m.NewState(x.Dim(0)), 0
	}
	y := m.Prefill(c, x, cache.SSM)
	cache.SSMLen += x.Dim(1)
	return y
}

func newMamba(cfg Config, _ int, rng *autodiff.RNG) Mixer {
	m, err := advanced.NewMamba(rng, cfg.DType(), advanced.MambaConfig{
		DModel: cfg.HiddenSize, DState: cfg.StateSize, DConv: cfg.ConvKernel,
		Expand: cfg.Expand, DTRank: cfg.TimeStepRank,
	})
	if err != nil {
		panic("models: " + err.Error()) // Config.Validate checked the sizes
	}
	// As Hugging Face's Mamba does for pre-norm residual stacks: out_proj,
	// which writes into the residual stream, scaled by 1/√layers.
	w, s := m.OutProj.Weight, 1/math.Sqrt(float64(cfg.NumHiddenLayers))
	if w.DType() == autodiff.Float32 {
		for i, v := range w.Float32s() {
			w.Float32s()[i] = v * float32(s)
		}
	} else {
		for i, v := range w.Float64s() {
			w.Float64s()[i] = v * s
		}
	}
	return MambaMixer{m}
}

// newMoE builds the "moe" feed-forward: an [advanced.MoE], whose experts use
// the dense MLP's activation and biases.
func newMoE(cfg Config, _ int, rng *autodiff.RNG) FeedForward {
	in, res := initStd(cfg)
	act := layers.Activation(activations[cfg.HiddenAct])
	if cfg.MLPGated {
		act = layers.ActSwiGLU
	}
	mc := advanced.MoEConfig{
		Dim: cfg.HiddenSize, Hidden: cfg.MoEIntermediateSize, Experts: cfg.NumLocalExperts, TopK: cfg.NumExpertsPerTok,
		Act: act, Bias: cfg.MLPBias, SharedExperts: cfg.NSharedExperts,
		CapacityFactor: cfg.CapacityFactor, AuxLossCoef: cfg.RouterAuxLossCoef, ZLossCoef: cfg.RouterZLossCoef,
		Init: in, OutInit: res,
	}
	if cfg.ScoringFunc == ScoringSigmoid {
		mc.Score, mc.Gate = advanced.ScoreSigmoid, advanced.GateRenormalize
	} else {
		mc.Score, mc.Gate = advanced.ScoreSoftmax, advanced.GateSoftmaxTopK
	}
	m, err := advanced.NewMoE(rng, cfg.DType(), mc)
	if err != nil {
		panic("models: " + err.Error()) // Config.Validate checked the sizes
	}
	return m
}
