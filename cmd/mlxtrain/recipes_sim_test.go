package main

import (
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSimulatedMetalTrainsExampleRecipes trains the Mamba, hybrid and MoE
// example recipes (made tiny) for 2 steps on the CPU and on the simulated GPU
// with every threshold at 0: the losses agree within float32 tolerance and the
// ops with kernels of this package's issue ran on the Metal path, and no op
// at all (self-tests aside) ran on a CPU path.
func TestSimulatedMetalTrainsExampleRecipes(t *testing.T) {
	requireClang(t)
	for _, c := range []struct {
		recipe string
		ops    []string
	}{
		{"mamba.toml", []string{"causal_conv1d", "selective_scan", "selective_scan_backward"}},
		{"hybrid.toml", []string{"causal_conv1d", "selective_scan", "flash_attention"}},
		{"moe.toml", []string{"moe_router_gates", "moe_route_sort", "moe_dispatch", "moe_combine", "moe_grouped_linear",
			"moe_grouped_linear_gelu", "moe_load_balance", "moe_router_z", "moe_router_gates_backward", "moe_grouped_linear_backward"}},
	} {
		t.Run(c.recipe, func(t *testing.T) {
			dir := t.TempDir()
			args := []string{"fit", filepath.Join(examples, c.recipe), "--quiet", "--set", "train.iters=2", "--set", "lr_schedule.warmup=0",
				"--set", "train.steps_per_eval=0", "--set", "train.save_every=0", "--set", "train.steps_per_report=1",
				"--set", "train.batch_size=2", "--set", "model.d_model=32", "--set", "model.layers=2", "--set", "train.val_batches=1",
				"--set", "data.task.examples=200", "--set", "data.task.held_out=4"}
			_, cpuErr := runInProcess(t, []string{"MLXTRAIN_DEVICE=cpu"}, append(args, "--out", filepath.Join(dir, "cpu"))...)
			_, simErr := runInProcess(t, []string{"MLXTRAIN_DEVICE=sim", "MLXTRAIN_METAL_MIN=0", "MLXTRAIN_PROFILE=1"},
				append(args, "--out", filepath.Join(dir, "sim"))...)
			assert.NotContains(t, simErr, "warning")
			cpuLoss, simLoss := stepLoss.FindAllStringSubmatch(cpuErr, -1), stepLoss.FindAllStringSubmatch(simErr, -1)
			require.Len(t, cpuLoss, 2, cpuErr)
			require.Len(t, simLoss, 2, simErr)
			for i := range cpuLoss {
				cl, _ := strconv.ParseFloat(cpuLoss[i][2], 64)
				sl, _ := strconv.ParseFloat(simLoss[i][2], 64)
				assert.InDelta(t, cl, sl, 2e-4, "loss of step %s", cpuLoss[i][1])
			}
			onMetal, cpu := profilePaths(simErr)
			for _, op := range c.ops {
				assert.True(t, onMetal[op], "%s ran on the simulated GPU", op)
			}
			assert.Empty(t, cpu, "%s: ops on a CPU path", c.recipe)
		})
	}
}
