package recipes_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mlxtrain/mlxtrain/recipes"
)

func ExampleParse() {
	text := `
[model]
family = "llama"
d_model = 128
layers = 2
heads = 4

[data.task]
kind = "reverse"
max_len = 12

[train]
iters = 500
max_seq_length = 32
`
	r, err := recipes.Parse("reverse.toml", []byte(text), "train.batch_size=32")
	if err != nil {
		fmt.Println(err)
		return
	}
	m := r.Model
	fmt.Println(m.Family, m.FFN, m.Norm, m.Positions, m.EffectiveHeadDim(), m.EffectiveFFNWidth())
	fmt.Println(r.Data.Task.Kind, r.Train.Iters, r.Train.BatchSize)

	// Mistakes are reported with file, line and key, all at once.
	_, err = recipes.Parse("reverse.toml", []byte(text+"iter = 5\nbatch_size = \"big\"\n"))
	fmt.Println(err)
	// Output:
	// llama swiglu rmsnorm rope 32 344
	// reverse 500 32
	// reverse.toml:15: unknown key train.iter (did you mean train.iters?)
	// reverse.toml:16: train.batch_size: want an integer, got string "big"
}

// A recipe is a plain struct: a Go program fills it, with no TOML at all, and
// gets the same checks.
func ExampleRecipe() {
	r := recipes.Defaults()
	if err := r.Model.SetFamily("llama"); err != nil {
		panic(err)
	}
	r.Model.DModel, r.Model.Layers, r.Model.Heads, r.Model.KVHeads = 64, 2, 4, 2
	r.Data.Task.Kind = "mqar"
	r.Train.Iters, r.Train.MaxSeqLength = 300, 40
	r.LRSchedule.Name, r.LRSchedule.Warmup = "cosine", 30
	if err := r.Validate(); err != nil {
		panic(err)
	}
	lr, err := r.Schedule(r.Train.Iters)
	if err != nil {
		panic(err)
	}
	fmt.Printf("lr %.5f %.5f %.5f\n", lr.LR(0), lr.LR(30), lr.LR(300))
	spec := r.TaskSpec()
	fmt.Println(spec.Kind, spec.Pairs, spec.Queries)

	r.Model.KVHeads = 3
	fmt.Println(r.Validate())
	// Output:
	// lr 0.00000 0.00100 0.00000
	// mqar 8 4
	// model.kv_heads = 3 does not divide model.heads = 4
}

func ExampleDefault() {
	r := recipes.Default()
	fmt.Println(r.Data.Task.Kind, r.Data.Task.MaxDigits, r.Model.DModel, r.Model.Layers, r.Train.Iters)
	// The command line's --set flags.
	if err := r.Apply("train.iters=20", "lr_schedule.warmup=5"); err != nil {
		panic(err)
	}
	fmt.Println(r.Train.Iters)
	// Output:
	// addition 3 64 4 3000
	// 20
}

func ExampleLoad() {
	r, err := recipes.Load(filepath.Join("examples", "parquet.toml"))
	if err != nil {
		panic(err)
	}
	train, _, _ := r.Sources()
	// Data paths are relative to the recipe, made absolute.
	wd, _ := os.Getwd()
	rel, _ := filepath.Rel(wd, train.Paths[0])
	fmt.Println(filepath.IsAbs(train.Paths[0]), filepath.ToSlash(rel), train.Format, train.PromptField, train.CompletionField)
	// Output:
	// true examples/data/*.parquet completions question answer
}

func ExampleRecipe_Set() {
	r := recipes.Default()
	for _, kv := range [][2]string{
		{"train.iters", "3000"},
		{"optimizer.betas", "0.9,0.95"},
		{"model.layer_pattern", `["attention", "ssm:moe"]`},
		{"data.task.kind", "copy"},
	} {
		if err := r.Set(kv[0], kv[1]); err != nil {
			panic(err)
		}
	}
	fmt.Println(r.Train.Iters, r.Optimizer.Betas, r.Model.LayerPattern, r.Data.Task.Kind)
	fmt.Println(r.Set("train.iter", "5"))
	fmt.Println(r.Set("train.iters", "lots"))
	// Output:
	// 3000 [0.9 0.95] [attention ssm:moe] copy
	// --set train.iter=5: unknown key train.iter (did you mean train.iters?)
	// --set train.iters=lots: train.iters: cannot read "lots" as a TOML value
}

func ExampleRecipe_WriteTOML() {
	r := recipes.Default()
	var b strings.Builder
	if err := r.WriteTOML(&b); err != nil {
		panic(err)
	}
	// Every key is written, defaults included; here the [lr_schedule] table.
	text := b.String()
	start := strings.Index(text, "[lr_schedule]")
	end := strings.Index(text, "[lora]")
	fmt.Print(text[start:end])
	// Output:
	// [lr_schedule]
	// name        = "cosine"
	// warmup      = 50
	// warmup_init = 0.0
	// final_lr    = 1e-05
	// decay_steps = 0
	// gamma       = 0.1
	// step_size   = 1000
}

func ExampleErrors() {
	_, err := recipes.Parse("r.toml", []byte("[model]\nheads = 3\n[train]\nbatch_size = 0\n"))
	var es recipes.Errors
	if errors.As(err, &es) {
		for _, e := range es {
			fmt.Printf("%s line %d key %s\n", e.Source, e.Line, e.Key)
		}
	}
	// Output:
	// r.toml line 2 key model.heads
	// r.toml line 0 key data.train
	// r.toml line 4 key train.batch_size
}

func ExampleModelConfig_LayerKinds() {
	m := recipes.Defaults().Model
	m.Layers = 6
	m.LayerPattern = []string{"ssm", "ssm", "attention:moe"}
	kinds, err := m.LayerKinds()
	if err != nil {
		panic(err)
	}
	fmt.Println(kinds)
	// Output:
	// [ssm:dense ssm:dense attention:moe ssm:dense ssm:dense attention:moe]
}

func ExampleKeys() {
	keys := recipes.Keys()
	fmt.Println(len(keys) > 90, keys[0], keys[len(keys)-1])
	// Output:
	// true model.family eval.sample_tokens
}

func Example_effectiveRecipeRoundTrip() {
	// What the fit command saves in a checkpoint reads back to the same run.
	dir, err := os.MkdirTemp("", "recipe")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "recipe.toml")
	r := recipes.Default()
	if err := os.WriteFile(path, []byte(r.Effective()), 0o644); err != nil {
		panic(err)
	}
	back, err := recipes.Load(path)
	if err != nil {
		panic(err)
	}
	fmt.Println(back.Effective() == r.Effective())
	// Output:
	// true
}

// A float16 run's loss scaler: an overflow skips the step and halves the
// scale; enough finite steps in a row double it.
func ExampleLossScaler() {
	s := &recipes.LossScaler{Scale: 1024, GrowthInterval: 2}
	fmt.Println(s.Update(false), s.Scale) // Inf or NaN in the gradients
	fmt.Println(s.Update(true), s.Scale)
	fmt.Println(s.Update(true), s.Scale)
	// Output:
	// false 512
	// true 512
	// true 1024
}
