package models_test

import (
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/layers"
	"github.com/mlxtrain/mlxtrain/models"
	"github.com/mlxtrain/mlxtrain/optim"
	"github.com/mlxtrain/mlxtrain/quant"
)

// noisyCounting is counting modulo vocab where every fifth token is random: a
// model learns it but keeps some uncertainty, so perplexity is well above 1.
func noisyCounting(rng *autodiff.RNG, batch, seq, vocab int) *autodiff.Tensor {
	return noisyStride(rng, batch, seq, vocab, 1)
}

// noisyStride counts by stride (modulo vocab) with every fifth token random.
func noisyStride(rng *autodiff.RNG, batch, seq, vocab, stride int) *autodiff.Tensor {
	noise := make([]uint32, batch*seq)
	rng.Uint32s(noise)
	ids := make([]int32, batch*seq)
	for b := range batch {
		for t := range seq {
			v := ((7*b+stride*t)%vocab + vocab) % vocab
			if noise[b*seq+t]%5 == 0 {
				v = int(noise[b*seq+t]>>8) % vocab
			}
			ids[b*seq+t] = int32(v)
		}
	}
	return autodiff.FromInt32(ids, batch, seq)
}

func perplexity(m *models.Model, seq *autodiff.Tensor) float64 {
	n := seq.Dim(1)
	inputs, targets := autodiff.Slice(seq, 1, 0, n-1), autodiff.Slice(seq, 1, 1, n)
	return math.Exp(m.Loss(nil, inputs, targets, nil).Item())
}

func cloneModel(t *testing.T, m *models.Model) *models.Model {
	c, err := models.New(m.Config, autodiff.NewRNG(1))
	require.NoError(t, err)
	require.NoError(t, c.LoadStateDict(m.StateDict()))
	return c
}

// TestQuantizedPerplexity trains a tiny llama (tied embeddings, so the head is
// the quantized embedding) for 60 steps, then quantizes it at 8 and 4 bits
// (group size 32) and compares held-out perplexity. Measured: see the log line;
// the margins asserted are 1% at 8 bits and 3% at 4 bits (measured +0.02%
// and +0.63%).
func TestQuantizedPerplexity(t *testing.T) {
	const vocab = 32
	cfg := models.LlamaConfig(vocab, 64, 2, 4, 2, 128, 32)
	cfg.TieWordEmbeddings = true
	m, err := models.New(cfg, autodiff.NewRNG(3))
	require.NoError(t, err)
	opt, err := optim.NewAdamW(m.Params(), optim.AdamConfig{LR: optim.Constant(1e-2)})
	require.NoError(t, err)
	defer opt.Release()
	trainSteps(m, opt, m.Params(), 60, func(rng *autodiff.RNG) *autodiff.Tensor { return noisyCounting(rng, 8, 33, vocab) })
	valid := noisyCounting(autodiff.NewRNG(99), 16, 33, vocab)
	base := perplexity(m, valid)
	require.Less(t, base, float64(vocab)/3, "the model learned something")

	for _, tc := range []struct {
		bits   int
		margin float64
	}{{8, 0.01}, {4, 0.03}} {
		q := cloneModel(t, m)
		reports, err := q.Quantize(quant.Config{Params: quant.Params{GroupSize: 32, Bits: tc.bits}}, nil)
		require.NoError(t, err)
		for _, r := range reports {
			require.True(t, r.Quantized, r.Name)
			assert.Less(t, r.BytesAfter, r.BytesBefore, r.Name)
		}
		_, isPacked := q.Embed.Packed.(*quant.Weight)
		require.True(t, isPacked)
		ppl := perplexity(q, valid)
		t.Logf("perplexity: float32 %.4f, %d-bit %.4f (%+.2f%%)", base, tc.bits, ppl, 100*(ppl/base-1))
		assert.InDelta(t, base, ppl, tc.margin*base, "%d bits", tc.bits)

		// The saved layout loads back: a model built from the quantized config has
		// packed modules in the same places and gives the same logits.
		loaded, err := models.New(q.Config, autodiff.NewRNG(5))
		require.NoError(t, err)
		require.NoError(t, loaded.LoadStateDict(q.StateDict()))
		assert.Equal(t, perplexity(q, valid), perplexity(loaded, valid))
		raw, err := q.Config.JSON()
		require.NoError(t, err)
		assert.Contains(t, string(raw), `"quantization": {`)
		assert.Contains(t, string(raw), `"group_size": 32`)

		// Dequantized, it is a float model with the quantized values.
		loaded.Dequantize()
		assert.Nil(t, loaded.Embed.Packed)
		assert.InDelta(t, ppl, perplexity(loaded, valid), 1e-4*ppl)
	}
}

func TestQuantizeKeepsLayers(t *testing.T) {
	cfg := models.GPT2Config(40, 32, 1, 4, 16) // down_proj has width 128
	m, err := models.New(cfg, autodiff.NewRNG(1))
	require.NoError(t, err)
	q := quant.Config{Params: quant.Params{GroupSize: 64, Bits: 4},
		Layers: map[string]*quant.Params{"model.layers.0.mlp.down_proj": {GroupSize: 32, Bits: 8}}}
	reports, err := m.Quantize(q, func(name string) bool { return name == "lm_head" })
	require.NoError(t, err)
	got := map[string]quant.Params{}
	for _, r := range reports {
		if r.Quantized {
			got[r.Name] = r.Params
		}
	}
	// Width 32 is not a multiple of 64: only down_proj (width 128) quantizes,
	// with its override; lm_head is kept by the caller.
	assert.Equal(t, map[string]quant.Params{"model.layers.0.mlp.down_proj": {GroupSize: 32, Bits: 8}}, got)
	qc, err := m.Config.Quantization()
	require.NoError(t, err)
	p, ok := qc.For("lm_head")
	assert.False(t, ok, "%v", p)
	_, ok = qc.For("model.layers.0.self_attn.q_proj")
	assert.False(t, ok)

	loaded, err := models.New(m.Config, autodiff.NewRNG(2))
	require.NoError(t, err)
	require.NoError(t, loaded.LoadStateDict(m.StateDict()))
	ids := autodiff.FromInt32([]int32{1, 2, 3, 39}, 1, 4)
	assert.Equal(t, m.Forward(nil, ids).Float32s(), loaded.Forward(nil, ids).Float32s())
}

func trainSteps(m *models.Model, opt *optim.Optimizer, params []autodiff.Param, steps int, batch func(*autodiff.RNG) *autodiff.Tensor) {
	rng := autodiff.NewRNG(4)
	for range steps {
		seq := batch(rng)
		n := seq.Dim(1)
		tp := autodiff.NewTape()
		loss := m.Loss(&layers.Ctx{Tape: tp, Train: true}, autodiff.Slice(seq, 1, 0, n-1), autodiff.Slice(seq, 1, 1, n), nil)
		tp.Backward(loss)
		opt.Step(optim.Grads(tp, params))
		tp.Release()
	}
}

// TestQLoRA trains LoRA adapters on a 4-bit base (QLoRA) for a new task
// (counting down instead of up): the loss falls, the packed base does not
// change, and merging re-quantizes the adapted layers with their parameters
// (mlx-lm's fuse) into a model that loads from its config and state dict.
func TestQLoRA(t *testing.T) {
	const vocab = 32
	cfg := models.LlamaConfig(vocab, 64, 2, 4, 2, 128, 32)
	cfg.TieWordEmbeddings = true
	m, err := models.New(cfg, autodiff.NewRNG(3))
	require.NoError(t, err)
	opt, err := optim.NewAdamW(m.Params(), optim.AdamConfig{LR: optim.Constant(1e-2)})
	require.NoError(t, err)
	up := func(rng *autodiff.RNG) *autodiff.Tensor { return noisyStride(rng, 8, 33, vocab, 1) }
	down := func(rng *autodiff.RNG) *autodiff.Tensor { return noisyStride(rng, 8, 33, vocab, -1) }
	trainSteps(m, opt, m.Params(), 60, up)
	opt.Release()

	_, err = m.Quantize(quant.Config{Params: quant.Params{GroupSize: 32, Bits: 4}}, nil)
	require.NoError(t, err)
	names, err := layers.AttachLoRA(autodiff.NewRNG(7), m.Linears(), layers.LoRAConfig{Rank: 4, Scale: 2, Keys: []string{"q_proj", "v_proj", "down_proj"}})
	require.NoError(t, err)
	require.Len(t, names, 6)
	var adapters []autodiff.Param
	base := map[string][]uint32{}
	for _, p := range m.Params() {
		if strings.Contains(p.Name, "lora_") {
			adapters = append(adapters, p)
		}
		if p.Value.DType() == autodiff.Uint32 {
			base[p.Name] = append([]uint32(nil), p.Value.Uint32s()...)
		}
	}
	require.Len(t, adapters, 12)
	valid := noisyStride(autodiff.NewRNG(99), 16, 33, vocab, -1)
	before := perplexity(m, valid)
	opt, err = optim.NewAdamW(adapters, optim.AdamConfig{LR: optim.Constant(1e-2)})
	require.NoError(t, err)
	defer opt.Release()
	trainSteps(m, opt, adapters, 60, down)
	after := perplexity(m, valid)
	t.Logf("QLoRA: count-down perplexity %.3f → %.3f", before, after)
	assert.Less(t, after, 0.7*before)
	for _, p := range m.Params() {
		if want, ok := base[p.Name]; ok {
			require.Equal(t, want, p.Value.Uint32s(), "%s is frozen", p.Name)
		}
	}

	for _, nl := range m.Linears() {
		nl.Linear.Merge()
	}
	merged := perplexity(m, valid)
	t.Logf("QLoRA: merged and re-quantized %.3f", merged)
	assert.InDelta(t, after, merged, 0.05*after)
	changed := 0
	for _, p := range m.Params() {
		require.NotContains(t, p.Name, "lora_")
		if want, ok := base[p.Name]; ok && !assert.ObjectsAreEqual(want, p.Value.Uint32s()) {
			changed++
		}
	}
	assert.Equal(t, 6, changed, "the adapted layers' packed weights")
	loaded, err := models.New(m.Config, autodiff.NewRNG(5))
	require.NoError(t, err)
	require.NoError(t, loaded.LoadStateDict(m.StateDict()))
	assert.Equal(t, merged, perplexity(loaded, valid))
}

// TestQuantizedHybrid quantizes a model with attention, Mamba and MoE layers
// (8 bits): the mixers' projections, the router, the stacked experts and the
// shared experts become packed (Mamba's narrow dt_proj stays float), the logits
// stay close to the float model's, decoding with a cache gives the logits of
// the full forward pass, and the state dict loads into a model built from the
// config.
func TestQuantizedHybrid(t *testing.T) {
	cfg := models.GPT2Config(40, 32, 3, 2, 16)
	cfg.IntermediateSize = 64
	cfg.LayerTypes = []string{models.MixerFullAttention, models.MixerMamba, models.MixerMamba}
	cfg.FeedForwardTypes = []string{models.FeedForwardMoE, models.FeedForwardMoE, models.FeedForwardMLP}
	cfg.StateSize, cfg.ConvKernel = 4, 4
	cfg.NumLocalExperts, cfg.MoEIntermediateSize, cfg.NSharedExperts = 4, 32, 1
	m, err := models.New(cfg, autodiff.NewRNG(1))
	require.NoError(t, err)
	ids := noisyCounting(autodiff.NewRNG(2), 2, 12, 40)
	want := m.Forward(nil, ids).Float32s()
	reports, err := m.Quantize(quant.Config{Params: quant.Params{GroupSize: 32, Bits: 8}}, nil)
	require.NoError(t, err)
	packed := map[string]bool{}
	for _, r := range reports {
		packed[r.Name] = r.Quantized
	}
	assert.True(t, packed["model.layers.1.mixer.in_proj"])
	assert.True(t, packed["model.layers.1.mixer.out_proj"])
	assert.False(t, packed["model.layers.1.mixer.dt_proj"], "width time_step_rank")
	assert.True(t, packed["model.layers.0.mlp.gate"])
	assert.True(t, packed["model.layers.0.mlp.shared_experts.down_proj"])
	assert.True(t, packed["model.layers.0.mlp.switch_mlp.up_proj"], "the stacked experts")
	assert.True(t, packed["model.layers.1.mlp.switch_mlp.down_proj"])
	_, hasGate := packed["model.layers.0.mlp.switch_mlp.gate_proj"]
	assert.False(t, hasGate, "a GELU MLP has no gate_proj")
	got := m.Forward(nil, ids).Float32s()
	// A perturbed router may pick other experts for a token, so the logits are
	// compared as a whole: relative RMS error.
	var se, ss float64
	for i := range want {
		d := float64(got[i] - want[i])
		se, ss = se+d*d, ss+float64(want[i])*float64(want[i])
	}
	t.Logf("8-bit hybrid: relative RMS logit error %.4f", math.Sqrt(se/ss))
	assert.Less(t, math.Sqrt(se/ss), 0.05)
	cache := models.NewCache(m)
	defer cache.Release()
	first := m.ForwardCache(nil, autodiff.Slice(ids, 1, 0, 8), cache)
	for t0 := 8; t0 < 12; t0++ {
		step := m.ForwardCache(nil, autodiff.Slice(ids, 1, t0, t0+1), cache).Float32s()
		for b := range 2 {
			for v := range 40 {
				require.InDelta(t, got[(b*12+t0)*40+v], step[b*40+v], 1e-4, "batch %d position %d", b, t0)
			}
		}
	}
	first.Release()

	loaded, err := models.New(m.Config, autodiff.NewRNG(9))
	require.NoError(t, err)
	require.NoError(t, loaded.LoadStateDict(m.StateDict()))
	assert.Equal(t, got, loaded.Forward(nil, ids).Float32s())
	sd := m.StateDict()
	assert.Equal(t, autodiff.Uint32, sd["model.layers.0.mlp.switch_mlp.up_proj.weight"].DType())
	assert.Equal(t, []int{4, 32, 32 * 8 / 32}, sd["model.layers.0.mlp.switch_mlp.up_proj.weight"].Shape())
	assert.Equal(t, []int{4, 32, 1}, sd["model.layers.0.mlp.switch_mlp.up_proj.scales"].Shape())

	loaded.Dequantize()
	for _, tg := range loaded.QuantTargets() {
		assert.Nil(t, tg.Packed(), tg.Name)
	}
	assert.InDeltaSlice(t, got, loaded.Forward(nil, ids).Float32s(), 1e-4)
}

// TestLoadStateDictFollowsScales: a state dict decides which modules are
// quantized (MLX's "<path>.scales" rule), whatever the config says: a float
// model loads a quantized state dict with mixed widths, and a quantized model a
// float one.
func TestLoadStateDictFollowsScales(t *testing.T) {
	cfg := models.LlamaConfig(64, 64, 1, 4, 2, 128, 16)
	m, err := models.New(cfg, autodiff.NewRNG(1))
	require.NoError(t, err)
	floatSD := map[string]*autodiff.Tensor{}
	for k, v := range m.StateDict() {
		floatSD[k] = v.Clone()
	}
	ids := autodiff.FromInt32([]int32{1, 5, 9, 63}, 1, 4)
	q := quant.Config{Params: quant.Params{GroupSize: 64, Bits: 4},
		Layers: map[string]*quant.Params{"model.layers.0.mlp.down_proj": {GroupSize: 32, Bits: 3}}}
	_, err = m.Quantize(q, func(name string) bool { return name == "lm_head" })
	require.NoError(t, err)
	want := m.Forward(nil, ids).Float32s()

	plain, err := models.New(cfg, autodiff.NewRNG(2)) // no "quantization" in its config
	require.NoError(t, err)
	require.NoError(t, plain.LoadStateDict(m.StateDict()))
	assert.Equal(t, want, plain.Forward(nil, ids).Float32s())
	for _, tg := range plain.QuantTargets() {
		pw, isPacked := tg.Packed().(*quant.Weight)
		switch tg.Name {
		case "lm_head":
			assert.False(t, isPacked)
		case "model.layers.0.mlp.down_proj":
			require.True(t, isPacked)
			assert.Equal(t, quant.Params{GroupSize: 32, Bits: 3}, pw.Matrix.Params)
		default:
			require.True(t, isPacked, tg.Name)
			assert.Equal(t, quant.Params{GroupSize: 64, Bits: 4}, pw.Matrix.Params)
		}
	}

	qc, err := plain.Config.Quantization()
	require.NoError(t, err)
	require.NotNil(t, qc, "the config follows the modules")
	assert.Equal(t, quant.Params{GroupSize: 64, Bits: 4}, qc.Params)
	_, ok := qc.For("lm_head")
	assert.False(t, ok)
	p, _ := qc.For("model.layers.0.mlp.down_proj")
	assert.Equal(t, 3, p.Bits)

	require.NoError(t, plain.LoadStateDict(floatSD))
	qc, err = plain.Config.Quantization()
	require.NoError(t, err)
	assert.Nil(t, qc)
	for _, tg := range plain.QuantTargets() {
		assert.Nil(t, tg.Packed(), tg.Name)
	}
	_, err = plain.Quantize(quant.Config{Params: quant.Params{GroupSize: 64, Bits: 8}}, nil)
	require.NoError(t, err, "the config had no quantization")
}

// TestLoadHalfPrecisionStateDict loads a 4-bit checkpoint written as MLX and
// Hugging Face often write them: float weights in bfloat16, quantization scales
// and biases in float16. Every parameter gets the exact widening of the stored
// value, and the model's logits equal those of the model the rounded values came
// from. Narrowing (float64 into float32) stays an error (TestStateDict).
func TestLoadHalfPrecisionStateDict(t *testing.T) {
	cfg := models.LlamaConfig(64, 64, 2, 4, 2, 128, 32)
	src, err := models.New(cfg, autodiff.NewRNG(1))
	require.NoError(t, err)
	_, err = src.Quantize(quant.Config{Params: quant.Params{GroupSize: 32, Bits: 4}}, nil)
	require.NoError(t, err)
	half := map[string]*autodiff.Tensor{}
	halves := 0
	for name, v := range src.StateDict() {
		switch {
		case v.DType() != autodiff.Float32:
			half[name] = v // the packed uint32 weights
		case strings.HasSuffix(name, ".scales") || strings.HasSuffix(name, ".biases"):
			half[name] = autodiff.Cast(v, autodiff.Float16)
			halves++
		default:
			half[name] = autodiff.Cast(v, autodiff.BFloat16)
			halves++
		}
		// src keeps exactly what the half tensors hold, to compare with.
		if h := half[name]; h != v {
			back := autodiff.Cast(h, autodiff.Float32)
			v.CopyFrom(back)
			back.Release()
		}
	}
	require.Greater(t, halves, 10)
	dst, err := models.New(cfg, autodiff.NewRNG(2))
	require.NoError(t, err)
	require.NoError(t, dst.LoadStateDict(half))
	want := src.StateDict()
	for name, v := range dst.StateDict() {
		require.Equal(t, want[name].DType(), v.DType(), name)
		require.Equal(t, want[name].Bytes(), v.Bytes(), name)
	}
	ids := autodiff.FromInt32([]int32{1, 5, 9, 33, 2, 60, 7}, 1, 7)
	assert.Equal(t, src.Forward(nil, ids).Float32s(), dst.Forward(nil, ids).Float32s())
}
