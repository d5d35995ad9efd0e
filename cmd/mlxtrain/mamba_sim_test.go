package main

import (
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSimulatedMetalGeneratesMambaLikeTheCPU generates from a tiny trained
// Mamba checkpoint on the CPU and on the simulated GPU with every threshold at
// 0: the same tokens, the prompt's convolution continuing from the state and
// the decoding steps on the Metal path, and no op on another.
func TestSimulatedMetalGeneratesMambaLikeTheCPU(t *testing.T) {
	requireClang(t)
	run := filepath.Join(t.TempDir(), "run")
	code, _, stderr := runCLI("fit", filepath.Join(examples, "mamba.toml"), "--quiet", "--out", run,
		"--set", "train.iters=10", "--set", "lr_schedule.warmup=0", "--set", "train.batch_size=4", "--set", "model.d_model=32",
		"--set", "model.layers=2", "--set", "data.task.examples=200", "--set", "train.steps_per_eval=0", "--set", "train.val_batches=1")
	require.Equal(t, 0, code, stderr)

	args := []string{"generate", "--checkpoint", run, "--prompt", "a1b2c3a", "--max-tokens", "6"}
	cpuOut, cpuErr := runInProcess(t, []string{"MLXTRAIN_DEVICE=cpu"}, args...)
	simOut, simErr := runInProcess(t, []string{"MLXTRAIN_DEVICE=sim", "MLXTRAIN_METAL_MIN=0", "MLXTRAIN_PROFILE=1"}, args...)
	assert.NotContains(t, simErr, "warning")
	require.NotEmpty(t, cpuOut, cpuErr)
	assert.Equal(t, cpuOut, simOut, "the generated text")
	for _, op := range []string{"causal_conv1d_continue", "selective_scan", "causal_conv1d_step", "selective_scan_step"} {
		assert.Regexp(t, regexp.MustCompile(`(?m)^`+op+`\s+metal\s+\d+`), simErr, op)
	}
	assert.NotRegexp(t, regexp.MustCompile(`(?m)^\S+\s+(go|asm|blas|reference)\s+\d+`), simErr, "every op on the Metal path")
}
