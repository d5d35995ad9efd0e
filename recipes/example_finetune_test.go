package recipes_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/mlxtrain/mlxtrain/checkpoints"
	"github.com/mlxtrain/mlxtrain/recipes"
)

// Show the rows a recipe trains on: the loss-masked tokens (here the
// addition prompts and the padding) are between ⟦ and ⟧.
func ExampleInspectData() {
	r := recipes.Defaults()
	r.Data.Task.Kind, r.Data.Task.MaxDigits, r.Data.Task.Examples, r.Data.Task.HeldOut = "addition", 2, 100, 50
	r.Data.Pack = false
	r.Train.MaxSeqLength = 12
	if err := recipes.InspectData(r, os.Stdout, recipes.InspectOptions{Examples: 2}); err != nil {
		fmt.Println(err)
	}
	// Output:
	// data: 100 training examples, 50 validation; the addition task's tokenizer, 259 ids; rows of 12 next-token predictions, one example per row, padded; 100 rows per epoch
	// legend: text in ⟦…⟧ is context only (no loss on those tokens: prompts, user turns, padding; a row's first token is never a target); the rest is trained on; <|pad|>×N is N padding tokens
	//
	// --- row 1: 12 targets: 4 trained, 4 context, 4 padding
	// ⟦4+96=⟧100<|eos|>⟦<|pad|>×4⟧
	//
	// --- row 2: 12 targets: 4 trained, 5 context, 3 padding
	// ⟦93+86=⟧179<|eos|>⟦<|pad|>×3⟧
}

// Train a small base model, fine-tune it with LoRA adapters from Go, and fuse
// the adapters into a full checkpoint.
func ExampleFuse() {
	dir, err := os.MkdirTemp("", "lora-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	base := recipes.Defaults()
	base.Data.Task.Kind, base.Data.Task.MaxDigits, base.Data.Task.Examples = "addition", 2, 500
	base.Model.DModel, base.Model.Layers, base.Model.Heads = 32, 2, 2
	base.Train.Iters, base.Train.BatchSize, base.Train.MaxSeqLength, base.Train.StepsPerEval = 5, 8, 12, 0
	if _, err := recipes.Fit(base, recipes.FitOptions{Out: filepath.Join(dir, "base")}); err != nil {
		panic(err)
	}

	lora := *base
	lora.Model.From = filepath.Join(dir, "base") // a run directory: its latest checkpoint
	lora.Train.FineTuneType = "lora"
	lora.LoRA.Rank, lora.LoRA.Keys = 4, []string{"self_attn.q_proj", "self_attn.v_proj"}
	res, err := recipes.Fit(&lora, recipes.FitOptions{Out: filepath.Join(dir, "lora")})
	if err != nil {
		panic(err)
	}
	for _, f := range []string{checkpoints.ModelFile, checkpoints.AdaptersFile, checkpoints.AdapterConfigFile} {
		_, err := os.Stat(filepath.Join(res.Checkpoint, f))
		fmt.Printf("%s: %v\n", f, err == nil)
	}

	if _, err := recipes.Fuse(res.Checkpoint, filepath.Join(dir, "fused")); err != nil {
		panic(err)
	}
	fused, err := recipes.LoadModel(filepath.Join(dir, "fused"))
	if err != nil {
		panic(err)
	}
	fmt.Println("fused has adapters:", fused.Adapter != nil)
	// Output:
	// model.safetensors: false
	// adapters.safetensors: true
	// adapter_config.json: true
	// fused has adapters: false
}
