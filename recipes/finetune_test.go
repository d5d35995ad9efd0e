package recipes

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/checkpoints"
	"github.com/mlxtrain/mlxtrain/generate"
)

// trainBase trains the tiny addition model for a few steps and returns its run
// directory.
func trainBase(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	_, err := Fit(tinyRecipe(t, 20, "optimizer.learning_rate=3e-3"), FitOptions{Out: dir})
	require.NoError(t, err)
	return dir
}

func trainLosses(t *testing.T, dir string) []float64 {
	var out []float64
	for _, m := range readMetrics(t, dir) {
		if m.TrainLoss != nil {
			out = append(out, *m.TrainLoss)
		}
	}
	return out
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

func loraSets(base string, extra ...string) []string {
	return append([]string{"model.from=" + base, "train.fine_tune_type=lora", "lora.rank=4", "lora.scale=2",
		"lora.keys=self_attn.q_proj,self_attn.v_proj,mlp.up_proj", "optimizer.learning_rate=1e-2"}, extra...)
}

func TestLoRAFineTuneEndToEnd(t *testing.T) {
	base := trainBase(t)
	baseCk, err := ResolveCheckpoint(base)
	require.NoError(t, err)
	baseWeights := readFile(t, filepath.Join(baseCk, checkpoints.ModelFile))

	// LoRA from the base on text it has never seen: the loss falls, only the
	// adapters train, the base stays as it was.
	txt := filepath.Join(t.TempDir(), "fox.txt")
	require.NoError(t, os.WriteFile(txt, []byte(strings.Repeat("the quick brown fox jumps over the lazy dog. ", 200)), 0o644))
	out := t.TempDir()
	var log bytes.Buffer
	res, err := Fit(tinyRecipe(t, 20, loraSets(base, "optimizer.learning_rate=3e-2", "data.task.kind=", "data.train="+txt, "data.pack=true")...),
		FitOptions{Out: out, Log: &log})
	require.NoError(t, err, log.String())
	assert.Contains(t, log.String(), "trainable parameters")
	assert.Regexp(t, `lora: 6 adapters of rank 4 on model\.layers\.\*\.self_attn\.q_proj, model\.layers\.\*\.self_attn\.v_proj, model\.layers\.\*\.mlp\.up_proj; trainable parameters \d+ of \d+`, log.String())
	losses := trainLosses(t, out)
	require.GreaterOrEqual(t, len(losses), 4)
	assert.Less(t, losses[len(losses)-1], losses[0], "LoRA loss should fall: %v", losses)
	assert.Equal(t, baseWeights, readFile(t, filepath.Join(baseCk, checkpoints.ModelFile)), "the base weights must not change")

	// The checkpoint holds the adapters only, under their module names.
	assert.NoFileExists(t, filepath.Join(res.Checkpoint, checkpoints.ModelFile))
	ad, err := checkpoints.Load(filepath.Join(res.Checkpoint, checkpoints.AdaptersFile))
	require.NoError(t, err)
	defer ad.Release()
	assert.Len(t, ad.Names(), 12)
	assert.Contains(t, ad.Names(), "model.layers.0.self_attn.q_proj.lora_a")
	assert.Contains(t, ad.Names(), "model.layers.1.mlp.up_proj.lora_b")
	a, err := ad.Get("model.layers.0.self_attn.q_proj.lora_a")
	require.NoError(t, err)
	assert.Equal(t, []int{32, 4}, a.Shape())
	var ac AdapterConfig
	require.NoError(t, json.Unmarshal(readFile(t, filepath.Join(res.Checkpoint, checkpoints.AdapterConfigFile)), &ac))
	assert.Equal(t, 4, ac.LoRA.Rank)
	assert.Equal(t, 2.0, ac.LoRA.Scale)
	absBase, _ := filepath.Abs(baseCk)
	assert.Equal(t, absBase, ac.BaseModel)
	assert.Len(t, ac.Modules, 6)

	// The optimizer saw only the adapters.
	opt, err := checkpoints.Load(filepath.Join(res.Checkpoint, checkpoints.OptimizerFile))
	require.NoError(t, err)
	for _, n := range opt.Names() {
		assert.True(t, strings.Contains(n, ".lora_a") || strings.Contains(n, ".lora_b") || !strings.Contains(n, "model."), n)
	}
	opt.Release()

	// Base + adapters against the fused checkpoint: the same greedy answers,
	// logits equal to float32 rounding.
	lm, err := LoadModel(res.Checkpoint)
	require.NoError(t, err)
	require.NotNil(t, lm.Adapter)
	fusedDir := filepath.Join(t.TempDir(), "fused")
	_, err = Fuse(res.Checkpoint, fusedDir)
	require.NoError(t, err)
	assert.NoFileExists(t, filepath.Join(fusedDir, checkpoints.AdaptersFile))
	fused, err := LoadModel(fusedDir)
	require.NoError(t, err)
	assert.Nil(t, fused.Adapter)
	eos := lm.Tokenizer.Special().EOS
	for _, prompt := range []string{"12+34=", "7+8=", "99+1="} {
		ids := lm.Tokenizer.Encode(prompt)
		want, err := generate.Greedy(lm.Model, ids, 4, eos)
		require.NoError(t, err)
		got, err := generate.Greedy(fused.Model, ids, 4, eos)
		require.NoError(t, err)
		assert.Equal(t, want, got, prompt)
		x := autodiff.FromInt32(ids, 1, len(ids))
		la, lb := lm.Model.Forward(nil, x).Float32s(), fused.Model.Forward(nil, x).Float32s()
		for i := range la {
			assert.InDelta(t, la[i], lb[i], 1e-4)
		}
	}
	// The adapters change the model: base alone differs from base + adapters.
	plain, err := LoadModel(baseCk)
	require.NoError(t, err)
	x := autodiff.FromInt32(lm.Tokenizer.Encode("12+34="), 1, 6)
	assert.NotEqual(t, plain.Model.Forward(nil, x).Float32s(), lm.Model.Forward(nil, x).Float32s())

	_, err = Fuse(base, filepath.Join(t.TempDir(), "f"))
	assert.ErrorContains(t, err, "not a LoRA checkpoint")
	_, err = Fuse(res.Checkpoint, fusedDir)
	assert.ErrorContains(t, err, "already exists")
}

func TestLoRAResumeIsBitExact(t *testing.T) {
	base := trainBase(t)
	const n = 4
	sets := loraSets(base, "train.save_every="+itoa(n), "lora.dropout=0.1")
	a := t.TempDir()
	_, err := Fit(tinyRecipe(t, 2*n, sets...), FitOptions{Out: a})
	require.NoError(t, err)
	b := t.TempDir()
	_, err = Fit(tinyRecipe(t, 2*n, sets...), FitOptions{Out: b, Resume: filepath.Join(a, "checkpoints", checkpoints.DirName(n))})
	require.NoError(t, err)
	for _, f := range []string{checkpoints.AdaptersFile, checkpoints.OptimizerFile, checkpoints.AdapterConfigFile} {
		want := readFile(t, filepath.Join(a, "checkpoints", checkpoints.DirName(2*n), f))
		got := readFile(t, filepath.Join(b, "checkpoints", checkpoints.DirName(2*n), f))
		assert.True(t, bytes.Equal(want, got), "%s differs after resume", f)
	}
	// A full fine-tune cannot resume from adapters.
	_, err = Fit(tinyRecipe(t, 2*n, "model.from="+base), FitOptions{Out: t.TempDir(), Resume: filepath.Join(a, "checkpoints", checkpoints.DirName(n))})
	assert.ErrorContains(t, err, "LoRA checkpoint")
}

func TestFullFineTuneFromWeights(t *testing.T) {
	base := trainBase(t)
	baseLosses := trainLosses(t, base)
	out := t.TempDir()
	// Architecture keys may be left out: they come from the base.
	r := Defaults()
	require.NoError(t, r.Apply("data.task.kind=addition", "train.max_seq_length=16", "data.pack=false", "data.task.max_digits=2", "data.task.examples=2000", "data.task.held_out=50",
		"train.batch_size=16", "train.steps_per_report=5", "train.steps_per_eval=0", "train.save_every=0",
		"lr_schedule.warmup=0", "train.iters=5", "model.from="+base, "optimizer.learning_rate=3e-3"))
	res, err := Fit(r, FitOptions{Out: out})
	require.NoError(t, err)
	assert.Equal(t, 256, r.Model.DModel, "Fit does not change the caller's recipe")
	require.NoError(t, r.MatchBase())
	assert.Equal(t, 32, r.Model.DModel, "MatchBase fills what the recipe left out")
	assert.Equal(t, 16, r.Model.MaxPositions)
	ck, err := checkpoints.LoadDir(res.Checkpoint)
	require.NoError(t, err)
	defer ck.Release()
	assert.Regexp(t, `(?m)^d_model\s+= 32$`, string(ck.Recipe), "the saved recipe has the base's architecture")
	assert.Equal(t, []int{128, 32}, ck.Model["model.layers.0.mlp.up_proj.weight"].Shape())
	first := trainLosses(t, out)[0]
	assert.Less(t, first, baseLosses[0], "the fine-tune starts from the trained weights")
}

func TestFineTuneErrors(t *testing.T) {
	base := trainBase(t)
	baseCk, err := ResolveCheckpoint(base)
	require.NoError(t, err)

	// An architecture key that disagrees names the key and both values.
	_, err = Fit(tinyRecipe(t, 2, loraSets(base, "model.d_model=64")...), FitOptions{Out: t.TempDir()})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "model.d_model = 64")
	assert.Contains(t, err.Error(), "has 32")
	assert.Contains(t, err.Error(), "config.json")
	_, err = Fit(tinyRecipe(t, 2, loraSets(base, "model.family=llama")...), FitOptions{Out: t.TempDir()})
	assert.ErrorContains(t, err, `model.ffn = "swiglu" (set by model.family = "llama") but the base model has "gelu"`)

	_, err = Fit(tinyRecipe(t, 2, loraSets(base, "train.max_seq_length=32")...), FitOptions{Out: t.TempDir()})
	assert.ErrorContains(t, err, "train.max_seq_length = 32 exceeds the base model's learned positions (max_position_embeddings 16")

	// A synthetic task needs the base's tokenizer.
	other := t.TempDir()
	txt := filepath.Join(t.TempDir(), "t.txt")
	require.NoError(t, os.WriteFile(txt, []byte(strings.Repeat("some text to learn merges from. ", 50)), 0o644))
	_, err = Fit(tinyRecipe(t, 2, "data.task.kind=", "data.train="+txt, "data.tokenizer=bpe", "data.bpe_vocab_size=300"), FitOptions{Out: other})
	require.NoError(t, err)
	_, err = Fit(tinyRecipe(t, 2, "model.from="+other), FitOptions{Out: t.TempDir()})
	assert.ErrorContains(t, err, "is not the tokenizer of model.from")

	// Keys that match nothing list the linear layers there are.
	_, err = Fit(tinyRecipe(t, 2, loraSets(base, "lora.keys=attn.qkv")...), FitOptions{Out: t.TempDir()})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "match no linear layer")
	assert.Contains(t, err.Error(), "model.layers.*.self_attn.q_proj, model.layers.*.self_attn.k_proj")

	// A missing base, and corrupt files, give one line naming the file.
	_, err = Fit(tinyRecipe(t, 2, loraSets(filepath.Join(t.TempDir(), "nope"))...), FitOptions{Out: t.TempDir()})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "nope: no such directory")
	assert.NotContains(t, err.Error(), "\n")
	for _, f := range []string{checkpoints.ModelFile, checkpoints.ConfigFile, checkpoints.TokenizerFile} {
		bad := filepath.Join(t.TempDir(), "bad")
		require.NoError(t, os.CopyFS(bad, os.DirFS(baseCk)))
		b := readFile(t, filepath.Join(bad, f))
		copy(b[min(10, len(b)/2):], bytes.Repeat([]byte{'#'}, 8)) // same size, broken content
		require.NoError(t, os.WriteFile(filepath.Join(bad, f), b, 0o644))
		_, err = Fit(tinyRecipe(t, 2, loraSets(bad)...), FitOptions{Out: t.TempDir()})
		require.Error(t, err, f)
		assert.Contains(t, err.Error(), f)
		assert.NotContains(t, err.Error(), "\n", f)
	}
}
