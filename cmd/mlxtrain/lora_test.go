package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/checkpoints"
)

const examples = "../../recipes/examples"

// shortRun is the --set list that cuts an example recipe to a couple of steps.
var shortRun = []string{"--set", "train.iters=2", "--set", "lr_schedule.warmup=0", "--set", "train.steps_per_eval=0",
	"--set", "data.task.examples=64", "--set", "data.task.held_out=8"}

func fitExample(t *testing.T, name, out string, extra ...string) string {
	t.Helper()
	args := append([]string{"fit", "--quiet", "--out", out}, shortRun...)
	args = append(append(args, extra...), filepath.Join(examples, name+".toml"))
	code, stdout, stderr := runCLI(args...)
	require.Equal(t, 0, code, "%s: %s", name, stderr)
	last := strings.TrimSpace(stdout)
	require.True(t, strings.HasPrefix(last, "final checkpoint: "), last)
	return strings.TrimPrefix(last, "final checkpoint: ")
}

// TestExampleRecipesRun trains every example recipe for two steps (lora.toml
// from the run of text.toml, as its comment says) and inspects its data.
func TestExampleRecipesRun(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(examples, "*.toml"))
	require.NoError(t, err)
	dir := t.TempDir()
	textRun := filepath.Join(dir, "text")
	fitExample(t, "text", textRun)
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".toml")
		var extra []string
		if name == "lora" {
			extra = []string{"--set", "model.from=" + textRun}
		}
		if name != "text" {
			fitExample(t, name, filepath.Join(dir, name), extra...)
		}
		args := append(append([]string{"data", "inspect", "-n", "2"}, extra...), f)
		code, stdout, stderr := runCLI(args...)
		require.Equal(t, 0, code, "%s: %s", name, stderr)
		assert.Contains(t, stdout, "--- row 2:", name)
		assert.Contains(t, stdout, "⟦", name)
	}
}

func TestDataInspect(t *testing.T) {
	// The synthetic default: the prompt is context, the answer and EOS trained.
	code, stdout, stderr := runCLI("data", "inspect", "-n", "3", "--ids")
	require.Equal(t, 0, code, stderr)
	rows := regexp.MustCompile(`(?m)^⟦(\d+)\+(\d+)=⟧(\d+)<\|eos\|>⟦<\|pad\|>×(\d+)⟧$`).FindAllStringSubmatch(stdout, -1)
	require.Len(t, rows, 3, stdout)
	assert.Regexp(t, `--- row 1: 16 targets: \d+ trained, \d+ context, \d+ padding`, stdout)
	assert.Regexp(t, `ids \(\[context\]\): \[\d+\] `, stdout)

	// Completions from a JSONL file: the prompt is masked.
	dir := t.TempDir()
	jsonl := filepath.Join(dir, "c.jsonl")
	require.NoError(t, os.WriteFile(jsonl, []byte(`{"prompt": "Say hi:", "completion": " hi"}`+"\n"), 0o644))
	code, stdout, stderr = runCLI("data", "inspect", "-n", "1", "--set", "data.task.kind=", "--set", "data.train="+jsonl,
		"--set", "data.format=completions", "--set", "train.max_seq_length=12")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "⟦Say hi:⟧ hi<|eos|>⟦<|pad|>×2⟧")
	assert.Contains(t, stdout, "--- row 1: 12 targets: 4 trained, 6 context, 2 padding")

	// Chat: only the assistant turn is trained.
	chat := filepath.Join(dir, "chat.jsonl")
	require.NoError(t, os.WriteFile(chat, []byte(`{"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}`+"\n"), 0o644))
	code, stdout, stderr = runCLI("data", "inspect", "-n", "1", "--set", "data.task.kind=", "--set", "data.train="+chat,
		"--set", "data.format=chat", "--set", "train.max_seq_length=64")
	require.Equal(t, 0, code, stderr)
	assert.Regexp(t, `⟦[^⟧]*user\\nHi\?[^⟧]*assistant\\n⟧Hello\.`, stdout)

	code, _, stderr = runCLI("data", "inspect", "-n", "0")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "at least 1")
}

// TestLoRAThroughTheCLI fine-tunes a tiny base with LoRA, checks that the base
// checkpoint is untouched, fuses the adapters, and compares generation from
// the fused checkpoint with generation from base + adapters.
func TestLoRAThroughTheCLI(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	tiny := []string{"--set", "model.d_model=32", "--set", "model.layers=2", "--set", "model.heads=2",
		"--set", "data.task.examples=500", "--set", "train.steps_per_eval=0", "--set", "lr_schedule.warmup=0"}
	code, stdout, stderr := runCLI(append(append([]string{"fit", "--quiet", "--out", base}, tiny...), "--set", "train.iters=10")...)
	require.Equal(t, 0, code, stderr)
	baseCk := strings.TrimPrefix(strings.TrimSpace(stdout), "final checkpoint: ")
	before, err := os.ReadFile(filepath.Join(baseCk, checkpoints.ModelFile))
	require.NoError(t, err)

	lora := filepath.Join(dir, "lora")
	code, stdout, stderr = runCLI(append(append([]string{"fit", "--quiet", "--out", lora}, tiny...),
		"--set", "train.iters=10", "--set", "model.from="+base, "--set", "train.fine_tune_type=lora",
		"--set", "lora.keys=q_proj,v_proj,up_proj", "--set", "optimizer.learning_rate=0.05")...)
	require.Equal(t, 0, code, stderr)
	assert.Regexp(t, `trainable parameters \d+ of \d+`, stderr)
	loraCk := strings.TrimPrefix(strings.TrimSpace(stdout), "final checkpoint: ")
	assert.FileExists(t, filepath.Join(loraCk, checkpoints.AdaptersFile))
	after, err := os.ReadFile(filepath.Join(baseCk, checkpoints.ModelFile))
	require.NoError(t, err)
	assert.Equal(t, before, after, "the base checkpoint must not change")

	fused := filepath.Join(dir, "fused")
	code, stdout, stderr = runCLI("fuse", "--checkpoint", lora, "--out", fused)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "fused checkpoint: "+fused)
	for _, prompt := range []string{"12+34=", "5+5=", "99+99="} {
		_, want, stderr := runCLI("generate", "--checkpoint", lora, "--prompt", prompt, "--max-tokens", "5")
		require.Contains(t, stderr, "generated:")
		_, got, stderr := runCLI("generate", "--checkpoint", fused, "--prompt", prompt, "--max-tokens", "5")
		require.Contains(t, stderr, "generated:")
		assert.Equal(t, want, got, prompt)
	}
	code, stdout, stderr = runCLI("eval", "--checkpoint", lora)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "val loss:")

	// Errors are one line naming what is wrong.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"fuse", "--checkpoint", base, "--out", filepath.Join(dir, "x")}, "not a LoRA checkpoint"},
		{[]string{"fuse", "--checkpoint", filepath.Join(dir, "nope"), "--out", filepath.Join(dir, "y")}, "nope: no such directory"},
		{append(append([]string{"fit", "--quiet", "--out", filepath.Join(dir, "z")}, tiny...), "--set", "model.from="+base,
			"--set", "train.fine_tune_type=lora", "--set", "lora.keys=wq"), "model.layers.*.self_attn.q_proj"},
		{append(append([]string{"fit", "--quiet", "--out", filepath.Join(dir, "z")}, tiny...), "--set", "model.from="+filepath.Join(dir, "nope")), "no such directory"},
	} {
		code, _, stderr := runCLI(c.args...)
		assert.Equal(t, 1, code, "%v", c.args)
		assert.Contains(t, stderr, c.want, "%v", c.args)
		assert.Len(t, strings.Split(strings.TrimSpace(stderr), "\n"), 1, "%v: %s", c.args, stderr)
	}
}
