package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(append([]string{"mlxtrain"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestBadInputGetsOneClearLine(t *testing.T) {
	dir := t.TempDir()
	recipe := filepath.Join(dir, "r.toml")
	require.NoError(t, os.WriteFile(recipe, []byte("[train]\niter = 10\n"), 0o644))
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"fit", "--quiet", recipe}, []string{"r.toml:2", "train.iter", "train.iters"}},
		{[]string{"fit", "--quiet", filepath.Join(dir, "missing.toml")}, []string{"missing.toml"}},
		{[]string{"fit", "--quiet", "--set", "train.batch_size=0"}, []string{"train.batch_size"}},
		{[]string{"fit", "--quiet", "--set", "train.iters=3", "--set", "lr_schedule.warmup=0", "--resume", dir}, []string{"--resume", dir}},
		{[]string{"generate", "--checkpoint", dir, "--prompt", "1+1="}, []string{"--checkpoint", dir}},
	}
	for _, c := range cases {
		code, _, stderr := runCLI(c.args...)
		assert.Equal(t, 1, code, "%v: %s", c.args, stderr)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		assert.Len(t, lines, 1, "one line for %v: %q", c.args, stderr)
		for _, w := range c.want {
			assert.Contains(t, stderr, w, "%v", c.args)
		}
		assert.NotContains(t, stderr, "panic")
	}
}

func TestFitThenGenerate(t *testing.T) {
	out := t.TempDir()
	code, stdout, stderr := runCLI("fit", "--quiet", "--out", out,
		"--set", "train.iters=20", "--set", "lr_schedule.warmup=0", "--set", "model.d_model=32",
		"--set", "model.layers=1", "--set", "data.task.examples=500", "--set", "train.steps_per_eval=0")
	require.Equal(t, 0, code, stderr)
	last := strings.TrimSpace(stdout)
	require.True(t, strings.HasPrefix(last, "final checkpoint: "), last)
	ckpt := strings.TrimPrefix(last, "final checkpoint: ")
	assert.DirExists(t, ckpt)
	// an untrained model's answer is not checked, only that generation runs and
	// prints digits-or-text plus a summary line
	code, stdout, stderr = runCLI("generate", "--checkpoint", out, "--prompt", "12+34=", "--max-tokens", "4")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stderr, "generated:")
	assert.LessOrEqual(t, len(strings.TrimSpace(stdout)), 4)
	code, stdout, stderr = runCLI("eval", "--checkpoint", out)
	require.Equal(t, 0, code, stderr)
	assert.Regexp(t, `val loss: \d+\.\d+`, stdout)
	assert.Regexp(t, `accuracy: \d+\.\d% exact match on \d+ held-out problems`, stdout)
	// a prompt longer than the learned position table is a clear error
	long := strings.Repeat("1", 100)
	code, _, stderr = runCLI("generate", "--checkpoint", out, "--prompt", long)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "exceeds the model's context")
}

func TestVersionAndDevices(t *testing.T) {
	code, out, _ := runCLI("version")
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "mlxtrain")
	code, out, _ = runCLI("devices")
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "matmul")
}

func TestBenchReportsThroughput(t *testing.T) {
	code, stdout, stderr := runCLI("bench", "--steps", "2", "--set", "model.d_model=32", "--set", "model.layers=1",
		"--set", "data.task.examples=500")
	require.Equal(t, 0, code, stderr)
	assert.Regexp(t, `[\d.]+ steps/s, \d+ tokens/s`, stdout)
	code, _, stderr = runCLI("bench", "--steps", "0")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "--steps")
}
