package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// evalLoss runs eval on a checkpoint and returns its validation loss.
func evalLoss(t *testing.T, ckpt string) float64 {
	t.Helper()
	code, stdout, stderr := runCLI("eval", "--checkpoint", ckpt)
	require.Equal(t, 0, code, stderr)
	m := regexp.MustCompile(`val loss: ([0-9.]+)`).FindStringSubmatch(stdout)
	require.NotNil(t, m, stdout)
	v, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	return v
}

func TestQuantizeGenerateEvalDequantize(t *testing.T) {
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	code, _, stderr := runCLI("fit", "--quiet", "--out", run,
		"--set", "train.iters=20", "--set", "lr_schedule.warmup=0", "--set", "model.d_model=32",
		"--set", "model.layers=1", "--set", "data.task.examples=500", "--set", "train.steps_per_eval=0")
	require.Equal(t, 0, code, stderr)

	q8 := filepath.Join(dir, "q8")
	code, stdout, stderr := runCLI("quantize", "--checkpoint", run, "--out", q8, "--bits", "8", "--group-size", "32", "--keep", "embed_tokens",
		"--layer", "down_proj=6:64")
	require.Equal(t, 0, code, stderr)
	assert.Regexp(t, `model\.layers\.0\.mlp\.down_proj\.weight\s+q6 g64`, stdout)
	assert.Contains(t, stdout, "model.layers.0.mlp.up_proj.weight")
	assert.Regexp(t, `model\.embed_tokens\.weight\s+float32`, stdout)
	assert.Regexp(t, `model\.layers\.0\.self_attn\.q_proj\.weight\s+q8 g32`, stdout)
	assert.Contains(t, stdout, "model: ")
	config, err := os.ReadFile(filepath.Join(q8, "config.json"))
	require.NoError(t, err)
	assert.Contains(t, string(config), `"model.embed_tokens": false`)
	assert.Contains(t, string(config), `"model.layers.0.mlp.down_proj": {`)

	code, _, stderr = runCLI("generate", "--checkpoint", q8, "--prompt", "12+34=", "--max-tokens", "4")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stderr, "generated:")
	base, q := evalLoss(t, run), evalLoss(t, q8)
	assert.InDelta(t, base, q, 0.01*base, "8-bit validation loss")

	back := filepath.Join(dir, "back")
	code, _, stderr = runCLI("quantize", "--checkpoint", q8, "--out", back, "--dequantize")
	require.Equal(t, 0, code, stderr)
	config, err = os.ReadFile(filepath.Join(back, "config.json"))
	require.NoError(t, err)
	assert.NotContains(t, string(config), "quantization")
	assert.InDelta(t, q, evalLoss(t, back), 1e-4)

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--checkpoint", run, "--out", filepath.Join(dir, "x"), "--bits", "7"}, "--bits 7"},
		{[]string{"--checkpoint", run, "--out", q8}, "already exists"},
		{[]string{"--checkpoint", run, "--out", filepath.Join(dir, "y"), "--dequantize"}, "not quantized"},
		{[]string{"--checkpoint", q8, "--out", filepath.Join(dir, "z")}, "already quantized"},
		{[]string{"--checkpoint", run, "--out", filepath.Join(dir, "w"), "--keep", "embed_token"}, "--keep embed_token matches no module"},
		{[]string{"--checkpoint", run, "--out", filepath.Join(dir, "w"), "--layer", "q_proj"}, "PATTERN=BITS"},
		{[]string{"--checkpoint", run, "--out", filepath.Join(dir, "w"), "--layer", "q_proj=7"}, "bits 7"},
		{[]string{"--checkpoint", run, "--out", filepath.Join(dir, "w"), "--layer", "qproj=8"}, "--layer qproj matches no module"},
	} {
		code, _, stderr := runCLI(append([]string{"quantize"}, c.args...)...)
		assert.Equal(t, 1, code, stderr)
		assert.Contains(t, stderr, c.want)
		assert.Len(t, strings.Split(strings.TrimSpace(stderr), "\n"), 1, stderr)
	}
}
