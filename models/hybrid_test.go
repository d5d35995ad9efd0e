package models

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/layers"
)

// hybridConfigs are tiny float64 models with attention, Mamba and MoE layers:
// llama-style with sigmoid scoring, SwiGLU experts, a shared expert and a
// capacity, and GPT-2-style with softmax scoring, GELU experts with biases,
// learned positions and a tied head.
func hybridConfigs() map[string]Config {
	a := hybridConfig()
	a.TorchDType = "float64"
	b := GPT2Config(7, 8, 3, 2, 16)
	b.IntermediateSize = 12
	b.TorchDType = "float64"
	b.TieWordEmbeddings = true
	b.LayerTypes = []string{MixerFullAttention, MixerMamba, MixerMamba}
	b.FeedForwardTypes = []string{FeedForwardMoE, FeedForwardMoE, FeedForwardMLP}
	b.StateSize, b.ConvKernel, b.TimeStepRank = 2, 4, 1
	b.NumLocalExperts, b.MoEIntermediateSize = 4, 5
	b.RouterAuxLossCoef, b.RouterZLossCoef = 0.1, 0.05
	return map[string]Config{"sigmoid_shared_swiglu": a, "softmax_gelu_learned": b}
}

func TestHybridParamNames(t *testing.T) {
	m, err := New(hybridConfig(), autodiff.NewRNG(1))
	require.NoError(t, err)
	var got []string
	for _, p := range m.Params() {
		if len(p.Name) > 15 && p.Name[:15] == "model.layers.0." {
			got = append(got, fmt.Sprintf("%s %v", p.Name, p.Value.Shape()))
		}
	}
	// E = expand·hidden = 16, N = 3, R = 2, K = 3; 3 experts of width 6, one
	// shared expert of width 6, SwiGLU.
	assert.Equal(t, []string{
		"model.layers.0.input_layernorm.weight [8]",
		"model.layers.0.mixer.in_proj.weight [32 8]",
		"model.layers.0.mixer.conv1d.weight [16 1 3]",
		"model.layers.0.mixer.conv1d.bias [16]",
		"model.layers.0.mixer.x_proj.weight [8 16]",
		"model.layers.0.mixer.dt_proj.weight [16 2]",
		"model.layers.0.mixer.dt_proj.bias [16]",
		"model.layers.0.mixer.A_log [16 3]",
		"model.layers.0.mixer.D [16]",
		"model.layers.0.mixer.out_proj.weight [8 16]",
		"model.layers.0.post_attention_layernorm.weight [8]",
		"model.layers.0.mlp.gate.weight [3 8]",
		"model.layers.0.mlp.switch_mlp.gate_proj.weight [3 6 8]",
		"model.layers.0.mlp.switch_mlp.up_proj.weight [3 6 8]",
		"model.layers.0.mlp.switch_mlp.down_proj.weight [3 8 6]",
		"model.layers.0.mlp.shared_experts.gate_proj.weight [6 8]",
		"model.layers.0.mlp.shared_experts.up_proj.weight [6 8]",
		"model.layers.0.mlp.shared_experts.down_proj.weight [8 6]",
	}, got)
	var linears []string
	for _, l := range m.Linears() {
		linears = append(linears, l.Name)
	}
	assert.Contains(t, linears, "model.layers.0.mixer.in_proj")
	assert.Contains(t, linears, "model.layers.0.mlp.gate")
	assert.Contains(t, linears, "model.layers.1.self_attn.q_proj")
}

// TestHybridGradCheck checks the gradient of the training loss (with the MoE
// layers' auxiliary losses) with respect to every parameter of tiny hybrid
// models against finite differences in float64.
func TestHybridGradCheck(t *testing.T) {
	for name, cfg := range hybridConfigs() {
		t.Run(name, func(t *testing.T) {
			m, err := New(cfg, autodiff.NewRNG(3))
			require.NoError(t, err)
			// Larger weights than the init so every part matters in the loss.
			for i, p := range m.Params() {
				if p.Value.Rank() >= 2 {
					xs := p.Value.Float64s()
					r := autodiff.RandNormal(autodiff.NewRNG(uint64(100+i)), autodiff.Float64, 0, 0.5, len(xs))
					copy(xs, r.Float64s())
					r.Release()
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
			loss := func(c *layers.Ctx) *autodiff.Tensor { return m.Loss(c, inputs, targets, mask) }
			// The training loss is the LM loss plus the auxiliary losses.
			lm := loss(nil)
			train := loss(&layers.Ctx{Train: true})
			assert.Greater(t, train.Item(), lm.Item())
			stats := m.MoEStats()
			require.Len(t, stats, 2)
			for _, st := range stats {
				assert.Equal(t, 10, st.Tokens)
				assert.Greater(t, st.Balance, 0.0)
			}
			err = autodiff.GradCheck{Directions: 3, RTol: 1e-5, ATol: 1e-8}.Check(func(in []*autodiff.Tensor) *autodiff.Tensor {
				return loss(&layers.Ctx{Tape: in[0].Tape(), Train: true})
			}, params...)
			assert.NoError(t, err)
		})
	}
}

// TestHybridForwardCache feeds tokens through a cache, in pieces and then one
// by one, and compares with the full forward.
func TestHybridForwardCache(t *testing.T) {
	for name, cfg := range hybridConfigs() {
		t.Run(name, func(t *testing.T) {
			m, err := New(cfg, autodiff.NewRNG(4))
			require.NoError(t, err)
			ids := tokens(2, 9, 7, func(b, t int) int { return b*3 + t*t })
			want := m.Forward(nil, ids)
			for _, cuts := range [][][2]int{
				{{0, 3}, {3, 4}, {4, 9}},
				{{0, 1}, {1, 2}, {2, 3}, {3, 4}, {4, 5}, {5, 6}, {6, 7}, {7, 8}, {8, 9}},
			} {
				cache := NewCache(m)
				var parts []*autodiff.Tensor
				for _, cut := range cuts {
					piece := autodiff.Slice(ids, 1, cut[0], cut[1])
					parts = append(parts, m.ForwardCache(nil, piece, cache))
					assert.Equal(t, cut[1], cache.Offset())
				}
				assert.InDeltaSlice(t, want.Float64s(), autodiff.Concat(1, parts...).Float64s(), 1e-10)
				cache.Release()
			}
		})
	}
}

// TestMambaOnlyCacheOffset: a model without attention counts its positions in
// the Mamba states, so learned positions continue where the cache left off.
func TestMambaOnlyCacheOffset(t *testing.T) {
	cfg := GPT2Config(7, 8, 2, 2, 16)
	cfg.TorchDType = "float64"
	cfg.LayerTypes = []string{MixerMamba, MixerMamba}
	m, err := New(cfg, autodiff.NewRNG(5))
	require.NoError(t, err)
	ids := tokens(1, 6, 7, func(_, t int) int { return 2*t + 1 })
	want := m.Forward(nil, ids)
	cache := NewCache(m)
	first := m.ForwardCache(nil, autodiff.Slice(ids, 1, 0, 4), cache)
	assert.Equal(t, 4, cache.Offset())
	rest := m.ForwardCache(nil, autodiff.Slice(ids, 1, 4, 6), cache)
	assert.InDeltaSlice(t, want.Float64s(), autodiff.Concat(1, first, rest).Float64s(), 1e-10)
}

// TestMoEEvalLossHasNoAux: evaluation is the LM loss alone, the same with and
// without a previous training loss.
func TestMoEEvalLossHasNoAux(t *testing.T) {
	cfg := hybridConfigs()["softmax_gelu_learned"]
	m, err := New(cfg, autodiff.NewRNG(6))
	require.NoError(t, err)
	inputs := tokens(2, 5, 7, func(b, t int) int { return b + t })
	targets := tokens(2, 5, 7, func(b, t int) int { return b + t + 1 })
	before := m.Loss(nil, inputs, targets, nil).Item()
	tp := autodiff.NewTape()
	train := m.Loss(&layers.Ctx{Tape: tp, Train: true}, inputs, targets, nil).Item()
	tp.Release()
	assert.Equal(t, before, m.Loss(nil, inputs, targets, nil).Item())
	assert.Greater(t, train, before)
}
