package main

import (
	"bytes"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/checkpoints"
	"github.com/mlxtrain/mlxtrain/metal/sim"
)

// requireClang skips a test that needs the simulator's compiler when there is
// none, unless MLXTRAIN_REQUIRE_CLANG=1 (CI sets it) makes that a failure.
func requireClang(t *testing.T) {
	t.Helper()
	if _, err := sim.FindCompiler(); err != nil {
		if os.Getenv("MLXTRAIN_REQUIRE_CLANG") == "1" {
			t.Fatalf("MLXTRAIN_REQUIRE_CLANG=1 but the simulator cannot build: %v", err)
		}
		t.Skipf("skipping the simulated-Metal run: %v (set MLXTRAIN_REQUIRE_CLANG=1 to make this a failure)", err)
	}
}

// TestCLIHelper runs the CLI with the arguments after "--" when started by
// runInProcess: the device settings are read once per process, so each device
// needs a process of its own.
func TestCLIHelper(t *testing.T) {
	if os.Getenv("MLXTRAIN_TEST_CLI_HELPER") != "1" {
		t.Skip("runs only as a subprocess of the device tests")
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	os.Exit(run(append([]string{"mlxtrain"}, args...), os.Stdout, os.Stderr))
}

// runInProcess runs the CLI in a new process of this test binary with extra
// environment variables.
func runInProcess(t *testing.T, env []string, args ...string) (stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestCLIHelper$", "--"}, args...)...)
	cmd.Env = append(append(os.Environ(), "MLXTRAIN_TEST_CLI_HELPER=1"), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	require.NoError(t, err, "mlxtrain %v: %s", args, errb.String())
	return out.String(), errb.String()
}

var stepLoss = regexp.MustCompile(`(?m)^step (\d+)/\d+: loss ([0-9.]+)`)

// TestSimulatedMetalTrainsLikeTheCPU trains the default recipe (made tiny: the
// simulator runs every lane of every threadgroup on the CPU), as it is and as a
// llama (RMSNorm, SwiGLU, RoPE), for 2 steps on the CPU and on the simulated GPU with every threshold at 0: the losses and the
// trained weights agree within float32 tolerance, and the profile shows every op
// of the run on the Metal path: no op of a training step (or of the evaluation)
// is left to the CPU.
func TestSimulatedMetalTrainsLikeTheCPU(t *testing.T) {
	requireClang(t)
	for _, c := range []struct {
		family string
		ops    []string // must have run on the simulated GPU
	}{
		{"gpt", []string{"matmul", "add", "gelu", "layer_norm", "embedding", "slice", "cross_entropy", "flash_attention", "flash_attention_backward", "optim.adamw"}},
		{"llama", []string{"matmul", "add", "rms_norm", "swiglu", "rope", "embedding", "cross_entropy", "flash_attention", "flash_attention_backward", "optim.adamw"}},
	} {
		t.Run(c.family, func(t *testing.T) { trainsLikeTheCPU(t, c.family, c.ops) })
	}
}

func trainsLikeTheCPU(t *testing.T, family string, wantOps []string) {
	dir := t.TempDir()
	args := []string{"fit", "--quiet", "--set", "model.family=" + family, "--set", "train.iters=2", "--set", "lr_schedule.warmup=0",
		"--set", "train.steps_per_eval=0", "--set", "train.save_every=0", "--set", "train.steps_per_report=1",
		"--set", "train.batch_size=4", "--set", "model.d_model=32", "--set", "model.layers=2",
		"--set", "data.task.examples=200", "--set", "data.task.held_out=4", "--set", "train.val_batches=1"}
	_, cpuOut := runInProcess(t, []string{"MLXTRAIN_DEVICE=cpu"}, append(args, "--out", filepath.Join(dir, "cpu"))...)
	_, simErr := runInProcess(t, []string{"MLXTRAIN_DEVICE=sim", "MLXTRAIN_METAL_MIN=0", "MLXTRAIN_PROFILE=1"},
		append(args, "--out", filepath.Join(dir, "sim"))...)

	assert.NotContains(t, simErr, "warning", "no kernel failed its self-test or its launch")
	// the fit log (stderr)
	cpuLoss, simLoss := stepLoss.FindAllStringSubmatch(cpuOut, -1), stepLoss.FindAllStringSubmatch(simErr, -1)
	require.Len(t, cpuLoss, 2, cpuOut)
	require.Len(t, simLoss, 2, simErr)
	for i := range cpuLoss {
		c, _ := strconv.ParseFloat(cpuLoss[i][2], 64)
		s, _ := strconv.ParseFloat(simLoss[i][2], 64)
		assert.InDelta(t, c, s, 2e-4, "loss of step %s (printed to 4 decimals)", cpuLoss[i][1])
	}

	// The weights after two AdamW steps: a step moves a weight by about lr at
	// most (3e-3 here), so float32 differences in the gradients show up as a
	// small fraction of that (4.5e-5 measured, 1.03e-4 since the CPU's GELU
	// and exp polynomials were shortened): a tenth of a step at most.
	cpuCk, err := checkpoints.LoadDir(filepath.Join(dir, "cpu", "checkpoints", "step-000002"))
	require.NoError(t, err)
	simCk, err := checkpoints.LoadDir(filepath.Join(dir, "sim", "checkpoints", "step-000002"))
	require.NoError(t, err)
	require.Equal(t, len(cpuCk.Model), len(simCk.Model))
	worst := 0.0
	for name, c := range cpuCk.Model {
		s := simCk.Model[name]
		require.NotNil(t, s, name)
		cv, sv := c.Float64Values(), s.Float64Values()
		require.Len(t, sv, len(cv), name)
		for i := range cv {
			worst = math.Max(worst, math.Abs(cv[i]-sv[i]))
		}
	}
	t.Logf("largest weight difference: %g", worst)
	assert.Less(t, worst, 3e-4, "largest weight difference between the CPU and the simulated GPU")

	onMetal, onCPU := profilePaths(simErr)
	assert.Empty(t, onCPU, "every op takes the simulated-Metal path")
	for _, op := range wantOps {
		assert.True(t, onMetal[op], "%s ran on the simulated GPU", op)
	}
	assert.Contains(t, simErr, "device launches:")
}

// TestDevicesSelfTest runs every kernel's self-test on the simulator through
// `mlxtrain devices --selftest`.
func TestDevicesSelfTest(t *testing.T) {
	requireClang(t)
	out, errOut := runInProcess(t, []string{"MLXTRAIN_DEVICE=sim"}, "devices", "--selftest")
	assert.NotContains(t, errOut, "warning")
	assert.Contains(t, out, "simulated true")
	for _, op := range []string{"binary", "unary", "activation", "reduce", "softmax", "cross_entropy", "embedding", "matmul",
		"rms_norm", "layer_norm", "swiglu", "rope", "flash_attention", "adamw", "copy", "reduce_strided", "where", "dropout",
		"quantized_matmul", "quantized_embedding"} {
		assert.Regexp(t, regexp.MustCompile(`(?m)^self-test `+op+`: passed$`), out, op)
	}
	assert.NotContains(t, out, "failed")
	// the ops left to the CPU, if any, are listed; none of those above is
	assert.NotRegexp(t, regexp.MustCompile(`(?m)^no Metal kernel.*\b(copy|reduce_strided|where|dropout|matmul)\b`), out)
}
