package models

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/layers"
)

// tinyConfigs are the configs of the gradient checks: vocab 7, width 8, 2 layers,
// 2 heads, in float64; GPT-2 style and llama style with GQA (plus a window, a tied
// head and interleaved RoPE on the way).
func tinyConfigs() map[string]Config {
	gpt := GPT2Config(7, 8, 2, 2, 16)
	gpt.IntermediateSize = 12
	gpt.TorchDType = "float64"
	llama := LlamaConfig(7, 8, 2, 4, 2, 12, 16)
	llama.TorchDType = "float64"
	mixed := LlamaConfig(7, 8, 2, 2, 1, 10, 16)
	mixed.TorchDType = "float64"
	mixed.TieWordEmbeddings = true
	mixed.RopeTraditional = true
	mixed.SlidingWindow = 3
	mixed.LayerTypes = []string{MixerSlidingAttention, MixerFullAttention}
	mixed.NormType, mixed.NormBias = NormLayer, true
	mixed.AttentionBias = true
	return map[string]Config{"gpt2": gpt, "llama_gqa": llama, "tied_window": mixed}
}

func tokens(batch, seq, vocab int, f func(b, t int) int) *autodiff.Tensor {
	ids := make([]int32, batch*seq)
	for b := range batch {
		for t := range seq {
			ids[b*seq+t] = int32(f(b, t) % vocab)
		}
	}
	return autodiff.FromInt32(ids, batch, seq)
}

func TestParamNames(t *testing.T) {
	names := func(cfg Config) []string {
		m, err := New(cfg, autodiff.NewRNG(1))
		require.NoError(t, err)
		var out []string
		for _, p := range m.Params() {
			out = append(out, fmt.Sprintf("%s %v", p.Name, p.Value.Shape()))
		}
		return out
	}
	gpt := GPT2Config(7, 8, 1, 2, 16)
	assert.Equal(t, []string{
		"model.embed_tokens.weight [7 8]",
		"model.embed_positions.weight [16 8]",
		"model.layers.0.input_layernorm.weight [8]",
		"model.layers.0.input_layernorm.bias [8]",
		"model.layers.0.self_attn.q_proj.weight [8 8]",
		"model.layers.0.self_attn.q_proj.bias [8]",
		"model.layers.0.self_attn.k_proj.weight [8 8]",
		"model.layers.0.self_attn.k_proj.bias [8]",
		"model.layers.0.self_attn.v_proj.weight [8 8]",
		"model.layers.0.self_attn.v_proj.bias [8]",
		"model.layers.0.self_attn.o_proj.weight [8 8]",
		"model.layers.0.self_attn.o_proj.bias [8]",
		"model.layers.0.post_attention_layernorm.weight [8]",
		"model.layers.0.post_attention_layernorm.bias [8]",
		"model.layers.0.mlp.up_proj.weight [32 8]",
		"model.layers.0.mlp.up_proj.bias [32]",
		"model.layers.0.mlp.down_proj.weight [8 32]",
		"model.layers.0.mlp.down_proj.bias [8]",
		"model.norm.weight [8]",
		"model.norm.bias [8]",
		"lm_head.weight [7 8]",
	}, names(gpt))
	llama := LlamaConfig(7, 8, 2, 4, 2, 12, 16)
	assert.Equal(t, []string{
		"model.embed_tokens.weight [7 8]",
		"model.layers.0.input_layernorm.weight [8]",
		"model.layers.0.self_attn.q_proj.weight [8 8]",
		"model.layers.0.self_attn.k_proj.weight [4 8]",
		"model.layers.0.self_attn.v_proj.weight [4 8]",
		"model.layers.0.self_attn.o_proj.weight [8 8]",
		"model.layers.0.post_attention_layernorm.weight [8]",
		"model.layers.0.mlp.gate_proj.weight [12 8]",
		"model.layers.0.mlp.up_proj.weight [12 8]",
		"model.layers.0.mlp.down_proj.weight [8 12]",
		"model.layers.1.input_layernorm.weight [8]",
		"model.layers.1.self_attn.q_proj.weight [8 8]",
		"model.layers.1.self_attn.k_proj.weight [4 8]",
		"model.layers.1.self_attn.v_proj.weight [4 8]",
		"model.layers.1.self_attn.o_proj.weight [8 8]",
		"model.layers.1.post_attention_layernorm.weight [8]",
		"model.layers.1.mlp.gate_proj.weight [12 8]",
		"model.layers.1.mlp.up_proj.weight [12 8]",
		"model.layers.1.mlp.down_proj.weight [8 12]",
		"model.norm.weight [8]",
		"lm_head.weight [7 8]",
	}, names(llama))
	llama.TieWordEmbeddings = true
	tied := names(llama)
	assert.NotContains(t, strings.Join(tied, " "), "lm_head")
	assert.Len(t, tied, 20)
}

func TestLinearsForLoRA(t *testing.T) {
	m, err := New(LlamaConfig(7, 8, 2, 4, 2, 12, 16), autodiff.NewRNG(1))
	require.NoError(t, err)
	var names []string
	for _, nl := range m.Linears() {
		names = append(names, nl.Name)
	}
	assert.Equal(t, []string{
		"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj", "model.layers.0.self_attn.v_proj", "model.layers.0.self_attn.o_proj",
		"model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj", "model.layers.0.mlp.down_proj",
		"model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.k_proj", "model.layers.1.self_attn.v_proj", "model.layers.1.self_attn.o_proj",
		"model.layers.1.mlp.gate_proj", "model.layers.1.mlp.up_proj", "model.layers.1.mlp.down_proj",
		"lm_head",
	}, names)
	adapted, err := layers.AttachLoRA(autodiff.NewRNG(2), m.Linears(), layers.LoRAConfig{Rank: 2, Scale: 2, Keys: []string{"q_proj", "v_proj"}})
	require.NoError(t, err)
	assert.Len(t, adapted, 4)
	params := layers.ParamMap(paramsModule{m})
	assert.Contains(t, params, "model.layers.1.self_attn.v_proj.lora_a")
	assert.Contains(t, params, "model.layers.1.self_attn.v_proj.lora_b")
	// A fresh adapter (B = 0) changes nothing; the logits still come out.
	ids := tokens(1, 4, 7, func(_, t int) int { return t })
	assert.Equal(t, []int{1, 4, 7}, m.Forward(nil, ids).Shape())
}

// paramsModule adapts a Model to layers.Module.
type paramsModule struct{ m *Model }

func (p paramsModule) Params(string) []autodiff.Param { return p.m.Params() }

// TestModelGradCheck checks the gradient of the loss with respect to every
// parameter of tiny models against finite differences in float64, with a mask
// and an ignored target.
func TestModelGradCheck(t *testing.T) {
	for name, cfg := range tinyConfigs() {
		t.Run(name, func(t *testing.T) {
			m, err := New(cfg, autodiff.NewRNG(3))
			require.NoError(t, err)
			// Larger weights than the init so every part matters in the loss.
			for _, p := range m.Params() {
				if p.Value.Rank() == 2 {
					xs := p.Value.Float64s()
					r := autodiff.RandNormal(autodiff.NewRNG(uint64(len(xs))), autodiff.Float64, 0, 0.5, len(xs))
					copy(xs, r.Float64s())
				}
			}
			inputs := tokens(2, 5, 7, func(b, t int) int { return 3*b + 2*t + t*t })
			targets := tokens(2, 5, 7, func(b, t int) int { return b + 5*t + 1 })
			targets.Int32s()[3] = -100 // ignored
			mask := autodiff.FromFloat64([]float64{1, 1, 1, 1, 0, 1, 0, 1, 1, 1}, 2, 5)
			var params []*autodiff.Tensor
			for _, p := range m.Params() {
				params = append(params, p.Value)
			}
			err = autodiff.GradCheck{Directions: 3, RTol: 1e-5, ATol: 1e-8}.Check(func(in []*autodiff.Tensor) *autodiff.Tensor {
				return m.Loss(&layers.Ctx{Tape: in[0].Tape()}, inputs, targets, mask)
			}, params...)
			assert.NoError(t, err)
		})
	}
}

// TestForwardCacheMatchesForward feeds tokens in pieces through a cache.
func TestForwardCacheMatchesForward(t *testing.T) {
	for name, cfg := range tinyConfigs() {
		t.Run(name, func(t *testing.T) {
			m, err := New(cfg, autodiff.NewRNG(4))
			require.NoError(t, err)
			ids := tokens(2, 7, 7, func(b, t int) int { return b*3 + t })
			want := m.Forward(nil, ids)
			cache := NewCache(m)
			var parts []*autodiff.Tensor
			for _, cut := range [][2]int{{0, 3}, {3, 4}, {4, 7}} {
				piece := autodiff.Slice(ids, 1, cut[0], cut[1])
				parts = append(parts, m.ForwardCache(nil, piece, cache))
			}
			assert.Equal(t, 7, cache.Offset())
			assert.InDeltaSlice(t, want.Float64s(), autodiff.Concat(1, parts...).Float64s(), 1e-12)
		})
	}
}

func TestForwardErrors(t *testing.T) {
	m, err := New(GPT2Config(7, 8, 1, 2, 4), autodiff.NewRNG(1))
	require.NoError(t, err)
	assert.PanicsWithValue(t, "models: Forward: positions 0…4 beyond max_position_embeddings 4", func() {
		m.Forward(nil, tokens(1, 5, 7, func(_, t int) int { return t }))
	})
	assert.Panics(t, func() { m.Forward(nil, autodiff.Zeros(autodiff.Float32, 1, 3)) })
	assert.PanicsWithValue(t, "models: embedding: token id 9 at position 1 is outside [0, 7) (vocab_size)", func() {
		m.Forward(nil, autodiff.FromInt32([]int32{1, 9}, 1, 2))
	})
	_, err = New(Config{}, autodiff.NewRNG(1))
	assert.ErrorContains(t, err, "vocab_size")
}

func TestStateDict(t *testing.T) {
	cfg := LlamaConfig(7, 8, 2, 4, 2, 12, 16)
	a, err := New(cfg, autodiff.NewRNG(1))
	require.NoError(t, err)
	b, err := New(cfg, autodiff.NewRNG(2))
	require.NoError(t, err)
	sd := a.StateDict()
	assert.Len(t, sd, len(a.Params()))
	require.NoError(t, b.LoadStateDict(sd))
	ids := tokens(1, 5, 7, func(_, t int) int { return t })
	assert.Equal(t, a.Forward(nil, ids).Float32s(), b.Forward(nil, ids).Float32s())

	bad := map[string]*autodiff.Tensor{}
	for k, v := range sd {
		bad[k] = v
	}
	delete(bad, "model.norm.weight")
	bad["model.layers.0.self_attn.k_proj.weight"] = autodiff.Zeros(autodiff.Float32, 8, 8)
	bad["model.layers.1.mlp.up_proj.weight"] = autodiff.Zeros(autodiff.Float64, 12, 8)
	bad["model.layers.9.mlp.up_proj.weight"] = autodiff.Zeros(autodiff.Float32, 12, 8)
	before := b.Embed.Weight.Clone()
	err = b.LoadStateDict(bad)
	require.Error(t, err)
	for _, want := range []string{
		"model.layers.0.self_attn.k_proj.weight has shape [8 8], want [4 8]",
		"model.layers.1.mlp.up_proj.weight is float64, want float32",
		"model.norm.weight is missing",
		"model.layers.9.mlp.up_proj.weight is not a parameter of this model",
	} {
		assert.Contains(t, err.Error(), want)
	}
	assert.Equal(t, before.Float32s(), b.Embed.Weight.Float32s(), "nothing loaded on error")

	// A tied model ignores lm_head.weight (Hugging Face writes it sometimes).
	cfg.TieWordEmbeddings = true
	c, err := New(cfg, autodiff.NewRNG(3))
	require.NoError(t, err)
	sdc := c.StateDict()
	sdc["lm_head.weight"] = c.Embed.Weight
	assert.NoError(t, c.LoadStateDict(sdc))
}

func TestInit(t *testing.T) {
	cfg := GPT2Config(200, 64, 8, 4, 64)
	m, err := New(cfg, autodiff.NewRNG(5))
	require.NoError(t, err)
	std := func(x *autodiff.Tensor) float64 {
		s := 0.0
		for _, v := range x.Float32s() {
			s += float64(v) * float64(v)
		}
		return math.Sqrt(s / float64(x.Len()))
	}
	l := m.Layers[3]
	attn := l.Mixer.(AttentionMixer)
	mlp := l.FeedForward.(DenseMLP)
	assert.InDelta(t, 0.02, std(m.Embed.Weight), 0.002)
	assert.InDelta(t, 0.02, std(attn.Q.Weight), 0.002)
	assert.InDelta(t, 0.02, std(mlp.Up.Weight), 0.002)
	assert.InDelta(t, 0.02/4, std(attn.O.Weight), 0.0005, "1/√(2·8)")
	assert.InDelta(t, 0.02/4, std(mlp.Down.Weight), 0.0005)
	assert.Equal(t, 0.0, std(attn.Q.Bias))
	assert.Equal(t, 1.0, std(l.InputNorm.(LayerNorm).Weight))
}

// TestLoRAGradCheck attaches adapters to every projection of a tiny model and
// checks the gradients of the loss for the adapters and the base weights: the
// adapted linears take the unfused paths.
func TestLoRAGradCheck(t *testing.T) {
	cfg := tinyConfigs()["gpt2"]
	m, err := New(cfg, autodiff.NewRNG(7))
	require.NoError(t, err)
	_, err = layers.AttachLoRA(autodiff.NewRNG(8), m.Linears(), layers.LoRAConfig{Rank: 2, Scale: 1.5, Keys: []string{"q_proj", "o_proj", "up_proj", "down_proj"}})
	require.NoError(t, err)
	var params []*autodiff.Tensor
	for _, p := range m.Params() {
		if strings.HasSuffix(p.Name, "lora_b") { // non-zero, so A's gradient is non-zero too
			copy(p.Value.Float64s(), autodiff.RandNormal(autodiff.NewRNG(9), autodiff.Float64, 0, 0.3, p.Value.Len()).Float64s())
		}
		params = append(params, p.Value)
	}
	inputs := tokens(1, 5, 7, func(_, t int) int { return 2*t + 1 })
	targets := tokens(1, 5, 7, func(_, t int) int { return t + 3 })
	err = autodiff.GradCheck{Directions: 3}.Check(func(in []*autodiff.Tensor) *autodiff.Tensor {
		return m.Loss(&layers.Ctx{Tape: in[0].Tape()}, inputs, targets, nil)
	}, params...)
	assert.NoError(t, err)
}
