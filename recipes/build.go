package recipes

import (
	"fmt"
	"strings"

	"github.com/mlxtrain/mlxtrain/data"
	"github.com/mlxtrain/mlxtrain/optim"
)

// A LayerKind is one layer's mixer ("attention" or "ssm") and feed-forward
// ("dense" or "moe").
type LayerKind struct {
	Mixer, FFN string
}

// String writes the kind as a layer_pattern entry, "mixer:ffn".
func (k LayerKind) String() string { return k.Mixer + ":" + k.FFN }

// parseLayerKind reads a layer_pattern entry: "mixer" or "mixer:ffn".
func parseLayerKind(s string) (LayerKind, error) {
	mixer, ffn, hasFFN := strings.Cut(s, ":")
	if !hasFFN {
		ffn = "dense"
	}
	k := LayerKind{Mixer: mixer, FFN: ffn}
	if !contains(mixerKinds, mixer) {
		return k, fmt.Errorf("%q: mixer %s", s, choiceMsg(mixer, mixerKinds))
	}
	if !contains(ffnLayerKinds, ffn) {
		return k, fmt.Errorf("%q: feed-forward %s", s, choiceMsg(ffn, ffnLayerKinds))
	}
	return k, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// LayerKinds expands the layer pattern to one kind per layer.
func (m *ModelConfig) LayerKinds() ([]LayerKind, error) {
	if len(m.LayerPattern) == 0 || m.Layers%len(m.LayerPattern) != 0 {
		return nil, fmt.Errorf("recipe: model.layer_pattern has %d entries for %d layers", len(m.LayerPattern), m.Layers)
	}
	out := make([]LayerKind, 0, m.Layers)
	for len(out) < m.Layers {
		for _, e := range m.LayerPattern {
			k, err := parseLayerKind(e)
			if err != nil {
				return nil, fmt.Errorf("recipe: model.layer_pattern: %w", err)
			}
			out = append(out, k)
		}
	}
	return out, nil
}

// EffectiveHeadDim is HeadDim, or DModel/Heads when HeadDim is 0.
func (m *ModelConfig) EffectiveHeadDim() int {
	if m.HeadDim > 0 || m.Heads <= 0 {
		return m.HeadDim
	}
	return m.DModel / m.Heads
}

// EffectiveKVHeads is KVHeads, or Heads when KVHeads is 0.
func (m *ModelConfig) EffectiveKVHeads() int {
	if m.KVHeads > 0 {
		return m.KVHeads
	}
	return m.Heads
}

// EffectiveFFNWidth is FFNWidth, or FFNMult·DModel rounded up to a multiple
// of 8 when FFNWidth is 0 (8/3·128 gives 344).
func (m *ModelConfig) EffectiveFFNWidth() int {
	if m.FFNWidth > 0 {
		return m.FFNWidth
	}
	w := int(m.FFNMult*float64(m.DModel) + 0.5)
	return (w + 7) / 8 * 8
}

// EffectiveDTRank is SSM.DTRank, or ceil(DModel/16) when it is 0.
func (m *ModelConfig) EffectiveDTRank() int {
	if m.SSM.DTRank > 0 {
		return m.SSM.DTRank
	}
	return (m.DModel + 15) / 16
}

// MaxPositions is model.max_positions, or train.max_seq_length when it is 0.
func (r *Recipe) MaxPositions() int {
	if r.Model.MaxPositions > 0 {
		return r.Model.MaxPositions
	}
	return r.Train.MaxSeqLength
}

// tokenizerSize is the vocabulary size the tokenizer setting implies, and its
// name; 0 when only the file can tell.
func (d *DataConfig) tokenizerSize() (int, string) {
	switch d.Tokenizer {
	case "byte":
		return int(data.BytePAD) + 1, "byte"
	case "bpe":
		return d.BPEVocabSize, "bpe"
	}
	return 0, ""
}

// TaskSpec is the data.TaskSpec of [data.task], seeded with train.seed.
func (r *Recipe) TaskSpec() data.TaskSpec {
	t := r.Data.Task
	return data.TaskSpec{
		Kind:      t.Kind,
		MaxDigits: t.MaxDigits,
		MinLen:    t.MinLen,
		MaxLen:    t.MaxLen,
		Alphabet:  t.Alphabet,
		Values:    t.Values,
		Pairs:     t.Pairs,
		Queries:   t.Queries,
		HeldOut:   t.HeldOut,
		Seed:      r.Train.Seed,
	}
}

// Sources returns the data sources of the three splits; a split without
// files has no Paths (ValidSplit and TestSplit then apply to train).
func (r *Recipe) Sources() (train, valid, test data.Source) {
	d := r.Data
	format := data.Format(d.Format)
	if d.Format == "auto" {
		format = data.FormatAuto
	}
	src := func(paths []string) data.Source {
		return data.Source{
			Paths:           append([]string(nil), paths...),
			Format:          format,
			TextField:       d.TextField,
			PromptField:     d.PromptField,
			CompletionField: d.CompletionField,
			MessagesField:   d.MessagesField,
		}
	}
	return src(d.Train), src(d.Valid), src(d.Test)
}

// BatchConfig is the batcher's configuration for the tokenizer's EOS and PAD.
func (r *Recipe) BatchConfig(tok data.Tokenizer) data.BatchConfig {
	sp := tok.Special()
	pad := sp.PAD
	if pad < 0 {
		pad = sp.EOS
	}
	return data.BatchConfig{
		Packing:   data.Packing{SeqLen: r.Train.MaxSeqLength, EOS: sp.EOS, PAD: pad, PadEach: !r.Data.Pack},
		BatchSize: r.Train.BatchSize,
		Seed:      r.Train.Seed,
	}
}

// Schedule builds the learning-rate schedule of a run of steps optimizer
// steps: the warmup joined (optim.Join) with the main schedule, whose length
// is lr_schedule.decay_steps or, when that is 0, the steps after the warmup.
func (r *Recipe) Schedule(steps int) (optim.Schedule, error) {
	s, lr := r.LRSchedule, r.Optimizer.LearningRate
	decay := s.DecaySteps
	if decay == 0 {
		decay = max(steps-s.Warmup, 1)
	}
	var main optim.Schedule
	switch s.Name {
	case "constant":
		main = optim.Constant(lr)
	case "cosine":
		main = optim.CosineDecay{Init: lr, Final: s.FinalLR, Steps: decay}
	case "linear":
		main = optim.LinearDecay{Init: lr, Final: s.FinalLR, Steps: decay}
	case "step":
		main = optim.StepDecay{Init: lr, Gamma: s.Gamma, Every: s.StepSize}
	default:
		return nil, fmt.Errorf("recipe: lr_schedule.name: %s", choiceMsg(s.Name, scheduleNames))
	}
	if s.Warmup == 0 {
		return main, nil
	}
	return optim.Join([]optim.Schedule{
		optim.LinearWarmup{Init: s.WarmupInit, Peak: lr, Steps: s.Warmup},
		main,
	}, []int{s.Warmup})
}

// NewOptimizer builds the [optimizer] over params, with the schedule of a run
// of steps optimizer steps (see Schedule).
func (r *Recipe) NewOptimizer(params []optim.Param, steps int) (*optim.Optimizer, error) {
	lr, err := r.Schedule(steps)
	if err != nil {
		return nil, err
	}
	o := r.Optimizer
	switch o.Name {
	case "adamw", "adam":
		cfg := optim.AdamConfig{LR: lr, Beta1: o.Betas[0], Beta2: o.Betas[1], Eps: o.Eps, WeightDecay: o.WeightDecay}
		if o.Name == "adam" {
			return optim.NewAdam(params, cfg)
		}
		return optim.NewAdamW(params, cfg)
	case "sgd":
		return optim.NewSGD(params, optim.SGDConfig{LR: lr, Momentum: o.Momentum, Dampening: o.Dampening,
			Nesterov: o.Nesterov, WeightDecay: o.WeightDecay})
	case "lion":
		return optim.NewLion(params, optim.LionConfig{LR: lr, Beta1: o.Betas[0], Beta2: o.Betas[1],
			WeightDecay: o.WeightDecay})
	}
	return nil, fmt.Errorf("recipe: optimizer.name: %s", choiceMsg(o.Name, optimizerNames))
}
