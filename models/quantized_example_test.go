package models_test

import (
	"fmt"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/models"
	"github.com/mlxtrain/mlxtrain/quant"
)

// A model quantized in place keeps a float32 head here (keep), records the
// layout in its config, and a model built from that config loads its state.
func ExampleModel_Quantize() {
	cfg := models.LlamaConfig(64, 64, 1, 4, 2, 128, 32)
	m, _ := models.New(cfg, autodiff.NewRNG(1))
	reports, err := m.Quantize(quant.Config{Params: quant.Params{GroupSize: 64, Bits: 4}},
		func(name string) bool { return name == "lm_head" })
	if err != nil {
		panic(err)
	}
	for _, r := range reports[:2] {
		fmt.Println(r.Name, r.Quantized, r.BytesBefore, "→", r.BytesAfter)
	}
	q, _ := m.Config.Quantization()
	_, headQuantized := q.For("lm_head")
	fmt.Println("lm_head quantized:", headQuantized)

	loaded, _ := models.New(m.Config, autodiff.NewRNG(2))
	fmt.Println(loaded.LoadStateDict(m.StateDict()))
	// Output:
	// model.embed_tokens true 16384 → 2560
	// model.layers.0.self_attn.q_proj true 16384 → 2560
	// lm_head quantized: false
	// <nil>
}
