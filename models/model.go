package models

import (
	"fmt"
	"sort"
	"strings"

	"github.com/mlxtrain/mlxtrain/advanced"
	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/layers"
)

// Model is a decoder-only language model: token embedding (plus learned
// positions when configured), pre-norm layers of {norm, mixer, norm,
// feed-forward} with residual connections, a final norm and the head.
type Model struct {
	Config    Config            // validated, defaults filled in
	Embed     *layers.Embedding // model.embed_tokens
	Positions *layers.Embedding // model.embed_positions; nil unless learned positions
	Layers    []*Layer          // model.layers.{i}
	Norm      Norm              // model.norm
	Head      *layers.Linear    // lm_head; nil when tied to Embed
	// Train sets checkpointing, activation precision and dropout for training
	// forwards (see TrainOptions); the zero value is plain float32 training.
	Train TrainOptions

	moeStats map[int]advanced.MoEStats
}

// Layer is one pre-norm residual layer:
//
//	h   = x + Mixer(InputNorm(x))
//	out = h + FeedForward(PostNorm(h))
type Layer struct {
	InputNorm       Norm   // input_layernorm
	Mixer           Mixer  // self_attn for attention
	MixerName       string // the mixer's module name: "self_attn"
	PostNorm        Norm   // post_attention_layernorm
	FeedForward     FeedForward
	FeedForwardName string // the feed-forward's module name: "mlp"
}

// New builds a model from cfg (validated, defaults filled in) with weights drawn
// from rng: GPT-2's initialisation, N(0, initializer_range²) for every matrix and
// embedding, with the projections into the residual stream (o_proj, down_proj)
// scaled by 1/√(2·num_hidden_layers); or, with init_scheme "pytorch", torch.nn's
// defaults (linear weights uniform in ±1/√fan_in, embeddings N(0, 1)). Biases
// start at zero, norm gains at one.
func New(cfg Config, rng *autodiff.RNG) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	dt := cfg.DType()
	std := cfg.InitializerRange
	if cfg.InitScheme == InitPyTorch {
		std = 1 // nn.Embedding's N(0, 1); the linears are uniform (initStd)
	}
	m := &Model{Config: cfg}
	m.Embed = &layers.Embedding{Weight: autodiff.RandNormal(rng, dt, 0, std, cfg.VocabSize, cfg.HiddenSize)}
	if cfg.PositionEmbeddingType == PositionsLearned {
		m.Positions = &layers.Embedding{Weight: autodiff.RandNormal(rng, dt, 0, std, cfg.MaxPositionEmbeddings, cfg.HiddenSize)}
	}
	for i := range cfg.NumHiddenLayers {
		mk, fk := mixers[cfg.LayerTypes[i]], feedForwards[cfg.FeedForwardTypes[i]]
		m.Layers = append(m.Layers, &Layer{
			InputNorm:       newNorm(cfg),
			Mixer:           mk.New(cfg, i, rng),
			MixerName:       mk.Name,
			PostNorm:        newNorm(cfg),
			FeedForward:     fk.New(cfg, i, rng),
			FeedForwardName: fk.Name,
		})
	}
	m.Norm = newNorm(cfg)
	if !cfg.TieWordEmbeddings {
		if cfg.InitScheme == InitPyTorch {
			m.Head = layers.NewLinear(rng, dt, cfg.HiddenSize, cfg.VocabSize, false, layers.Init{})
		} else {
			m.Head = &layers.Linear{Weight: autodiff.RandNormal(rng, dt, 0, std, cfg.VocabSize, cfg.HiddenSize)}
		}
	}
	if err := m.packForConfig(); err != nil { // quantized modules of a quantized config.json
		return nil, err
	}
	return m, nil
}

func newNorm(cfg Config) Norm {
	if cfg.NormType == NormRMS {
		return layers.NewRMSNorm(cfg.DType(), cfg.HiddenSize, cfg.RMSNormEps)
	}
	return LayerNorm{layers.NewLayerNorm(cfg.DType(), cfg.HiddenSize, cfg.LayerNormEps, cfg.NormBias)}
}

// Params lists every trainable parameter by its checkpoint name, in a stable
// order: embeddings, then each layer (input_layernorm, the mixer,
// post_attention_layernorm, the feed-forward), model.norm, lm_head. A tied head
// is not listed (it is model.embed_tokens.weight).
func (m *Model) Params() []autodiff.Param {
	ps := m.Embed.Params("model.embed_tokens.")
	if m.Positions != nil {
		ps = append(ps, m.Positions.Params("model.embed_positions.")...)
	}
	for i, l := range m.Layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		ps = append(ps, l.InputNorm.Params(p+"input_layernorm.")...)
		ps = append(ps, l.Mixer.Params(p+l.MixerName+".")...)
		ps = append(ps, l.PostNorm.Params(p+"post_attention_layernorm.")...)
		ps = append(ps, l.FeedForward.Params(p+l.FeedForwardName+".")...)
	}
	ps = append(ps, m.Norm.Params("model.norm.")...)
	if m.Head != nil {
		ps = append(ps, m.Head.Params("lm_head.")...)
	}
	return ps
}

// NumParams is the number of scalar parameters.
func (m *Model) NumParams() int {
	n := 0
	for _, p := range m.Params() {
		n += p.Value.Len()
	}
	return n
}

// Linears lists the model's linear layers by module path (the projections of
// every mixer and feed-forward, and lm_head when not tied), for
// [layers.AttachLoRA].
func (m *Model) Linears() []layers.NamedLinear {
	var ls []layers.NamedLinear
	for i, l := range m.Layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		if ll, ok := l.Mixer.(linearLister); ok {
			ls = append(ls, ll.Linears(p+l.MixerName+".")...)
		}
		if ll, ok := l.FeedForward.(linearLister); ok {
			ls = append(ls, ll.Linears(p+l.FeedForwardName+".")...)
		}
	}
	if m.Head != nil {
		ls = append(ls, layers.NamedLinear{Name: "lm_head", Linear: m.Head})
	}
	return ls
}

// Forward computes the logits (batch, seq, vocab) of token ids (batch, seq), int32,
// at positions 0…seq−1. c carries the tape when training (nil for inference).
func (m *Model) Forward(c *layers.Ctx, ids *autodiff.Tensor) *autodiff.Tensor {
	return m.ForwardCache(c, ids, nil)
}

// ForwardCache is Forward for tokens that continue those in cache (see
// [NewCache]): their positions start at cache.Offset(), and every layer appends
// its state to the cache. A nil cache is Forward.
func (m *Model) ForwardCache(c *layers.Ctx, ids *autodiff.Tensor, cache *Cache) *autodiff.Tensor {
	h := m.hidden(c, ids, cache, nil)
	if m.Head == nil {
		return m.Embed.AsHead(c, h)
	}
	return m.Head.Forward(c, h)
}

// hidden runs everything but the head; with acc, the mixture-of-experts layers
// also leave their auxiliary losses and statistics in it.
func (m *Model) hidden(c *layers.Ctx, ids *autodiff.Tensor, cache *Cache, acc *moeAcc) *autodiff.Tensor {
	if ids.Rank() != 2 || ids.DType() != autodiff.Int32 {
		panic(fmt.Sprintf("models: Forward: token ids are %s %v, want int32 (batch, seq)", ids.DType(), ids.Shape()))
	}
	if cache != nil && len(cache.Layers) != len(m.Layers) {
		panic(fmt.Sprintf("models: Forward: a cache of %d layers for a model of %d", len(cache.Layers), len(m.Layers)))
	}
	offset := 0
	if cache != nil {
		offset = cache.Offset()
	}
	var pos *autodiff.Tensor
	if m.Positions != nil {
		if n := m.Positions.Weight.Dim(0); offset+ids.Dim(1) > n {
			panic(fmt.Sprintf("models: Forward: positions %d…%d beyond max_position_embeddings %d", offset, offset+ids.Dim(1)-1, n))
		}
		pos = c.Param(m.Positions.Weight)
	}
	s := m.newStepCtx(c, ids.Dim(1))
	var rows []int
	if cache != nil && cache.rows != nil {
		rows = cache.rows
		defer cache.advance(ids.Dim(1))
	}
	x := m.embed(c, pos, ids, offset, rows)
	if s.drop > 0 {
		d := m.dropout(c, s, x)
		release(c, x)
		x = d
	}
	x = s.round(c, x)
	ckpt := m.Train.GradCheckpoint && cache == nil && c.Training() && c.Tape != nil
	for i := range m.Layers {
		var next *autodiff.Tensor
		if ckpt {
			next = m.checkpointLayer(c, s, i, x, acc)
		} else {
			var lc *LayerCache
			if cache != nil {
				lc = &cache.Layers[i]
			}
			next = m.layer(c, s, i, x, lc, acc)
		}
		release(c, x)
		x = next
	}
	h := m.Norm.Forward(c, x)
	release(c, x)
	return s.round(c, h)
}

// Loss is the mean cross-entropy of the next-token predictions: the logits of
// inputs (batch, seq) against targets (batch, seq), both int32, averaged over the
// positions where mask (batch, seq; int32 or float, non-zero counts) is set and
// the target is not −100 (autodiff.DefaultIgnoreIndex, Hugging Face's ignore
// index), or over every position when mask is nil. A scalar tensor; 0, with zero
// gradients, when no position counts.
//
// In training (c.Train set), the auxiliary losses of the mixture-of-experts
// layers (router_aux_loss_coef times the load-balancing loss plus
// router_z_loss_coef times the router z-loss, each layer's own) are added, so
// that Backward trains the routers with them, and their routing statistics are
// kept for [Model.MoEStats]. Evaluation (c nil or not training) is the
// language-model loss alone.
func (m *Model) Loss(c *layers.Ctx, inputs, targets, mask *autodiff.Tensor) *autodiff.Tensor {
	if !c.Training() {
		return lmLoss(m.Forward(c, inputs), targets, mask)
	}
	acc := &moeAcc{stats: map[int]advanced.MoEStats{}}
	h := m.hidden(c, inputs, nil, acc)
	var logits *autodiff.Tensor
	if m.Head == nil {
		logits = m.Embed.AsHead(c, h)
	} else {
		logits = m.Head.Forward(c, h)
	}
	loss := lmLoss(logits, targets, mask)
	m.moeStats = acc.stats
	for _, aux := range acc.aux {
		sum := autodiff.Add(loss, aux)
		if sum.Tape() == nil { // nothing recorded: the parts are ours
			loss.Release()
			aux.Release()
		}
		loss = sum
	}
	return loss
}

// MoEStats returns the routing statistics of each mixture-of-experts layer (by
// layer index) in the last training Loss; nil before one.
func (m *Model) MoEStats() map[int]advanced.MoEStats { return m.moeStats }

// moeAcc collects the auxiliary losses and statistics of a training forward.
type moeAcc struct {
	aux   []*autodiff.Tensor
	stats map[int]advanced.MoEStats
}

// auxFeedForward is a feed-forward with an auxiliary training loss
// ([advanced.MoE]).
type auxFeedForward interface {
	ForwardAux(c *layers.Ctx, x *autodiff.Tensor) (y, aux *autodiff.Tensor, stats advanced.MoEStats)
}

// auxResidualFeedForward is an auxFeedForward that also adds the residual
// connection as it forms its output ([advanced.MoE]).
type auxResidualFeedForward interface {
	ForwardAuxResidual(c *layers.Ctx, x, res *autodiff.Tensor) (y, aux *autodiff.Tensor, stats advanced.MoEStats)
}

// lmLoss is autodiff.CrossEntropy over the positions that mask selects: the
// others get the ignore index as target.
func lmLoss(logits, targets, mask *autodiff.Tensor) *autodiff.Tensor {
	if mask != nil && !sameShape(mask.Shape(), targets.Shape()) {
		panic(fmt.Sprintf("models: Loss: mask %v for targets %v", mask.Shape(), targets.Shape()))
	}
	counted := 0
	t := targets
	if mask != nil {
		t = autodiff.Empty(autodiff.Int32, targets.Shape()...)
		defer t.Release()
	}
	tv, src := t.Int32s(), targets.Int32s()
	for i, v := range src {
		if mask != nil && mask.At(i) == 0 {
			v = autodiff.DefaultIgnoreIndex
		}
		tv[i] = v
		if v != autodiff.DefaultIgnoreIndex {
			counted++
		}
	}
	opt := autodiff.CrossEntropyOptions{}
	if counted == 0 {
		opt.Reduction = autodiff.ReductionSum // 0 and zero gradients, not the mean's NaN
	}
	return autodiff.CrossEntropy(logits, t, opt)
}

// StateDict returns the parameters by checkpoint name (see the package doc). The
// tensors are the model's own: save them, do not release them.
func (m *Model) StateDict() map[string]*autodiff.Tensor {
	out := map[string]*autodiff.Tensor{}
	for _, p := range m.Params() {
		out[p.Name] = p.Value
	}
	return out
}

// LoadStateDict copies weights by name into the model. Every parameter must be
// present with its shape and a dtype that converts to the parameter's exactly
// (its own, or float16/bfloat16 for a float32 or float64 parameter, or float32
// for a float64 one: MLX and Hugging Face checkpoints often store half-precision
// weights, scales and biases), and no other name may appear (lm_head.weight of
// a tied model is ignored, as Hugging Face writes it sometimes); otherwise it
// returns an error listing the problems and changes nothing. A module whose
// "<path>.scales" sd has becomes quantized as sd's shapes say (MLX's rule), and
// a quantized module without them float32, before names and shapes are checked.
func (m *Model) LoadStateDict(sd map[string]*autodiff.Tensor) error {
	if err := m.matchQuantization(sd); err != nil { // packed where sd has scales (quantized.go)
		return err
	}
	var errs []string
	want := map[string]bool{}
	for _, p := range m.Params() {
		want[p.Name] = true
		t, ok := sd[p.Name]
		switch {
		case !ok:
			errs = append(errs, fmt.Sprintf("%s is missing", p.Name))
		case t == nil || t.Released():
			errs = append(errs, fmt.Sprintf("%s has no tensor", p.Name))
		case !widens(t.DType(), p.Value.DType()):
			errs = append(errs, fmt.Sprintf("%s is %s, want %s", p.Name, t.DType(), p.Value.DType()))
		case !sameShape(t.Shape(), p.Value.Shape()):
			errs = append(errs, fmt.Sprintf("%s has shape %v, want %v", p.Name, t.Shape(), p.Value.Shape()))
		}
	}
	var extra []string
	for name := range sd {
		if !want[name] && !(name == "lm_head.weight" && m.Head == nil) {
			extra = append(extra, name+" is not a parameter of this model")
		}
	}
	sort.Strings(extra)
	errs = append(errs, extra...)
	if len(errs) > 0 {
		const show = 6
		msg := strings.Join(errs[:min(len(errs), show)], "; ")
		if len(errs) > show {
			msg += fmt.Sprintf("; and %d more", len(errs)-show)
		}
		return fmt.Errorf("models: LoadStateDict: %s", msg)
	}
	for _, p := range m.Params() {
		t := sd[p.Name]
		if t.DType() == p.Value.DType() {
			p.Value.CopyFrom(t)
			continue
		}
		c := autodiff.Cast(t, p.Value.DType())
		p.Value.CopyFrom(c)
		c.Release()
	}
	return nil
}

// widens reports whether a tensor of dtype from converts to dtype to without
// loss: the same dtype, or a float dtype to a wider one.
func widens(from, to autodiff.DType) bool {
	if from == to {
		return true
	}
	switch to {
	case autodiff.Float32:
		return from == autodiff.Float16 || from == autodiff.BFloat16
	case autodiff.Float64:
		return from == autodiff.Float16 || from == autodiff.BFloat16 || from == autodiff.Float32
	}
	return false
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
