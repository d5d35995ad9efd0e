package main

import (
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// profilePaths reads the op table MLXTRAIN_PROFILE=1 prints: the ops that ran
// on the Metal path, and the others as "op (path)", sorted.
func profilePaths(stderr string) (onMetal map[string]bool, onCPU []string) {
	onMetal = map[string]bool{}
	for _, line := range strings.Split(stderr, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] == "op" || f[0] == "device" {
			continue
		}
		if _, err := strconv.Atoi(f[2]); err != nil {
			continue
		}
		if f[1] == "metal" {
			onMetal[f[0]] = true
		} else {
			onCPU = append(onCPU, f[0]+" ("+f[1]+")")
		}
	}
	sort.Strings(onCPU)
	return onMetal, onCPU
}

// TestSimulatedMetalGeneratesLikeTheCPU generates from tiny checkpoints on the
// CPU and on the simulated GPU with every threshold at 0: dense float models
// (GPT, and llama with RoPE), the first quantized to 4 bits (embeddings too), a
// mixture of experts quantized to 4 bits (its experts through
// quantized_grouped_linear). The same tokens, and every op of the decode path
// (attention over the KV cache and its appends included) on the Metal path.
// (Mamba: TestSimulatedMetalGeneratesMambaLikeTheCPU, on main.)
func TestSimulatedMetalGeneratesLikeTheCPU(t *testing.T) {
	requireClang(t)
	fit := []string{"--quiet", "--set", "train.iters=10", "--set", "lr_schedule.warmup=0", "--set", "model.d_model=32",
		"--set", "model.layers=1", "--set", "data.task.examples=200", "--set", "train.steps_per_eval=0"}
	for _, c := range []struct {
		name string
		fit  []string // the recipe and its settings
		bits int      // 0: not quantized
		ops  []string // must have run on the simulated GPU
	}{
		{"dense", nil, 0, []string{"span_attention", "kv_cache_append", "matmul", "embedding"}},
		{"llama", []string{"--set", "model.family=llama"}, 0, []string{"span_attention", "kv_cache_append", "rope", "rms_norm", "swiglu"}},
		{"dense_q4", nil, 4, []string{"span_attention", "kv_cache_append", "quantized_matmul", "quantized_embedding"}},
		{"moe_q4", []string{filepath.Join(examples, "moe.toml"), "--set", "train.batch_size=8", "--set", "train.val_batches=1", "--set", "data.task.held_out=4"},
			4, []string{"span_attention", "kv_cache_append", "quantized_grouped_linear", "moe_route_sort", "moe_dispatch", "moe_combine"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			ck := filepath.Join(dir, "run")
			code, _, stderr := runCLI(append(append(append([]string{"fit"}, c.fit...), fit...), "--out", ck)...)
			require.Equal(t, 0, code, stderr)
			if c.bits > 0 {
				q := filepath.Join(dir, "q")
				code, _, stderr = runCLI("quantize", "--checkpoint", ck, "--out", q, "--bits", strconv.Itoa(c.bits), "--group-size", "32")
				require.Equal(t, 0, code, stderr)
				ck = q
			}
			args := []string{"generate", "--checkpoint", ck, "--prompt", "12+34=", "--max-tokens", "6"}
			cpuOut, cpuErr := runInProcess(t, []string{"MLXTRAIN_DEVICE=cpu"}, args...)
			simOut, simErr := runInProcess(t, []string{"MLXTRAIN_DEVICE=sim", "MLXTRAIN_METAL_MIN=0", "MLXTRAIN_PROFILE=1"}, args...)
			assert.NotContains(t, simErr, "warning")
			require.NotEmpty(t, cpuOut, cpuErr)
			assert.Equal(t, cpuOut, simOut, "the generated text")
			onMetal, onCPU := profilePaths(simErr)
			for _, op := range c.ops {
				assert.True(t, onMetal[op], "%s ran on the simulated GPU:\n%s", op, simErr)
			}
			assert.Empty(t, onCPU, "ops on a CPU path:\n%s", simErr)
		})
	}
}
