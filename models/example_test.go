package models_test

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/layers"
	"github.com/mlxtrain/mlxtrain/models"
	"github.com/mlxtrain/mlxtrain/optim"
)

// Build a small GPT-2-style language model and train it from Go, no recipe file:
// the sequences count up modulo the vocabulary, so every next token is
// predictable and the loss falls from log(vocab) towards zero.
func Example() {
	cfg := models.GPT2Config(16, 32, 2, 4, 32) // vocab, width, layers, heads, context
	m, err := models.New(cfg, autodiff.NewRNG(1))
	if err != nil {
		panic(err)
	}
	opt, err := optim.NewAdamW(m.Params(), optim.AdamConfig{LR: optim.Constant(1e-2), WeightDecay: 0.01})
	if err != nil {
		panic(err)
	}
	ids := make([]int32, 8*33)
	for b := range 8 {
		for t := range 33 {
			ids[b*33+t] = int32((5*b + t) % 16)
		}
	}
	seq := autodiff.FromInt32(ids, 8, 33)
	inputs, targets := autodiff.Slice(seq, 1, 0, 32), autodiff.Slice(seq, 1, 1, 33)

	var first, last float64
	for step := range 40 {
		tp := autodiff.NewTape()
		loss := m.Loss(&layers.Ctx{Tape: tp, Train: true}, inputs, targets, nil)
		if step == 0 {
			first = loss.Item()
		}
		last = loss.Item()
		tp.Backward(loss)
		opt.Step(optim.Grads(tp, m.Params()))
		tp.Release()
	}
	fmt.Printf("%d parameters\n", m.NumParams())
	fmt.Printf("first loss ≈ log(16): %v\n", math.Abs(first-math.Log(16)) < 0.2)
	fmt.Printf("loss fell below a tenth: %v\n", last < first/10)
	// Output:
	// 27520 parameters
	// first loss ≈ log(16): true
	// loss fell below a tenth: true
}

func ExampleConfig() {
	cfg := models.LlamaConfig(32000, 512, 8, 8, 2, 1376, 2048)
	data, err := cfg.JSON() // config.json, defaults filled in
	if err != nil {
		panic(err)
	}
	back, err := models.ParseConfig(data)
	if err != nil {
		panic(err)
	}
	fmt.Println(back.ModelType, back.NumKeyValueHeads, back.HeadDim, back.NormType, back.PositionEmbeddingType)
	// Output: llama 2 64 rms_norm rope
}

func ExampleConfig_Validate() {
	cfg := models.GPT2Config(100, 96, 2, 5, 64)
	fmt.Println(cfg.Validate())
	// Output: models: config: num_attention_heads (5) must divide hidden_size (96) unless head_dim is set
}

func ExampleGPT2Config() {
	cfg := models.GPT2Config(65, 128, 4, 4, 128)
	fmt.Println(cfg.NormType, cfg.HiddenAct, cfg.PositionEmbeddingType, cfg.IntermediateSize, cfg.AttentionBias)
	// Output: layer_norm gelu learned 512 true
}

func ExampleLlamaConfig() {
	cfg := models.LlamaConfig(32000, 2048, 16, 32, 8, 8192, 4096)
	fmt.Println(cfg.NormType, cfg.HiddenAct, cfg.MLPGated, cfg.PositionEmbeddingType, cfg.NumKeyValueHeads)
	// Output: rms_norm silu true rope 8
}

func ExampleNew() {
	m, err := models.New(models.LlamaConfig(100, 64, 2, 4, 2, 128, 256), autodiff.NewRNG(1))
	if err != nil {
		panic(err)
	}
	for _, p := range m.Params()[:5] {
		fmt.Println(p.Name, p.Value.Shape())
	}
	logits := m.Forward(nil, autodiff.FromInt32([]int32{1, 2, 3}, 1, 3))
	fmt.Println("logits", logits.Shape())
	// Output:
	// model.embed_tokens.weight [100 64]
	// model.layers.0.input_layernorm.weight [64]
	// model.layers.0.self_attn.q_proj.weight [64 64]
	// model.layers.0.self_attn.k_proj.weight [32 64]
	// model.layers.0.self_attn.v_proj.weight [32 64]
	// logits [1 3 100]
}

// Copy the weights of one model into another through their checkpoint names.
func ExampleModel_StateDict() {
	cfg := models.GPT2Config(50, 32, 1, 2, 16)
	a, _ := models.New(cfg, autodiff.NewRNG(1))
	b, _ := models.New(cfg, autodiff.NewRNG(2))
	sd := a.StateDict()
	fmt.Println(len(sd), "tensors, e.g.", sd["model.embed_positions.weight"].Shape())
	fmt.Println(b.LoadStateDict(sd))
	delete(sd, "lm_head.weight")
	fmt.Println(b.LoadStateDict(sd))
	// Output:
	// 21 tensors, e.g. [16 32]
	// <nil>
	// models: LoadStateDict: lm_head.weight is missing
}

// Score a prompt, then continue it one token at a time from a cache.
func ExampleCache() {
	m, _ := models.New(models.LlamaConfig(20, 32, 2, 4, 2, 64, 64), autodiff.NewRNG(1))
	cache := models.NewCache(m)
	logits := m.ForwardCache(nil, autodiff.FromInt32([]int32{3, 1, 4, 1, 5}, 1, 5), cache)
	fmt.Println(logits.Shape(), "cached", cache.Offset())
	logits = m.ForwardCache(nil, autodiff.FromInt32([]int32{9}, 1, 1), cache)
	fmt.Println(logits.Shape(), "cached", cache.Offset())
	// Output:
	// [1 5 20] cached 5
	// [1 1 20] cached 6
}

func ExampleLinearGELU() {
	x := autodiff.FromFloat32([]float32{1, -1}, 1, 2)
	w := autodiff.FromFloat32([]float32{1, 0, 0, 1, 1, 1}, 3, 2) // (out, in)
	y := models.LinearGELU(x, w, nil)                            // gelu(x·Wᵀ)
	fmt.Printf("%.4f\n", y.Float32s())
	// Output: [0.8413 -0.1587 0.0000]
}

func ExampleLayerNorm() {
	n := models.LayerNorm{LayerNorm: layers.NewLayerNorm(autodiff.Float32, 8, 1e-5, true)}
	x := autodiff.FromFloat32([]float32{1, 2, 3, 4, 5, 6, 7, 8}, 1, 8)
	fmt.Printf("%.3f\n", n.Forward(nil, x).Float32s())
	for _, p := range n.Params("model.norm.") {
		fmt.Println(p.Name)
	}
	// Output:
	// [-1.528 -1.091 -0.655 -0.218 0.218 0.655 1.091 1.528]
	// model.norm.weight
	// model.norm.bias
}

func ExampleAttentionMixer() {
	m, _ := models.New(models.GPT2Config(10, 16, 1, 2, 8), autodiff.NewRNG(1))
	attn := m.Layers[0].Mixer.(models.AttentionMixer)
	fmt.Println(m.Layers[0].MixerName, attn.Heads, attn.KVHeads, attn.HeadDim, attn.Causal)
	// Output: self_attn 2 2 8 true
}

func ExampleDenseMLP() {
	m, _ := models.New(models.LlamaConfig(10, 16, 1, 2, 2, 24, 8), autodiff.NewRNG(1))
	mlp := m.Layers[0].FeedForward.(models.DenseMLP)
	for _, nl := range mlp.Linears("mlp.") {
		fmt.Println(nl.Name, nl.Linear.Weight.Shape())
	}
	// Output:
	// mlp.gate_proj [24 16]
	// mlp.up_proj [24 16]
	// mlp.down_proj [16 24]
}

func ExampleLayer() {
	m, _ := models.New(models.GPT2Config(10, 16, 2, 2, 8), autodiff.NewRNG(1))
	for i, l := range m.Layers {
		fmt.Printf("layer %d: %T mixer %q, %T feed-forward %q\n", i, l.Mixer, l.MixerName, l.FeedForward, l.FeedForwardName)
	}
	// Output:
	// layer 0: models.AttentionMixer mixer "self_attn", models.DenseMLP feed-forward "mlp"
	// layer 1: models.AttentionMixer mixer "self_attn", models.DenseMLP feed-forward "mlp"
}

// One training step by hand: forward on a tape, backward, optimizer update.
func ExampleModel() {
	m, _ := models.New(models.GPT2Config(32, 16, 2, 2, 16), autodiff.NewRNG(1))
	opt, _ := optim.NewAdamW(m.Params(), optim.AdamConfig{LR: optim.Constant(1e-3)})
	inputs := autodiff.FromInt32([]int32{1, 2, 3, 4, 5, 6, 7, 8}, 2, 4)
	targets := autodiff.FromInt32([]int32{2, 3, 4, 5, 6, 7, 8, 9}, 2, 4)
	mask := autodiff.FromInt32([]int32{1, 1, 1, 1, 0, 0, 1, 1}, 2, 4) // 0: no loss there

	tp := autodiff.NewTape()
	loss := m.Loss(&layers.Ctx{Tape: tp, Train: true}, inputs, targets, mask)
	value := loss.Item() // read before Release frees it with the tape
	tp.Backward(loss)
	opt.Step(optim.Grads(tp, m.Params()))
	tp.Release()
	fmt.Println(len(m.Params()), "parameters updated; loss near log(32):", math.Abs(value-math.Log(32)) < 0.3)
	// Output: 37 parameters updated; loss near log(32): true
}

// shiftMixer is a toy mixer: each position receives the previous one's vector.
type shiftMixer struct{}

func (shiftMixer) Params(string) []autodiff.Param { return nil }

func (shiftMixer) Forward(_ *layers.Ctx, x *autodiff.Tensor, _ *models.LayerCache) *autodiff.Tensor {
	b, t, d := x.Dim(0), x.Dim(1), x.Dim(2)
	return autodiff.Concat(1, autodiff.Zeros(x.DType(), b, 1, d), autodiff.Slice(x, 1, 0, t-1))
}

// Any type with Params and Forward is a mixer: here a layer's attention is
// replaced by a parameter-free shift, and the model still trains end to end.
func ExampleMixer() {
	m, _ := models.New(models.GPT2Config(16, 8, 2, 2, 8), autodiff.NewRNG(1))
	m.Layers[1].Mixer, m.Layers[1].MixerName = shiftMixer{}, "shift"
	tp := autodiff.NewTape()
	ids := autodiff.FromInt32([]int32{1, 2, 3, 4}, 1, 4)
	loss := m.Loss(&layers.Ctx{Tape: tp}, ids, ids, nil)
	tp.Backward(loss)
	fmt.Println(len(m.Params()), "parameters; q_proj of layer 0 has a gradient:", tp.Grad(m.Layers[0].Mixer.(models.AttentionMixer).Q.Weight) != nil)
	tp.Release()
	// Output: 29 parameters; q_proj of layer 0 has a gradient: true
}

// scaled is a toy feed-forward: a learned per-channel scale.
type scaled struct{ w *autodiff.Tensor }

func (s scaled) Params(prefix string) []autodiff.Param {
	return []autodiff.Param{{Name: prefix + "scale", Value: s.w}}
}

func (s scaled) Forward(c *layers.Ctx, x *autodiff.Tensor) *autodiff.Tensor {
	return autodiff.Mul(x, c.Param(s.w))
}

func ExampleFeedForward() {
	m, _ := models.New(models.LlamaConfig(16, 8, 1, 2, 1, 16, 8), autodiff.NewRNG(1))
	m.Layers[0].FeedForward = scaled{autodiff.Full(autodiff.Float32, 1, 8)}
	for _, p := range m.Params() {
		if strings.Contains(p.Name, "mlp") {
			fmt.Println(p.Name, p.Value.Shape())
		}
	}
	// Output: model.layers.0.mlp.scale [8]
}

func ExampleNorm() {
	for _, cfg := range []models.Config{models.GPT2Config(10, 8, 1, 2, 8), models.LlamaConfig(10, 8, 1, 2, 2, 16, 8)} {
		m, _ := models.New(cfg, autodiff.NewRNG(1))
		var n models.Norm = m.Norm
		fmt.Printf("%s: %d parameters\n", cfg.NormType, len(n.Params("")))
	}
	// Output:
	// layer_norm: 2 parameters
	// rms_norm: 1 parameters
}

func ExampleLayerCache() {
	m, _ := models.New(models.LlamaConfig(10, 16, 2, 2, 1, 32, 16), autodiff.NewRNG(1))
	cache := models.NewCache(m)
	m.ForwardCache(nil, autodiff.FromInt32([]int32{1, 2, 3}, 1, 3), cache)
	for i, lc := range cache.Layers {
		fmt.Println("layer", i, "keys cached:", lc.KV.Offset())
	}
	// Output:
	// layer 0 keys cached: 3
	// layer 1 keys cached: 3
}

func ExampleNewCache() {
	m, _ := models.New(models.GPT2Config(10, 16, 1, 2, 16), autodiff.NewRNG(1))
	cache := models.NewCache(m)
	fmt.Println(len(cache.Layers), cache.Offset())
	// Output: 1 0
}

func ExampleReadConfig() {
	dir, _ := os.MkdirTemp("", "config")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "config.json")
	if err := models.GPT2Config(65, 128, 4, 4, 128).WriteConfig(path); err != nil {
		panic(err)
	}
	cfg, err := models.ReadConfig(path)
	fmt.Println(cfg.VocabSize, cfg.HiddenSize, cfg.NumHiddenLayers, cfg.PositionEmbeddingType, err)
	// Output: 65 128 4 learned <nil>
}

func ExampleParseConfig() {
	cfg, err := models.ParseConfig([]byte(`{"model_type": "llama", "vocab_size": 100, "hidden_size": 64,
		"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_act": "silu", "mlp_gated": true,
		"norm_type": "rms_norm", "bos_token_id": 1}`))
	fmt.Println(err, cfg.Validate(), cfg.WithDefaults().HeadDim, string(cfg.Extra["bos_token_id"]))
	// Output: <nil> <nil> 16 1
}

// Prompts of different lengths prefilled on their own, then decoded as one
// batch: each row at its own position.
func ExampleStackCaches() {
	m, _ := models.New(models.LlamaConfig(20, 32, 2, 4, 2, 64, 64), autodiff.NewRNG(1))
	a, b := models.NewCache(m), models.NewCache(m)
	m.ForwardCache(nil, autodiff.FromInt32([]int32{3, 1, 4, 1, 5}, 1, 5), a)
	m.ForwardCache(nil, autodiff.FromInt32([]int32{9, 2}, 1, 2), b)
	batch := models.StackCaches(a, b)
	logits := m.ForwardCache(nil, autodiff.FromInt32([]int32{7, 7}, 2, 1), batch)
	fmt.Println(logits.Shape(), batch.RowOffsets())
	batch.Select([]int{1}) // the first sequence is done
	fmt.Println(batch.RowOffsets())
	// Output:
	// [2 1 20] [6 3]
	// [3]
}

// A paged cache shares a prompt prefix between two continuations.
func ExampleCache_Fork() {
	m, _ := models.New(models.LlamaConfig(20, 32, 2, 4, 2, 64, 64), autodiff.NewRNG(1))
	a := models.NewCacheWith(m, models.CacheOptions{BlockSize: 4})
	m.ForwardCache(nil, autodiff.FromInt32([]int32{3, 1, 4, 1, 5, 9, 2, 6}, 1, 8), a)
	b := a.Fork()
	m.ForwardCache(nil, autodiff.FromInt32([]int32{5}, 1, 1), a)
	m.ForwardCache(nil, autodiff.FromInt32([]int32{3, 5}, 1, 2), b)
	fmt.Println(a.Offset(), b.Offset())
	// Output: 9 10
}

// Try tokens, then go back: trim what can be trimmed, restore the rest.
func ExampleCache_Mark() {
	cfg := models.LlamaConfig(20, 32, 2, 4, 2, 64, 64)
	cfg.LayerTypes = []string{models.MixerMamba, models.MixerFullAttention}
	m, _ := models.New(cfg, autodiff.NewRNG(1))
	c := models.NewCacheWith(m, models.CacheOptions{Float16: true})
	m.Prefill(autodiff.FromInt32([]int32{3, 1, 4}, 1, 3), c)
	mk := c.Mark()
	m.Prefill(autodiff.FromInt32([]int32{1, 5, 9}, 1, 3), c)
	fmt.Println(c.Offset(), c.TrimTo(3)) // a Mamba state cannot be trimmed
	c.Rewind(mk)
	fmt.Println(c.Offset())
	// Output:
	// 6 false
	// 3
}

// Train with each layer recomputed during backward and bfloat16 activations:
// the loss and gradients stay those of a float32 step to within bfloat16's
// rounding, while the tape keeps only the layer inputs.
func ExampleTrainOptions() {
	m, err := models.New(models.GPT2Config(16, 32, 2, 4, 32), autodiff.NewRNG(1))
	if err != nil {
		panic(err)
	}
	ids := make([]int32, 4*17)
	for i := range ids {
		ids[i] = int32(i % 16)
	}
	seq := autodiff.FromInt32(ids, 4, 17)
	inputs, targets := autodiff.Slice(seq, 1, 0, 16), autodiff.Slice(seq, 1, 1, 17)
	loss := func(o models.TrainOptions) float64 {
		m.Train = o
		tp := autodiff.NewTape()
		defer tp.Release()
		l := m.Loss(&layers.Ctx{Tape: tp, Train: true}, inputs, targets, nil)
		tp.Backward(l)
		return l.Item()
	}
	plain := loss(models.TrainOptions{})
	ckpt := loss(models.TrainOptions{GradCheckpoint: true, Precision: models.PrecisionBF16})
	fmt.Printf("same loss to 1%%: %v\n", math.Abs(ckpt-plain) < 0.01*plain)
	// Output:
	// same loss to 1%: true
}
