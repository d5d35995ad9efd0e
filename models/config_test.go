package models

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConfigRoundTrip(t *testing.T) {
	sliding := GPT2Config(50, 16, 3, 4, 64)
	sliding.SlidingWindow = 8
	sliding.LayerTypes = []string{MixerFullAttention, MixerSlidingAttention, MixerFullAttention}
	for name, cfg := range map[string]Config{
		"gpt2":    GPT2Config(65, 128, 4, 4, 128),
		"llama":   LlamaConfig(32000, 64, 2, 8, 2, 172, 2048),
		"sliding": sliding,
		"zero":    {VocabSize: 7, HiddenSize: 8, NumHiddenLayers: 1, NumAttentionHeads: 2},
	} {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, cfg.Validate())
			data, err := cfg.JSON()
			require.NoError(t, err)
			back, err := ParseConfig(data)
			require.NoError(t, err)
			assert.Equal(t, cfg.WithDefaults(), back)
			again, err := back.JSON()
			require.NoError(t, err)
			assert.JSONEq(t, string(data), string(again))
		})
	}
}

// hybridConfig is a tiny llama-style model with attention, Mamba and MoE layers.
func hybridConfig() Config {
	cfg := LlamaConfig(13, 8, 3, 2, 1, 12, 32)
	cfg.LayerTypes = []string{MixerMamba, MixerFullAttention, MixerMamba}
	cfg.FeedForwardTypes = []string{FeedForwardMoE, FeedForwardMLP, FeedForwardMoE}
	cfg.StateSize, cfg.ConvKernel, cfg.Expand, cfg.TimeStepRank = 3, 3, 2, 2
	cfg.NumLocalExperts, cfg.NumExpertsPerTok, cfg.MoEIntermediateSize = 3, 2, 6
	cfg.NSharedExperts, cfg.ScoringFunc, cfg.CapacityFactor = 1, ScoringSigmoid, 1.5
	cfg.RouterAuxLossCoef, cfg.RouterZLossCoef = 0.01, 0.001
	return cfg
}

func TestConfigHybridKeys(t *testing.T) {
	cfg := hybridConfig()
	require.NoError(t, cfg.Validate())
	data, err := cfg.JSON()
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(data, &m))
	for key, want := range map[string]any{
		"state_size": 3.0, "conv_kernel": 3.0, "expand": 2.0, "time_step_rank": 2.0,
		"num_local_experts": 3.0, "num_experts_per_tok": 2.0, "moe_intermediate_size": 6.0, "n_shared_experts": 1.0,
		"scoring_func": "sigmoid", "capacity_factor": 1.5, "router_aux_loss_coef": 0.01, "router_z_loss_coef": 0.001,
		"layer_types": []any{"mamba", "full_attention", "mamba"}, "feed_forward_types": []any{"moe", "mlp", "moe"},
	} {
		assert.Equal(t, want, m[key], key)
	}
	back, err := ParseConfig(data)
	require.NoError(t, err)
	assert.Empty(t, back.Extra, "every key is known")
	assert.Equal(t, cfg.WithDefaults(), back)

	// Defaults are filled only for the kinds in use, and a plain model writes
	// none of these keys.
	plain, err := LlamaConfig(13, 32, 2, 2, 1, 12, 32).JSON()
	require.NoError(t, err)
	for _, key := range []string{"state_size", "num_local_experts", "scoring_func", "router_aux_loss_coef"} {
		assert.NotContains(t, string(plain), key)
	}
	d := Config{VocabSize: 5, HiddenSize: 40, NumHiddenLayers: 2, NumAttentionHeads: 2, NumLocalExperts: 8,
		LayerTypes: []string{"mamba", "mamba"}, FeedForwardTypes: []string{"moe", "moe"}}.WithDefaults()
	assert.Equal(t, [4]int{16, 4, 2, 3}, [4]int{d.StateSize, d.ConvKernel, d.Expand, d.TimeStepRank})
	assert.Equal(t, 2, d.NumExpertsPerTok)
	assert.Equal(t, 160, d.MoEIntermediateSize)
	assert.Equal(t, "softmax", d.ScoringFunc)
}

// TestConfigHuggingFaceKeys reads a llama config.json as Hugging Face writes it:
// known keys land in the fields, the others are kept and written back.
func TestConfigHuggingFaceKeys(t *testing.T) {
	const hf = `{
  "architectures": ["LlamaForCausalLM"],
  "bos_token_id": 1,
  "hidden_act": "silu",
  "hidden_size": 64,
  "intermediate_size": 172,
  "max_position_embeddings": 2048,
  "model_type": "llama",
  "num_attention_heads": 8,
  "num_hidden_layers": 2,
  "num_key_value_heads": 2,
  "rms_norm_eps": 1e-05,
  "rope_theta": 500000.0,
  "tie_word_embeddings": true,
  "vocab_size": 32000
}`
	cfg, err := ParseConfig([]byte(hf))
	require.NoError(t, err)
	assert.Equal(t, "llama", cfg.ModelType)
	assert.Equal(t, 64, cfg.HiddenSize)
	assert.Equal(t, 2, cfg.NumKeyValueHeads)
	assert.Equal(t, 500000.0, cfg.RopeTheta)
	assert.Equal(t, 1e-5, cfg.RMSNormEps)
	assert.True(t, cfg.TieWordEmbeddings)
	assert.Equal(t, map[string]json.RawMessage{
		"architectures": json.RawMessage(`["LlamaForCausalLM"]`),
		"bos_token_id":  json.RawMessage(`1`),
	}, cfg.Extra)
	out, err := cfg.JSON()
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(out, &m))
	assert.Equal(t, []any{"LlamaForCausalLM"}, m["architectures"])
	assert.Equal(t, 1.0, m["bos_token_id"])

	_, err = ParseConfig([]byte(`{"hidden_size": "wide"}`))
	assert.ErrorContains(t, err, "hidden_size")
}

func TestConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	cfg := LlamaConfig(100, 32, 2, 4, 2, 64, 256)
	require.NoError(t, cfg.WriteConfig(path))
	back, err := ReadConfig(path)
	require.NoError(t, err)
	assert.Equal(t, cfg.WithDefaults(), back)

	require.NoError(t, os.WriteFile(path, []byte(`{"vocab_size": 10, "hidden_size": 10, "num_hidden_layers": 1, "num_attention_heads": 3}`), 0o644))
	_, err = ReadConfig(path)
	assert.ErrorContains(t, err, "num_attention_heads (3) must divide hidden_size (10)")
	_, err = ReadConfig(filepath.Join(t.TempDir(), "missing.json"))
	assert.Error(t, err)
}

func TestConfigValidate(t *testing.T) {
	base := func() Config { return GPT2Config(10, 16, 2, 4, 32) }
	cases := []struct {
		name string
		edit func(*Config)
		want string // "" for valid
	}{
		{"gpt2", func(*Config) {}, ""},
		{"llama", func(c *Config) { *c = LlamaConfig(10, 16, 2, 4, 2, 32, 32) }, ""},
		{"vocab", func(c *Config) { c.VocabSize = 0 }, "vocab_size is 0"},
		{"hidden", func(c *Config) { c.HiddenSize = -1 }, "hidden_size is -1"},
		{"layers", func(c *Config) { c.NumHiddenLayers = 0 }, "num_hidden_layers is 0"},
		{"heads", func(c *Config) { c.NumAttentionHeads = 0 }, "num_attention_heads is 0"},
		{"heads divide hidden", func(c *Config) { c.NumAttentionHeads = 3 }, "num_attention_heads (3) must divide hidden_size (16)"},
		{"head_dim set", func(c *Config) { c.NumAttentionHeads = 3; c.HeadDim = 8 }, ""},
		{"head_dim negative", func(c *Config) { c.HeadDim = -2 }, "head_dim is -2"},
		{"kv heads", func(c *Config) { c.NumKeyValueHeads = 3 }, "num_key_value_heads (3) must divide num_attention_heads (4)"},
		{"kv heads negative", func(c *Config) { c.NumKeyValueHeads = -1 }, "num_key_value_heads is -1"},
		{"rope odd head dim", func(c *Config) { c.PositionEmbeddingType = PositionsRoPE; c.NumAttentionHeads = 2; c.HeadDim = 5 }, "head_dim (5) must be even for rope"},
		{"intermediate", func(c *Config) { c.IntermediateSize = -4 }, "intermediate_size is -4"},
		{"act", func(c *Config) { c.HiddenAct = "swish" }, `hidden_act "swish" is not one of`},
		{"gated gelu", func(c *Config) { c.MLPGated = true }, `mlp_gated needs hidden_act "silu"`},
		{"norm type", func(c *Config) { c.NormType = "batch_norm" }, `norm_type "batch_norm"`},
		{"rms bias", func(c *Config) { c.NormType = NormRMS }, "norm_bias needs norm_type"},
		{"eps", func(c *Config) { c.LayerNormEps = -1 }, "layer_norm_eps (-1) must be positive"},
		{"positions", func(c *Config) { c.PositionEmbeddingType = "alibi" }, `position_embedding_type "alibi"`},
		{"learned rows", func(c *Config) { c.MaxPositionEmbeddings = 0 }, "max_position_embeddings is 0: learned positions need"},
		{"theta", func(c *Config) { c.PositionEmbeddingType = PositionsRoPE; c.RopeTheta = -1 }, "rope_theta is -1"},
		{"window", func(c *Config) { c.SlidingWindow = -3 }, "sliding_window is -3"},
		{"layer_types length", func(c *Config) { c.LayerTypes = []string{"full_attention"} }, "layer_types has 1 entries for 2 layers"},
		{"layer_types kind", func(c *Config) { c.LayerTypes = []string{"full_attention", "ssm"} }, `layer_types[1] "ssm" is not one of`},
		{"sliding without window", func(c *Config) { c.LayerTypes = []string{"attention", "sliding_attention"} }, `layer_types[1] is "sliding_attention" but sliding_window is 0`},
		{"feed_forward_types", func(c *Config) { c.FeedForwardTypes = []string{"mlp", "conv"} }, `feed_forward_types[1] "conv" is not one of "mlp", "moe"`},
		{"mamba", func(c *Config) { c.LayerTypes = []string{"mamba", "attention"} }, ""},
		{"state_size", func(c *Config) { c.LayerTypes = []string{"mamba", "attention"}; c.StateSize = -1 }, "state_size is -1"},
		{"conv_kernel", func(c *Config) { c.ConvKernel = -2 }, "conv_kernel is -2"},
		{"expand", func(c *Config) { c.Expand = -1 }, "expand is -1"},
		{"time_step_rank", func(c *Config) { c.TimeStepRank = -1 }, "time_step_rank is -1"},
		{"moe", func(c *Config) { c.FeedForwardTypes = []string{"moe", "mlp"}; c.NumLocalExperts = 4 }, ""},
		{"moe experts", func(c *Config) { c.FeedForwardTypes = []string{"moe", "mlp"} }, `num_local_experts is 0, want ≥ 1 for the "moe" feed-forward`},
		{"moe top k", func(c *Config) {
			c.FeedForwardTypes = []string{"moe", "mlp"}
			c.NumLocalExperts = 2
			c.NumExpertsPerTok = 3
		}, "num_experts_per_tok is 3, want 1 … 2 (num_local_experts)"},
		{"moe width", func(c *Config) { c.MoEIntermediateSize = -1 }, "moe_intermediate_size is -1"},
		{"moe shared", func(c *Config) { c.NSharedExperts = -1 }, "n_shared_experts is -1"},
		{"moe scoring", func(c *Config) { c.ScoringFunc = "tanh" }, `scoring_func "tanh" is not "softmax" or "sigmoid"`},
		{"moe capacity", func(c *Config) { c.CapacityFactor = -1 }, "capacity_factor is -1"},
		{"moe aux", func(c *Config) { c.RouterAuxLossCoef = -0.5 }, "router_aux_loss_coef is -0.5"},
		{"moe z", func(c *Config) { c.RouterZLossCoef = -0.5 }, "router_z_loss_coef is -0.5"},
		{"init", func(c *Config) { c.InitializerRange = -0.1 }, "initializer_range is -0.1"},
		{"dtype", func(c *Config) { c.TorchDType = "bfloat16" }, `torch_dtype "bfloat16"`},
		{"dtype float64", func(c *Config) { c.TorchDType = "float64" }, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := base()
			c.edit(&cfg)
			err := cfg.Validate()
			if c.want == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
			assert.Contains(t, err.Error(), "models: config: ")
		})
	}
	// Every problem is reported at once.
	err := Config{HiddenSize: 16, NumHiddenLayers: 1, NumAttentionHeads: 4, NumKeyValueHeads: 3, HiddenAct: "tanh"}.Validate()
	require.Error(t, err)
	for _, key := range []string{"vocab_size", "num_key_value_heads", "hidden_act"} {
		assert.Contains(t, err.Error(), key)
	}
}
