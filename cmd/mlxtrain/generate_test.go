package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tinyRun trains a tiny checkpoint for the generate tests.
func tinyRun(t *testing.T) string {
	t.Helper()
	out := t.TempDir()
	code, _, stderr := runCLI("fit", "--quiet", "--out", out,
		"--set", "train.iters=5", "--set", "lr_schedule.warmup=0", "--set", "model.d_model=32",
		"--set", "model.layers=1", "--set", "data.task.examples=200", "--set", "train.steps_per_eval=0")
	require.Equal(t, 0, code, stderr)
	return out
}

func TestGenerateFlags(t *testing.T) {
	run := tinyRun(t)
	gen := func(args ...string) (string, string) {
		t.Helper()
		code, stdout, stderr := runCLI(append([]string{"generate", "--checkpoint", run}, args...)...)
		require.Equal(t, 0, code, stderr)
		return stdout, stderr
	}
	sampled := []string{"--prompt", "12+34=", "--max-tokens", "12", "--temp", "1.5", "--top-k", "20", "--top-p", "0.95",
		"--min-p", "0.01", "--repetition-penalty", "1.2", "--repetition-context-size", "8",
		"--presence-penalty", "0.1", "--frequency-penalty", "0.1"}
	a, stderr := gen(append(sampled, "--seed", "3")...)
	b, _ := gen(append(sampled, "--seed", "3")...)
	assert.Equal(t, a, b, "same seed, same output")
	assert.Regexp(t, `prompt: \d+ tokens, [\d.]+ tokens/s; generated: \d+ tokens, [\d.]+ tokens/s; peak memory: .+ tensors, .+ RSS`, stderr)

	greedy, _ := gen("--prompt", "12+34=", "--max-tokens", "8")
	for _, extra := range [][]string{
		{"--kv-block-size", "2"}, {"--max-kv-size", "64"}, {"--prefill-step-size", "2"},
		{"--draft", run, "--num-draft-tokens", "2"},
	} {
		got, stderr := gen(append([]string{"--prompt", "12+34=", "--max-tokens", "8"}, extra...)...)
		assert.Equal(t, greedy, got, "%v", extra)
		if extra[0] == "--draft" {
			assert.Contains(t, stderr, "draft tokens accepted")
		}
	}

	gen("--prompt", "12+34=", "--max-tokens", "8", "--kv-dtype", "float16") // runs; rounding may change the tokens

	// A stop string cuts the output before it.
	text := strings.TrimSuffix(greedy, "\n")
	if len(text) >= 2 {
		stop := text[len(text)-1:]
		stopped, _ := gen("--prompt", "12+34=", "--max-tokens", "8", "--stop", stop)
		assert.Equal(t, text[:strings.Index(text, stop)]+"\n", stopped)
	}

	// --prompts: one completion line per prompt, each as alone.
	dir := t.TempDir()
	file := filepath.Join(dir, "prompts.txt")
	require.NoError(t, os.WriteFile(file, []byte("12+34=\n7+8=\n100+200=\n"), 0o644))
	lines, _ := gen("--prompts", file, "--max-tokens", "8")
	got := strings.Split(strings.TrimSuffix(lines, "\n"), "\n")
	require.Len(t, got, 3)
	assert.Equal(t, text, got[0])
	for i, p := range []string{"7+8=", "100+200="} {
		one, _ := gen("--prompt", p, "--max-tokens", "8")
		assert.Equal(t, strings.TrimSuffix(one, "\n"), got[i+1])
	}

	// --chat and --prompt-file run; --truncate warns.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "p.txt"), []byte("hi"), 0o644))
	gen("--prompt-file", filepath.Join(dir, "p.txt"), "--chat", "--max-tokens", "3", "--truncate")
	_, stderr = gen("--prompt", strings.Repeat("1", 100), "--max-tokens", "3", "--truncate")
	assert.Contains(t, stderr, "warning: --truncate dropped the first")

	for _, bad := range [][]string{
		{"--prompt", "x", "--temp", "-1"}, {"--prompt", "x", "--top-p", "2"}, {"--prompt", "x", "--max-tokens", "0"},
		{"--prompt", "x", "--max-kv-size", "8", "--kv-block-size", "4"}, {"--prompt", "x", "--prompts", file},
		{"--prompts", file, "--draft", run}, {"--prompt", "x", "--kv-dtype", "int4"},
	} {
		code, _, stderr := runCLI(append([]string{"generate", "--checkpoint", run}, bad...)...)
		assert.Equal(t, 1, code, "%v", bad)
		assert.Len(t, strings.Split(strings.TrimSpace(stderr), "\n"), 1, "%v: %s", bad, stderr)
	}
}
