package recipes

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/checkpoints"
	"github.com/mlxtrain/mlxtrain/data"
	"github.com/mlxtrain/mlxtrain/layers"
	"github.com/mlxtrain/mlxtrain/models"
)

// A fine-tune (model.from set) starts from a trained checkpoint. Its config.json
// decides the architecture: the recipe's [model] keys that were given (in the
// file, with Set, or through model.family) must agree with it, and those left
// out take the base's values, so the effective recipe says what ran. Its
// tokenizer.json replaces data.tokenizer. With train.fine_tune_type "full"
// every weight trains from the base's values with a fresh optimizer; with
// "lora" the base is frozen and only the [lora] adapters train.

// fineTune is what a run keeps of its base model.
type fineTune struct {
	base    *Loaded
	baseSum string // SHA-256 of the base's weights file
	modules []string
	frozen  map[*autodiff.Tensor]bool
}

// prepareFineTune loads model.from and returns a copy of the recipe whose
// architecture keys are checked against the base and filled from it, with
// model.from the absolute checkpoint directory (so the saved recipe names the
// same base from anywhere). For a run from scratch it returns r and nil.
func (r *Recipe) prepareFineTune() (*Recipe, *fineTune, error) {
	if r.Model.From == "" {
		return r, nil, nil
	}
	rc := *r
	r = &rc
	base, err := LoadModel(r.Model.From)
	if err != nil {
		return nil, nil, fmt.Errorf("model.from: %w", err)
	}
	mergeAdapters(base.Model) // a LoRA checkpoint as base: start from base+adapters
	if abs, err := filepath.Abs(base.Dir); err == nil {
		base.Dir = abs
	}
	sum, err := weightsSHA256(base.Dir)
	if err != nil {
		return nil, nil, fmt.Errorf("model.from: %w", err)
	}
	if err := r.matchBase(base.Model.Config, filepath.Join(base.Dir, checkpoints.ConfigFile)); err != nil {
		return nil, nil, err
	}
	r.Model.From = base.Dir
	return r, &fineTune{base: base, baseSum: sum}, nil
}

// MatchBase checks the [model] keys against the config.json of model.from
// and fills those left out from it, as Fit does before it trains: call it to
// print the effective recipe of a fine-tune. It reads config.json only, and
// does nothing without model.from.
func (r *Recipe) MatchBase() error {
	if r.Model.From == "" {
		return nil
	}
	dir, err := ResolveCheckpoint(r.Model.From)
	if err != nil {
		return fmt.Errorf("model.from: %w", err)
	}
	name := filepath.Join(dir, checkpoints.ConfigFile)
	b, err := os.ReadFile(name)
	if err != nil {
		return fmt.Errorf("model.from: %w", err)
	}
	cfg, err := models.ParseConfig(b)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		return fmt.Errorf("model.from: %s: %w", name, err)
	}
	return r.matchBase(cfg, name)
}

// archKey is one [model] key as the base's config.json gives it.
type archKey struct {
	key        string
	recipe     any // the recipe's effective value
	base       any // the base's
	set        func(m *ModelConfig)
	fromFamily bool // model.family sets it (ffn, norm, positions, bias, tie_embeddings)
}

// matchBase compares the architecture keys with the base config c: a key the
// recipe gave that disagrees is an error naming both values; the rest take the
// base's values.
func (r *Recipe) matchBase(c models.Config, cfgFile string) error {
	c = c.WithDefaults()
	m := &r.Model
	ffn := c.HiddenAct
	switch {
	case c.MLPGated && c.HiddenAct == "silu":
		ffn = "swiglu"
	case c.HiddenAct == "gelu_pytorch_tanh" || c.HiddenAct == "gelu_new" || c.HiddenAct == "gelu_tanh":
		ffn = "gelu_tanh"
	}
	norm, eps := "layernorm", c.LayerNormEps
	if c.NormType == models.NormRMS {
		norm, eps = "rmsnorm", c.RMSNormEps
	}
	var pattern []string
	for i := range c.NumHiddenLayers {
		mixer := "attention"
		if c.LayerTypes[i] == models.MixerMamba {
			mixer = "ssm"
		}
		ff := "dense"
		if c.FeedForwardTypes[i] == models.FeedForwardMoE {
			ff = "moe"
		}
		pattern = append(pattern, mixer+":"+ff)
	}
	var recipePattern []string
	if kinds, err := m.LayerKinds(); err == nil {
		for _, k := range kinds {
			recipePattern = append(recipePattern, k.String())
		}
	}
	keys := []archKey{
		{"model.vocab_size", m.VocabSize, c.VocabSize, func(m *ModelConfig) { m.VocabSize = c.VocabSize }, false},
		{"model.d_model", m.DModel, c.HiddenSize, func(m *ModelConfig) { m.DModel = c.HiddenSize }, false},
		{"model.layers", m.Layers, c.NumHiddenLayers, func(m *ModelConfig) { m.Layers = c.NumHiddenLayers }, false},
		{"model.heads", m.Heads, c.NumAttentionHeads, func(m *ModelConfig) { m.Heads = c.NumAttentionHeads }, false},
		{"model.kv_heads", m.EffectiveKVHeads(), c.NumKeyValueHeads, func(m *ModelConfig) { m.KVHeads = c.NumKeyValueHeads }, false},
		{"model.head_dim", m.EffectiveHeadDim(), c.HeadDim, func(m *ModelConfig) { m.HeadDim = c.HeadDim }, false},
		{"model.ffn", m.FFN, ffn, func(m *ModelConfig) { m.FFN = ffn }, true},
		{"model.ffn_width", m.EffectiveFFNWidth(), c.IntermediateSize, func(m *ModelConfig) { m.FFNWidth = c.IntermediateSize }, false},
		{"model.ffn_mult", m.EffectiveFFNWidth(), c.IntermediateSize, func(*ModelConfig) {}, false},
		{"model.norm", m.Norm, norm, func(m *ModelConfig) { m.Norm = norm }, true},
		{"model.norm_eps", m.NormEps, eps, func(m *ModelConfig) { m.NormEps = eps }, false},
		{"model.positions", m.Positions, c.PositionEmbeddingType, func(m *ModelConfig) { m.Positions = c.PositionEmbeddingType }, true},
		{"model.rope_interleaved", m.RopeInterleaved, c.RopeTraditional, func(m *ModelConfig) { m.RopeInterleaved = c.RopeTraditional }, false},
		{"model.max_positions", r.MaxPositions(), c.MaxPositionEmbeddings, func(m *ModelConfig) {
			m.MaxPositions = c.MaxPositionEmbeddings
			if c.PositionEmbeddingType != models.PositionsLearned && m.MaxPositions < r.Train.MaxSeqLength {
				m.MaxPositions = 0 // only a learned table bounds the length
			}
		}, false},
		{"model.window", m.Window, c.SlidingWindow, func(m *ModelConfig) { m.Window = c.SlidingWindow }, false},
		{"model.bias", m.Bias, c.AttentionBias || c.MLPBias, func(m *ModelConfig) { m.Bias = c.AttentionBias || c.MLPBias }, true},
		{"model.tie_embeddings", m.TieEmbeddings, c.TieWordEmbeddings, func(m *ModelConfig) { m.TieEmbeddings = c.TieWordEmbeddings }, true},
		{"model.layer_pattern", recipePattern, pattern, func(m *ModelConfig) { m.LayerPattern = pattern }, false},
		{"model.dtype", m.DType, c.TorchDType, func(m *ModelConfig) { m.DType = c.TorchDType }, false},
	}
	if c.PositionEmbeddingType == models.PositionsRoPE {
		keys = append(keys, archKey{"model.rope_theta", m.RopeTheta, c.RopeTheta, func(m *ModelConfig) { m.RopeTheta = c.RopeTheta }, false})
	}
	if c.HasMixer(models.MixerMamba) {
		keys = append(keys,
			archKey{"model.ssm.d_state", m.SSM.DState, c.StateSize, func(m *ModelConfig) { m.SSM.DState = c.StateSize }, false},
			archKey{"model.ssm.d_conv", m.SSM.DConv, c.ConvKernel, func(m *ModelConfig) { m.SSM.DConv = c.ConvKernel }, false},
			archKey{"model.ssm.expand", m.SSM.Expand, c.Expand, func(m *ModelConfig) { m.SSM.Expand = c.Expand }, false},
			archKey{"model.ssm.dt_rank", m.EffectiveDTRank(), c.TimeStepRank, func(m *ModelConfig) { m.SSM.DTRank = c.TimeStepRank }, false})
	}
	if c.HasFeedForward(models.FeedForwardMoE) {
		keys = append(keys,
			archKey{"model.moe.experts", m.MoE.Experts, c.NumLocalExperts, func(m *ModelConfig) { m.MoE.Experts = c.NumLocalExperts }, false},
			archKey{"model.moe.top_k", m.MoE.TopK, c.NumExpertsPerTok, func(m *ModelConfig) { m.MoE.TopK = c.NumExpertsPerTok }, false},
			archKey{"model.moe.shared_experts", m.MoE.SharedExperts, c.NSharedExperts, func(m *ModelConfig) { m.MoE.SharedExperts = c.NSharedExperts }, false},
			archKey{"model.moe.capacity_factor", m.MoE.CapacityFactor, c.CapacityFactor, func(m *ModelConfig) { m.MoE.CapacityFactor = c.CapacityFactor }, false},
			archKey{"model.moe.router", m.MoE.Router, c.ScoringFunc, func(m *ModelConfig) { m.MoE.Router = c.ScoringFunc }, false},
			archKey{"model.moe.aux_loss_coef", m.MoE.AuxLossCoef, c.RouterAuxLossCoef, func(m *ModelConfig) { m.MoE.AuxLossCoef = c.RouterAuxLossCoef }, false},
			archKey{"model.moe.z_loss_coef", m.MoE.ZLossCoef, c.RouterZLossCoef, func(m *ModelConfig) { m.MoE.ZLossCoef = c.RouterZLossCoef }, false})
	}
	var errs Errors
	if c.PositionEmbeddingType == models.PositionsLearned && r.Train.MaxSeqLength > c.MaxPositionEmbeddings {
		o := r.origin["train.max_seq_length"]
		errs = append(errs, &Error{Source: o.source, Line: o.line, Key: "train.max_seq_length",
			Msg: fmt.Sprintf("train.max_seq_length = %d exceeds the base model's learned positions (max_position_embeddings %d in %s)",
				r.Train.MaxSeqLength, c.MaxPositionEmbeddings, cfgFile)})
	}
	for _, k := range keys {
		o, given := r.origin[k.key]
		via := ""
		if !given && k.fromFamily {
			if o, given = r.origin["model.family"]; given {
				via = fmt.Sprintf(" (set by model.family = %q)", m.Family)
			}
		}
		if given && !sameValue(k.recipe, k.base) {
			errs = append(errs, &Error{Source: o.source, Line: o.line, Key: k.key,
				Msg: fmt.Sprintf("%s = %s%s but the base model has %s (%s): the architecture keys of a fine-tune must match its base, or be left out",
					k.key, valueText(k.recipe), via, valueText(k.base), cfgFile)})
		}
	}
	if len(errs) > 0 {
		return errs
	}
	for _, k := range keys {
		k.set(m)
	}
	return nil
}

func sameValue(a, b any) bool {
	if as, ok := a.([]string); ok {
		bs, _ := b.([]string)
		return slices.Equal(as, bs)
	}
	return a == b
}

func valueText(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case float64:
		return formatFloat(x)
	case []string:
		q := make([]string, len(x))
		for i, s := range x {
			q[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	return fmt.Sprint(v)
}

// baseTokenizer reads the tokenizer.json of model.from (for the data of a
// fine-tune, also when Evaluate reads a fine-tune's recipe).
func (r *Recipe) baseTokenizer() (*data.BPE, error) {
	dir, err := ResolveCheckpoint(r.Model.From)
	if err != nil {
		return nil, fmt.Errorf("model.from: %w", err)
	}
	// Only tokenizer.json is read: Fit has checked the whole checkpoint
	// (LoadModel), and eval needs no more.
	name := filepath.Join(dir, checkpoints.TokenizerFile)
	tok, err := data.LoadTokenizer(name)
	if err != nil {
		return nil, fmt.Errorf("model.from: %w", err) // the error names the file
	}
	return tok, nil
}

// sameTokenizerAsBase checks that a synthetic task's tokenizer is model.from's
// (a task tokenizes its own problems, so it cannot take the base's).
func (r *Recipe) sameTokenizerAsBase(tok *data.BPE) error {
	if r.Model.From == "" {
		return nil
	}
	base, err := r.baseTokenizer()
	if err != nil {
		return err
	}
	a, err1 := base.MarshalJSON()
	b, err2 := tok.MarshalJSON()
	if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
		return fmt.Errorf("data.task: the %s task's tokenizer (%d ids) is not the tokenizer of model.from (%d ids): fine-tune a model trained on the same task kind",
			r.Data.Task.Kind, tok.VocabSize(), base.VocabSize())
	}
	return nil
}

// buildModel makes the run's model and the parameters the optimizer trains:
// a fresh model, the base's weights (full fine-tune), or the frozen base with
// adapters (LoRA), whose adapter matrices are then the only trained parameters.
func (ru *run) buildModel(vocab int) error {
	r := ru.r
	if ru.ft == nil {
		cfg, err := r.ModelConfig(vocab)
		if err != nil {
			return fmt.Errorf("recipe: %w", err)
		}
		if ru.model, err = models.New(cfg, autodiff.NewRNG(r.Train.Seed)); err != nil {
			return fmt.Errorf("recipe: model: %w", err)
		}
		ru.params = ru.model.Params()
		return nil
	}
	ru.model = ru.ft.base.Model
	if vocab > ru.model.Config.VocabSize {
		return fmt.Errorf("model.from: the base model has %d token ids but the data's tokenizer has %d", ru.model.Config.VocabSize, vocab)
	}
	if r.Train.FineTuneType != "lora" {
		ru.params = ru.model.Params()
		fmt.Fprintf(ru.log, "fine-tune: all %d parameters of %s\n", ru.model.NumParams(), ru.ft.base.Dir)
		return nil
	}
	ru.ft.frozen = map[*autodiff.Tensor]bool{}
	for _, p := range ru.model.Params() {
		ru.ft.frozen[p.Value] = true
	}
	// An op records only when an input is on the tape, and the tape frees only
	// what it recorded: with every base weight frozen, the ops before the first
	// adapter (embedding, norm, the unadapted projections of layer 0) would
	// leave their outputs to the garbage collector, which lets tens of MiB pile
	// up. Watching one small parameter at the bottom, whose gradient costs
	// little (the learned positions, else layer 0's input norm), puts those ops
	// on the tape too; its gradient is dropped with the tape, and the optimizer
	// never sees it.
	if m := ru.model; m.Positions != nil {
		delete(ru.ft.frozen, m.Positions.Weight)
	} else if ps := m.Layers[0].InputNorm.Params(""); len(ps) > 0 {
		delete(ru.ft.frozen, ps[0].Value)
	}
	modules, err := attachLoRA(ru.model, r.LoRA, autodiff.NewRNG(r.Train.Seed))
	if err != nil {
		return err
	}
	ru.ft.modules = modules
	for _, nl := range ru.model.Linears() {
		if nl.Linear.LoRA != nil {
			ru.params = append(ru.params, nl.Linear.LoRA.Params(nl.Name+".")...)
		}
	}
	trainable := 0
	for _, p := range ru.params {
		trainable += p.Value.Len()
	}
	total := ru.model.NumParams()
	fmt.Fprintf(ru.log, "lora: %d adapters of rank %d on %s; trainable parameters %d of %d (%.3f%%), base %s frozen\n",
		len(modules), r.LoRA.Rank, strings.Join(modulePatterns(modules), ", "), trainable, total,
		100*float64(trainable)/float64(total), ru.ft.base.Dir)
	return nil
}

// attachLoRA gives adapters to the linears that lora.keys select in the last
// lora.num_layers blocks (every block, and the linears outside the blocks such
// as lm_head, with -1), and returns their module paths.
func attachLoRA(m *models.Model, l LoRAConfig, rng *autodiff.RNG) ([]string, error) {
	all := m.Linears()
	first := 0
	if l.NumLayers >= 0 {
		first = len(m.Layers) - l.NumLayers
	}
	var eligible []layers.NamedLinear
	for _, nl := range all {
		if layer, ok := blockIndex(nl.Name); ok && layer >= first || !ok && l.NumLayers < 0 {
			eligible = append(eligible, nl)
		}
	}
	matched := false
	for _, nl := range eligible {
		if layers.MatchesLoRAKey(nl.Name, l.Keys) {
			matched = true
			break
		}
	}
	if !matched {
		names := make([]string, len(all))
		for i, nl := range all {
			names[i] = nl.Name
		}
		where := ""
		if l.NumLayers >= 0 {
			where = fmt.Sprintf(" in the last %d blocks (lora.num_layers)", l.NumLayers)
		}
		return nil, fmt.Errorf("lora.keys %s match no linear layer of the model%s; its linear layers are %s",
			valueText(l.Keys), where, strings.Join(modulePatterns(names), ", "))
	}
	return layers.AttachLoRA(rng, eligible, layers.LoRAConfig{Rank: l.Rank, Scale: l.Scale, Dropout: l.Dropout, Keys: l.Keys})
}

// blockIndex returns i of a "model.layers.{i}." module path.
func blockIndex(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, "model.layers.")
	if !ok {
		return 0, false
	}
	digits, _, _ := strings.Cut(rest, ".")
	i, err := strconv.Atoi(digits)
	return i, err == nil
}

// modulePatterns shortens module paths for messages: the block index becomes
// "*" ("model.layers.*.self_attn.q_proj"), each pattern once, in first-seen
// order.
func modulePatterns(names []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, n := range names {
		p := n
		if _, ok := blockIndex(n); ok {
			rest := strings.TrimPrefix(n, "model.layers.")
			_, tail, _ := strings.Cut(rest, ".")
			p = "model.layers.*." + tail
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// lora reports whether the run trains adapters.
func (ru *run) lora() bool { return ru.ft != nil && ru.ft.frozen != nil }

// putWeights puts the model's trained weights into a checkpoint: every
// parameter (model.safetensors), or for a LoRA run only the adapters
// (adapters.safetensors and adapter_config.json).
func (ru *run) putWeights(ck *checkpoints.Checkpoint) error {
	if !ru.lora() {
		ck.Model = ru.model.StateDict()
		return nil
	}
	l := ru.r.LoRA
	ac := AdapterConfig{FineTuneType: "lora", NumLayers: l.NumLayers, Modules: ru.ft.modules,
		BaseModel: ru.ft.base.Dir, BaseSHA256: ru.ft.baseSum}
	ac.LoRA.Rank, ac.LoRA.Scale, ac.LoRA.Dropout, ac.LoRA.Keys = l.Rank, l.Scale, l.Dropout, l.Keys
	b, err := json.MarshalIndent(ac, "", "  ")
	if err != nil {
		return err
	}
	ck.Adapters, _ = adapterTensors(ru.model)
	ck.AdapterConfig = append(b, '\n')
	return nil
}

// loadWeights restores the trained weights of a checkpoint being resumed.
func (ru *run) loadWeights(ck *checkpoints.Checkpoint, dir string) error {
	if !ru.lora() {
		if ck.Model == nil {
			return fmt.Errorf("--resume %s: a LoRA checkpoint (adapters only), but train.fine_tune_type = %q", dir, ru.r.Train.FineTuneType)
		}
		if err := ru.model.LoadStateDict(ck.Model); err != nil {
			return fmt.Errorf("--resume %s: model.safetensors: %w", dir, err)
		}
		return nil
	}
	file := filepath.Join(dir, checkpoints.AdaptersFile)
	if ck.Adapters == nil {
		return fmt.Errorf("--resume %s: no %s, but train.fine_tune_type = \"lora\"", dir, checkpoints.AdaptersFile)
	}
	var ac AdapterConfig
	if err := json.Unmarshal(ck.AdapterConfig, &ac); err != nil {
		return fmt.Errorf("--resume %s: %w", filepath.Join(dir, checkpoints.AdapterConfigFile), err)
	}
	if ac.BaseSHA256 != ru.ft.baseSum {
		return fmt.Errorf("--resume %s: its adapters were trained on another base model (%s) than model.from (%s)", dir, ac.BaseModel, ru.ft.base.Dir)
	}
	own, modules := adapterTensors(ru.model)
	if !slices.Equal(modules, ac.Modules) {
		return fmt.Errorf("--resume %s: %s adapts %d modules, the recipe's [lora] %d", dir, checkpoints.AdapterConfigFile, len(ac.Modules), len(modules))
	}
	names := make([]string, 0, len(own))
	for name := range own {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t, dst := ck.Adapters[name], own[name]
		if t == nil {
			return fmt.Errorf("--resume %s: no tensor %s", file, name)
		}
		if t.DType() != dst.DType() || !equalInts(t.Shape(), dst.Shape()) {
			return fmt.Errorf("--resume %s: %s is %s %v, want %s %v", file, name, t.DType(), t.Shape(), dst.DType(), dst.Shape())
		}
		copyTensor(dst, t)
	}
	return nil
}

func copyTensor(dst, src *autodiff.Tensor) {
	switch dst.DType() {
	case autodiff.Float32:
		copy(dst.Float32s(), src.Float32s())
	case autodiff.Float64:
		copy(dst.Float64s(), src.Float64s())
	default:
		panic("recipes: copyTensor of " + dst.DType().String())
	}
}

// frozen is the set of parameters that get no gradient: the base weights of a
// LoRA run, nil otherwise.
func (ru *run) frozen() map[*autodiff.Tensor]bool {
	if ru.ft == nil {
		return nil
	}
	return ru.ft.frozen
}
