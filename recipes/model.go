package recipes

import (
	"fmt"

	"github.com/mlxtrain/mlxtrain/models"
)

// ModelConfig translates the recipe's [model] section into the model's config.json
// form, for a tokenizer of vocab ids.
func (r *Recipe) ModelConfig(vocab int) (models.Config, error) {
	m := r.Model
	if m.VocabSize > 0 {
		if m.VocabSize < vocab {
			return models.Config{}, fmt.Errorf("model.vocab_size = %d is smaller than the tokenizer's %d ids", m.VocabSize, vocab)
		}
		vocab = m.VocabSize
	}
	kinds, err := m.LayerKinds()
	if err != nil {
		return models.Config{}, fmt.Errorf("model.layer_pattern: %w", err)
	}
	cfg := models.Config{
		ModelType:             "mlxtrain",
		VocabSize:             vocab,
		HiddenSize:            m.DModel,
		NumHiddenLayers:       m.Layers,
		NumAttentionHeads:     m.Heads,
		NumKeyValueHeads:      m.EffectiveKVHeads(),
		HeadDim:               m.EffectiveHeadDim(),
		IntermediateSize:      m.EffectiveFFNWidth(),
		MLPBias:               m.Bias,
		AttentionBias:         m.Bias,
		NormBias:              m.Bias,
		MaxPositionEmbeddings: r.MaxPositions(),
		RopeTheta:             m.RopeTheta,
		RopeTraditional:       m.RopeInterleaved,
		SlidingWindow:         m.Window,
		TieWordEmbeddings:     m.TieEmbeddings,
		InitializerRange:      m.InitStd,
		InitScheme:            m.Init,
		TorchDType:            m.DType,
	}
	switch m.FFN {
	case "gelu":
		cfg.HiddenAct = "gelu"
	case "gelu_tanh":
		cfg.HiddenAct = "gelu_pytorch_tanh"
	case "relu":
		cfg.HiddenAct = "relu"
	case "swiglu":
		cfg.HiddenAct, cfg.MLPGated = "silu", true
	default:
		return models.Config{}, fmt.Errorf("model.ffn = %q is not supported by the model", m.FFN)
	}
	switch m.Norm {
	case "rmsnorm":
		cfg.NormType, cfg.RMSNormEps = models.NormRMS, m.NormEps
	default:
		cfg.NormType, cfg.LayerNormEps = models.NormLayer, m.NormEps
	}
	switch m.Positions {
	case "learned":
		cfg.PositionEmbeddingType = "learned"
	case "rope":
		cfg.PositionEmbeddingType = "rope"
	default:
		cfg.PositionEmbeddingType = "none"
	}
	for _, k := range kinds {
		switch k.Mixer {
		case "attention":
			if m.Window > 0 {
				cfg.LayerTypes = append(cfg.LayerTypes, models.MixerSlidingAttention)
			} else {
				cfg.LayerTypes = append(cfg.LayerTypes, models.MixerFullAttention)
			}
		case "ssm":
			cfg.LayerTypes = append(cfg.LayerTypes, models.MixerMamba)
		default:
			return models.Config{}, fmt.Errorf("model.layer_pattern: mixer %q is not available yet", k.Mixer)
		}
		switch k.FFN {
		case "dense":
			cfg.FeedForwardTypes = append(cfg.FeedForwardTypes, models.FeedForwardMLP)
		case "moe":
			cfg.FeedForwardTypes = append(cfg.FeedForwardTypes, models.FeedForwardMoE)
		default:
			return models.Config{}, fmt.Errorf("model.layer_pattern: feed-forward %q is not available yet", k.FFN)
		}
	}
	// [model.ssm] and [model.moe] go into config.json only when a layer uses them.
	if cfg.HasMixer(models.MixerMamba) {
		s := m.SSM
		cfg.StateSize, cfg.ConvKernel, cfg.Expand, cfg.TimeStepRank = s.DState, s.DConv, s.Expand, m.EffectiveDTRank()
	}
	if cfg.HasFeedForward(models.FeedForwardMoE) {
		e := m.MoE
		cfg.NumLocalExperts, cfg.NumExpertsPerTok, cfg.NSharedExperts = e.Experts, e.TopK, e.SharedExperts
		cfg.MoEIntermediateSize = cfg.IntermediateSize // each expert as wide as the dense MLP
		cfg.CapacityFactor, cfg.RouterAuxLossCoef, cfg.RouterZLossCoef = e.CapacityFactor, e.AuxLossCoef, e.ZLossCoef
		switch e.Router {
		case "", "softmax":
			cfg.ScoringFunc = models.ScoringSoftmax
		case "sigmoid":
			cfg.ScoringFunc = models.ScoringSigmoid
		default:
			return models.Config{}, fmt.Errorf("model.moe.router = %q is not supported by the model", e.Router)
		}
	}
	return cfg, nil
}
