package models

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"sort"
	"strings"

	"github.com/mlxtrain/mlxtrain/autodiff"
)

// Config describes a decoder-only language model. It is written to and read from a
// checkpoint's config.json: the keys Hugging Face uses for llama-style models where
// they exist (model_type, vocab_size, hidden_size, num_hidden_layers,
// num_attention_heads, num_key_value_heads, head_dim, intermediate_size,
// hidden_act, max_position_embeddings, rope_theta, rms_norm_eps,
// tie_word_embeddings, attention_bias, mlp_bias, sliding_window, layer_types,
// initializer_range, torch_dtype), those of Hugging Face's Mamba for the "mamba"
// mixer (state_size, conv_kernel, expand, time_step_rank) and of Mixtral and
// DeepSeek for the "moe" feed-forward (num_local_experts, num_experts_per_tok,
// moe_intermediate_size, n_shared_experts, scoring_func, router_aux_loss_coef),
// mlx-lm's rope_traditional, and ours for the rest (norm_type, layer_norm_eps,
// norm_bias, position_embedding_type, mlp_gated, feed_forward_types,
// capacity_factor, router_z_loss_coef). Keys of a config.json that Config does not know are kept in
// Extra and written back, so a Hugging Face config survives a round trip.
//
// Zero values mean defaults, filled by [Config.WithDefaults]; [GPT2Config] and
// [LlamaConfig] give the two usual families.
type Config struct {
	ModelType string `json:"model_type"`

	VocabSize         int `json:"vocab_size"`
	HiddenSize        int `json:"hidden_size"`
	NumHiddenLayers   int `json:"num_hidden_layers"`
	NumAttentionHeads int `json:"num_attention_heads"`
	NumKeyValueHeads  int `json:"num_key_value_heads"` // 0: NumAttentionHeads
	HeadDim           int `json:"head_dim"`            // 0: HiddenSize/NumAttentionHeads
	IntermediateSize  int `json:"intermediate_size"`   // 0: 4·HiddenSize

	// HiddenAct is the feed-forward nonlinearity: "gelu" (erf), "gelu_pytorch_tanh"
	// (also "gelu_new", "gelu_tanh"), "relu" or "silu". Default "gelu".
	HiddenAct string `json:"hidden_act"`
	// MLPGated selects llama's gated feed-forward, down(act(gate(x))·up(x)), which
	// needs HiddenAct "silu" (SwiGLU). Otherwise the MLP is down(act(up(x))).
	MLPGated bool `json:"mlp_gated"`
	MLPBias  bool `json:"mlp_bias"` // biases on gate_proj, up_proj and down_proj

	// NormType is "layer_norm" (default) or "rms_norm"; its epsilon is
	// LayerNormEps (default 1e-5) or RMSNormEps (default 1e-6). NormBias gives
	// LayerNorms a bias.
	NormType     string  `json:"norm_type"`
	RMSNormEps   float64 `json:"rms_norm_eps"`
	LayerNormEps float64 `json:"layer_norm_eps"`
	NormBias     bool    `json:"norm_bias"`

	// PositionEmbeddingType is "rope" (default), "learned" (a table of
	// MaxPositionEmbeddings rows added to the token embeddings) or "none".
	PositionEmbeddingType string  `json:"position_embedding_type"`
	MaxPositionEmbeddings int     `json:"max_position_embeddings"`
	RopeTheta             float64 `json:"rope_theta"`       // default 10000
	RopeTraditional       bool    `json:"rope_traditional"` // interleaved pairs (GPT-J) instead of halves (llama)

	AttentionBias bool `json:"attention_bias"` // biases on q_proj, k_proj, v_proj and o_proj
	// SlidingWindow is the window in keys of "sliding_attention" layers.
	SlidingWindow int `json:"sliding_window"`
	// LayerTypes gives each layer's mixer: "full_attention" (also "attention"),
	// "sliding_attention" or "mamba" (a selective state-space block). Empty means every layer is "sliding_attention" when
	// SlidingWindow > 0, "full_attention" otherwise.
	LayerTypes []string `json:"layer_types,omitempty"`
	// FeedForwardTypes gives each layer's feed-forward: "mlp" or "moe". Empty
	// means "mlp" everywhere.
	FeedForwardTypes []string `json:"feed_forward_types,omitempty"`

	// The "mamba" mixer (Hugging Face's MambaConfig keys): StateSize N per
	// channel (default 16), ConvKernel the causal convolution's width (4),
	// Expand the inner width over hidden_size (2), TimeStepRank the rank of
	// Δ's projection (⌈hidden_size/16⌉). Defaults are filled, and the keys
	// written, only when layer_types has a "mamba" layer.
	StateSize    int `json:"state_size,omitempty"`
	ConvKernel   int `json:"conv_kernel,omitempty"`
	Expand       int `json:"expand,omitempty"`
	TimeStepRank int `json:"time_step_rank,omitempty"`

	// The "moe" feed-forward (Mixtral's and DeepSeek's keys where they have
	// them): NumLocalExperts routed experts (required), NumExpertsPerTok per
	// token (default min(2, experts)), MoEIntermediateSize each expert's width
	// (default intermediate_size), NSharedExperts always-on experts of that
	// width, ScoringFunc "softmax" (default; the chosen experts weighted by a
	// softmax over their logits) or "sigmoid" (their sigmoid scores
	// renormalised), CapacityFactor the expert capacity of a training batch
	// (0: dropless), RouterAuxLossCoef and RouterZLossCoef (ours) the weights
	// of the load-balancing loss and the router z-loss that Model.Loss adds.
	// The experts use hidden_act / mlp_gated / mlp_bias as the dense MLP does.
	// Defaults are filled only when feed_forward_types has a "moe" layer.
	NumLocalExperts     int     `json:"num_local_experts,omitempty"`
	NumExpertsPerTok    int     `json:"num_experts_per_tok,omitempty"`
	MoEIntermediateSize int     `json:"moe_intermediate_size,omitempty"`
	NSharedExperts      int     `json:"n_shared_experts,omitempty"`
	ScoringFunc         string  `json:"scoring_func,omitempty"`
	CapacityFactor      float64 `json:"capacity_factor,omitempty"`
	RouterAuxLossCoef   float64 `json:"router_aux_loss_coef,omitempty"`
	RouterZLossCoef     float64 `json:"router_z_loss_coef,omitempty"`

	TieWordEmbeddings bool    `json:"tie_word_embeddings"` // lm_head is embed_tokens
	InitializerRange  float64 `json:"initializer_range"`   // std of the initial weights; default 0.02
	// InitScheme chooses how New draws the weights: "normal" (default, GPT-2's
	// N(0, initializer_range²) with the residual projections scaled down) or
	// "pytorch" (torch.nn's defaults: every linear weight uniform in ±1/√fan_in,
	// token and position embeddings N(0, 1); initializer_range unused).
	InitScheme string `json:"init_scheme,omitempty"`
	// TorchDType is the compute dtype of the parameters: "float32" (default) or
	// "float64" (gradient checks).
	TorchDType string `json:"torch_dtype"`

	// Extra holds the config.json keys that Config does not know, as read.
	Extra map[string]json.RawMessage `json:"-"`
}

// The kinds of norms and position embeddings.
const (
	NormLayer = "layer_norm"
	NormRMS   = "rms_norm"

	PositionsRoPE    = "rope"
	PositionsLearned = "learned"
	PositionsNone    = "none"

	InitNormal  = "normal"  // init_scheme: GPT-2's normal initialisation
	InitPyTorch = "pytorch" // init_scheme: torch.nn's default initialisation

	ScoringSoftmax = "softmax" // scoring_func of the "moe" feed-forward
	ScoringSigmoid = "sigmoid"
)

// GPT2Config is a GPT-2-style model: learned positions, pre-LayerNorm with biases,
// GELU MLP of 4× width with biases, biases on the attention projections, and an
// untied head.
func GPT2Config(vocab, hidden, layers, heads, context int) Config {
	return Config{
		ModelType:             "mlxtrain",
		VocabSize:             vocab,
		HiddenSize:            hidden,
		NumHiddenLayers:       layers,
		NumAttentionHeads:     heads,
		IntermediateSize:      4 * hidden,
		HiddenAct:             "gelu",
		MLPBias:               true,
		NormType:              NormLayer,
		NormBias:              true,
		PositionEmbeddingType: PositionsLearned,
		MaxPositionEmbeddings: context,
		AttentionBias:         true,
	}
}

// LlamaConfig is a llama-style model: RoPE, RMSNorm, SwiGLU, no biases,
// grouped-query attention with kvHeads key/value heads, untied head. Its
// parameter names and config keys are those of Hugging Face's LlamaForCausalLM.
func LlamaConfig(vocab, hidden, layers, heads, kvHeads, intermediate, context int) Config {
	return Config{
		ModelType:             "llama",
		VocabSize:             vocab,
		HiddenSize:            hidden,
		NumHiddenLayers:       layers,
		NumAttentionHeads:     heads,
		NumKeyValueHeads:      kvHeads,
		IntermediateSize:      intermediate,
		HiddenAct:             "silu",
		MLPGated:              true,
		NormType:              NormRMS,
		PositionEmbeddingType: PositionsRoPE,
		MaxPositionEmbeddings: context,
	}
}

// WithDefaults returns c with every zero value that has a default filled in.
func (c Config) WithDefaults() Config {
	if c.ModelType == "" {
		c.ModelType = "mlxtrain"
	}
	if c.NumKeyValueHeads == 0 {
		c.NumKeyValueHeads = c.NumAttentionHeads
	}
	if c.HeadDim == 0 && c.NumAttentionHeads > 0 {
		c.HeadDim = c.HiddenSize / c.NumAttentionHeads
	}
	if c.IntermediateSize == 0 {
		c.IntermediateSize = 4 * c.HiddenSize
	}
	if c.HiddenAct == "" {
		c.HiddenAct = "gelu"
	}
	if c.NormType == "" {
		c.NormType = NormLayer
	}
	if c.RMSNormEps == 0 {
		c.RMSNormEps = 1e-6
	}
	if c.LayerNormEps == 0 {
		c.LayerNormEps = 1e-5
	}
	if c.PositionEmbeddingType == "" {
		c.PositionEmbeddingType = PositionsRoPE
	}
	if c.RopeTheta == 0 {
		c.RopeTheta = 10000
	}
	if c.InitializerRange == 0 {
		c.InitializerRange = 0.02
	}
	if c.TorchDType == "" {
		c.TorchDType = "float32"
	}
	if len(c.LayerTypes) == 0 && c.NumHiddenLayers > 0 {
		kind := MixerFullAttention
		if c.SlidingWindow > 0 {
			kind = MixerSlidingAttention
		}
		c.LayerTypes = repeat(kind, c.NumHiddenLayers)
	}
	if len(c.FeedForwardTypes) == 0 && c.NumHiddenLayers > 0 {
		c.FeedForwardTypes = repeat(FeedForwardMLP, c.NumHiddenLayers)
	}
	if c.HasMixer(MixerMamba) {
		def(&c.StateSize, 16)
		def(&c.ConvKernel, 4)
		def(&c.Expand, 2)
		def(&c.TimeStepRank, (c.HiddenSize+15)/16)
	}
	if c.HasFeedForward(FeedForwardMoE) {
		def(&c.NumExpertsPerTok, min(2, max(c.NumLocalExperts, 1)))
		def(&c.MoEIntermediateSize, c.IntermediateSize)
		if c.ScoringFunc == "" {
			c.ScoringFunc = ScoringSoftmax
		}
	}
	return c
}

func def(v *int, d int) {
	if *v == 0 {
		*v = d
	}
}

// HasMixer reports whether some layer's mixer (layer_types) is kind.
func (c Config) HasMixer(kind string) bool { return contains(c.LayerTypes, kind) }

// HasFeedForward reports whether some layer's feed-forward (feed_forward_types)
// is kind.
func (c Config) HasFeedForward(kind string) bool { return contains(c.FeedForwardTypes, kind) }

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// activations maps the accepted hidden_act names to the layers' activations.
var activations = map[string]string{
	"gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "gelu_tanh": "gelu_tanh",
	"relu": "relu", "silu": "silu",
}

// Validate reports every problem of c (after defaults) in one error, each naming
// the config.json key at fault.
func (c Config) Validate() error {
	d := c.WithDefaults()
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	positive := func(key string, v int) {
		if v <= 0 {
			bad("%s is %d, want ≥ 1", key, v)
		}
	}
	positive("vocab_size", d.VocabSize)
	positive("hidden_size", d.HiddenSize)
	positive("num_hidden_layers", d.NumHiddenLayers)
	positive("num_attention_heads", d.NumAttentionHeads)
	switch {
	case d.NumKeyValueHeads < 0:
		bad("num_key_value_heads is %d, want ≥ 1 (or 0 for num_attention_heads)", d.NumKeyValueHeads)
	case d.NumKeyValueHeads > 0 && d.NumAttentionHeads > 0 && d.NumAttentionHeads%d.NumKeyValueHeads != 0:
		bad("num_key_value_heads (%d) must divide num_attention_heads (%d)", d.NumKeyValueHeads, d.NumAttentionHeads)
	}
	switch {
	case c.HeadDim < 0:
		bad("head_dim is %d, want ≥ 1 (or 0 for hidden_size/num_attention_heads)", c.HeadDim)
	case c.HeadDim == 0 && d.NumAttentionHeads > 0 && d.HiddenSize > 0 && d.HiddenSize%d.NumAttentionHeads != 0:
		bad("num_attention_heads (%d) must divide hidden_size (%d) unless head_dim is set", d.NumAttentionHeads, d.HiddenSize)
	case d.PositionEmbeddingType == PositionsRoPE && d.HeadDim%2 != 0:
		bad("head_dim (%d) must be even for rope", d.HeadDim)
	}
	if d.IntermediateSize < 0 {
		bad("intermediate_size is %d, want ≥ 1 (or 0 for 4·hidden_size)", d.IntermediateSize)
	}
	if _, ok := activations[d.HiddenAct]; !ok {
		bad("hidden_act %q is not one of %s", d.HiddenAct, keys(activations))
	} else if d.MLPGated && d.HiddenAct != "silu" {
		bad("mlp_gated needs hidden_act \"silu\" (SwiGLU), have %q", d.HiddenAct)
	}
	switch d.NormType {
	case NormLayer:
	case NormRMS:
		if d.NormBias {
			bad("norm_bias needs norm_type %q: an RMSNorm has no bias", NormLayer)
		}
	default:
		bad("norm_type %q is not %q or %q", d.NormType, NormLayer, NormRMS)
	}
	if !(d.RMSNormEps > 0) || !(d.LayerNormEps > 0) {
		bad("rms_norm_eps (%g) and layer_norm_eps (%g) must be positive", d.RMSNormEps, d.LayerNormEps)
	}
	switch d.PositionEmbeddingType {
	case PositionsRoPE:
		if !(d.RopeTheta > 0) {
			bad("rope_theta is %g, want > 0", d.RopeTheta)
		}
	case PositionsLearned:
		if d.MaxPositionEmbeddings <= 0 {
			bad("max_position_embeddings is %d: learned positions need ≥ 1 rows", d.MaxPositionEmbeddings)
		}
	case PositionsNone:
	default:
		bad("position_embedding_type %q is not %q, %q or %q", d.PositionEmbeddingType, PositionsRoPE, PositionsLearned, PositionsNone)
	}
	if d.MaxPositionEmbeddings < 0 {
		bad("max_position_embeddings is %d, want ≥ 0", d.MaxPositionEmbeddings)
	}
	if d.SlidingWindow < 0 {
		bad("sliding_window is %d, want ≥ 0", d.SlidingWindow)
	}
	checkKinds := func(key string, kinds []string, known func(string) bool, names string) {
		if len(kinds) != max(d.NumHiddenLayers, 0) {
			bad("%s has %d entries for %d layers (num_hidden_layers)", key, len(kinds), d.NumHiddenLayers)
		}
		for i, k := range kinds {
			if !known(k) {
				bad("%s[%d] %q is not one of %s", key, i, k, names)
			}
		}
	}
	checkKinds("layer_types", d.LayerTypes, func(k string) bool { _, ok := mixers[k]; return ok }, keys(mixers))
	checkKinds("feed_forward_types", d.FeedForwardTypes, func(k string) bool { _, ok := feedForwards[k]; return ok }, keys(feedForwards))
	for i, k := range d.LayerTypes {
		if k == MixerSlidingAttention && d.SlidingWindow == 0 {
			bad("layer_types[%d] is %q but sliding_window is 0", i, k)
			break
		}
	}
	d.validateMamba(bad)
	d.validateMoE(bad)
	if d.InitScheme != "" && d.InitScheme != InitNormal && d.InitScheme != InitPyTorch {
		bad("init_scheme is %q, want %q or %q", d.InitScheme, InitNormal, InitPyTorch)
	}
	if d.InitializerRange < 0 {
		bad("initializer_range is %g, want ≥ 0", d.InitializerRange)
	}
	if dt, err := autodiff.ParseDType(d.TorchDType); err != nil || !dt.IsFloat() {
		bad("torch_dtype %q: want \"float32\" or \"float64\"", d.TorchDType)
	}
	if len(errs) > 0 {
		return errors.New("models: config: " + strings.Join(errs, "; "))
	}
	return nil
}

// validateMamba checks the "mamba" mixer's keys (d has its defaults).
func (d Config) validateMamba(bad func(string, ...any)) {
	need := d.HasMixer(MixerMamba)
	for _, f := range []struct {
		key string
		v   int
	}{{"state_size", d.StateSize}, {"conv_kernel", d.ConvKernel}, {"expand", d.Expand}, {"time_step_rank", d.TimeStepRank}} {
		if f.v < 0 || (need && f.v == 0) {
			bad("%s is %d, want ≥ 1 (or 0 for the default)", f.key, f.v)
		}
	}
}

// validateMoE checks the "moe" feed-forward's keys (d has its defaults).
func (d Config) validateMoE(bad func(string, ...any)) {
	need := d.HasFeedForward(FeedForwardMoE)
	switch {
	case d.NumLocalExperts < 0, need && d.NumLocalExperts == 0:
		bad("num_local_experts is %d, want ≥ 1 for the %q feed-forward", d.NumLocalExperts, FeedForwardMoE)
	case d.NumExpertsPerTok < 0, need && (d.NumExpertsPerTok == 0 || d.NumExpertsPerTok > d.NumLocalExperts):
		bad("num_experts_per_tok is %d, want 1 … %d (num_local_experts)", d.NumExpertsPerTok, d.NumLocalExperts)
	}
	if d.MoEIntermediateSize < 0 {
		bad("moe_intermediate_size is %d, want ≥ 1 (or 0 for intermediate_size)", d.MoEIntermediateSize)
	}
	if d.NSharedExperts < 0 {
		bad("n_shared_experts is %d, want ≥ 0", d.NSharedExperts)
	}
	if d.ScoringFunc != "" && d.ScoringFunc != ScoringSoftmax && d.ScoringFunc != ScoringSigmoid {
		bad("scoring_func %q is not %q or %q", d.ScoringFunc, ScoringSoftmax, ScoringSigmoid)
	}
	if !(d.CapacityFactor >= 0) || math.IsInf(d.CapacityFactor, 0) {
		bad("capacity_factor is %g, want ≥ 0 (0 is dropless)", d.CapacityFactor)
	}
	if !(d.RouterAuxLossCoef >= 0) {
		bad("router_aux_loss_coef is %g, want ≥ 0", d.RouterAuxLossCoef)
	}
	if !(d.RouterZLossCoef >= 0) {
		bad("router_z_loss_coef is %g, want ≥ 0", d.RouterZLossCoef)
	}
}

// DType is the parameters' dtype (torch_dtype), Float32 unless "float64".
func (c Config) DType() autodiff.DType {
	if c.TorchDType == "float64" {
		return autodiff.Float64
	}
	return autodiff.Float32
}

func keys[V any](m map[string]V) string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, fmt.Sprintf("%q", k))
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}

// configFields is Config without its methods, so json.Marshal of it does not
// recurse into MarshalJSON.
type configFields Config

// MarshalJSON writes the known keys, then the Extra ones, as one object with
// sorted keys.
func (c Config) MarshalJSON() ([]byte, error) {
	known, err := json.Marshal(configFields(c))
	if err != nil {
		return nil, err
	}
	if len(c.Extra) == 0 {
		return known, nil
	}
	all := map[string]json.RawMessage{}
	if err := json.Unmarshal(known, &all); err != nil {
		return nil, err
	}
	for k, v := range c.Extra {
		if _, dup := all[k]; !dup {
			all[k] = v
		}
	}
	return json.Marshal(all)
}

// UnmarshalJSON reads the known keys into the fields and keeps the others in Extra.
func (c *Config) UnmarshalJSON(data []byte) error {
	var f configFields
	if err := json.Unmarshal(data, &f); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return err
	}
	f.Extra = nil
	for k, v := range all {
		if !knownKeys[k] {
			if f.Extra == nil {
				f.Extra = map[string]json.RawMessage{}
			}
			f.Extra[k] = v
		}
	}
	*c = Config(f)
	return nil
}

// knownKeys are the config.json keys of Config's fields.
var knownKeys = func() map[string]bool {
	known := map[string]bool{}
	t := reflect.TypeFor[configFields]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			known[name] = true
		}
	}
	return known
}()

// ParseConfig reads a config.json document. Defaults are not filled in and the
// config is not validated: call [Config.Validate] (New does both).
func ParseConfig(data []byte) (Config, error) {
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return Config{}, fmt.Errorf("models: config.json: %w", err)
	}
	return c, nil
}

// JSON renders c as an indented config.json document with its defaults filled in.
func (c Config) JSON() ([]byte, error) {
	raw, err := json.Marshal(c.WithDefaults())
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// ReadConfig reads and validates a config.json file.
func ReadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("models: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// WriteConfig writes c, defaults filled in, to path as config.json.
func (c Config) WriteConfig(path string) error {
	data, err := c.JSON()
	if err != nil {
		return fmt.Errorf("models: config.json: %w", err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("models: %w", err)
	}
	return nil
}
