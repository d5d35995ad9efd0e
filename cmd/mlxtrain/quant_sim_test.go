package main

import (
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSimulatedMetalGeneratesQuantizedLikeTheCPU generates from a 4-bit
// checkpoint (embeddings quantized too) on the CPU and on the simulated GPU
// with every threshold at 0: the same tokens, and the quantized ops on the
// Metal path.
func TestSimulatedMetalGeneratesQuantizedLikeTheCPU(t *testing.T) {
	requireClang(t)
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	code, _, stderr := runCLI("fit", "--quiet", "--out", run,
		"--set", "train.iters=10", "--set", "lr_schedule.warmup=0", "--set", "model.d_model=32",
		"--set", "model.layers=1", "--set", "data.task.examples=200", "--set", "train.steps_per_eval=0")
	require.Equal(t, 0, code, stderr)
	q4 := filepath.Join(dir, "q4")
	code, _, stderr = runCLI("quantize", "--checkpoint", run, "--out", q4, "--bits", "4", "--group-size", "32")
	require.Equal(t, 0, code, stderr)

	args := []string{"generate", "--checkpoint", q4, "--prompt", "12+34=", "--max-tokens", "6"}
	cpuOut, cpuErr := runInProcess(t, []string{"MLXTRAIN_DEVICE=cpu"}, args...)
	simOut, simErr := runInProcess(t, []string{"MLXTRAIN_DEVICE=sim", "MLXTRAIN_METAL_MIN=0", "MLXTRAIN_PROFILE=1"}, args...)
	assert.NotContains(t, simErr, "warning")
	require.NotEmpty(t, cpuOut, cpuErr)
	assert.Equal(t, cpuOut, simOut, "the generated text")
	t.Logf("generated: %q", cpuOut)
	for _, op := range []string{"quantized_matmul", "quantized_embedding"} {
		assert.Regexp(t, regexp.MustCompile(`(?m)^`+op+`\s+metal\s+\d+`), simErr, op)
		assert.NotRegexp(t, regexp.MustCompile(`(?m)^`+op+`\s+(go|asm|blas|reference)\s+\d+`), simErr, op)
	}
}
