package recipes

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/checkpoints"
	"github.com/mlxtrain/mlxtrain/models"
)

// tinyRecipe is a small addition run that takes well under a second per 10 steps.
func tinyRecipe(t *testing.T, iters int, sets ...string) *Recipe {
	t.Helper()
	r := Default()
	base := []string{
		"model.d_model=32", "model.layers=2", "model.heads=2",
		"data.task.max_digits=2", "data.task.examples=2000", "data.task.held_out=50",
		"train.batch_size=16", "train.steps_per_report=5", "train.steps_per_eval=0", "train.save_every=0",
		"lr_schedule.warmup=0", "train.iters=" + itoa(iters),
	}
	require.NoError(t, r.Apply(append(base, sets...)...))
	return r
}

func itoa(n int) string { return strconv.Itoa(n) }

func readMetrics(t *testing.T, dir string) []metricLine {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "metrics.jsonl"))
	require.NoError(t, err)
	var out []metricLine
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var m metricLine
		require.NoError(t, json.Unmarshal(line, &m))
		out = append(out, m)
	}
	return out
}

func TestFitTrainsAndTheLossFalls(t *testing.T) {
	dir := t.TempDir()
	r := tinyRecipe(t, 30, "optimizer.learning_rate=3e-3")
	res, err := Fit(r, FitOptions{Out: dir})
	require.NoError(t, err)
	assert.Equal(t, 30, res.Step)
	ms := readMetrics(t, dir)
	var losses []float64
	for _, m := range ms {
		if m.TrainLoss != nil {
			losses = append(losses, *m.TrainLoss)
		}
	}
	require.GreaterOrEqual(t, len(losses), 6)
	assert.Less(t, losses[len(losses)-1], 0.7*losses[0], "loss should fall: %v", losses)
	assert.FileExists(t, filepath.Join(dir, "loss.png"))
	require.NotEmpty(t, res.Checkpoint)
	ck, err := checkpoints.LoadDir(res.Checkpoint)
	require.NoError(t, err)
	defer ck.Release()
	assert.Equal(t, int64(30), ck.State.Step)
	assert.Regexp(t, `(?m)^iters\s+= 30$`, string(ck.Recipe), "the recipe as run")
	assert.NotEmpty(t, ck.Tokenizer)
	assert.Contains(t, ck.Model, "model.embed_tokens.weight")
}

func TestResumeIsBitExact(t *testing.T) {
	// 2N steps in one go against N steps, a resume, and N more: the weights and
	// optimizer state at step 2N must be byte-identical.
	const n = 6
	a := t.TempDir()
	_, err := Fit(tinyRecipe(t, 2*n, "train.save_every="+itoa(n)), FitOptions{Out: a})
	require.NoError(t, err)
	mid := filepath.Join(a, "checkpoints", checkpoints.DirName(n))
	require.DirExists(t, mid)
	b := t.TempDir()
	res, err := Fit(tinyRecipe(t, 2*n, "train.save_every="+itoa(n)), FitOptions{Out: b, Resume: mid})
	require.NoError(t, err)
	assert.Equal(t, 2*n, res.Step)
	for _, f := range []string{checkpoints.ModelFile, checkpoints.OptimizerFile} {
		want, err := os.ReadFile(filepath.Join(a, "checkpoints", checkpoints.DirName(2*n), f))
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join(b, "checkpoints", checkpoints.DirName(2*n), f))
		require.NoError(t, err)
		assert.True(t, bytes.Equal(want, got), "%s differs after resume", f)
	}
}

func TestFitBadInput(t *testing.T) {
	r := Default()
	require.NoError(t, r.Apply("data.task.kind=", "data.train=does-not-exist/*.jsonl", "train.iters=10", "lr_schedule.warmup=0"))
	_, err := Fit(r, FitOptions{Out: t.TempDir()})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "does-not-exist")

	r = tinyRecipe(t, 5)
	bad := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(bad, "step-000001"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(bad, "step-000001", checkpoints.StateFile), []byte("{not json"), 0o644))
	_, err = Fit(r, FitOptions{Out: t.TempDir(), Resume: filepath.Join(bad, "step-000001")})
	require.Error(t, err)
	assert.Contains(t, err.Error(), checkpoints.StateFile)
}

func TestFitStopsOnNaNAndKeepsTheLastCheckpoint(t *testing.T) {
	dir := t.TempDir()
	r := tinyRecipe(t, 40, "optimizer.learning_rate=1e9", "optimizer.name=sgd", "train.save_every=1")
	_, err := Fit(r, FitOptions{Out: dir})
	var le *LossError
	require.True(t, errors.As(err, &le), "want a LossError, got %v", err)
	if le.Checkpoint != "" {
		_, lerr := checkpoints.LoadDir(le.Checkpoint)
		assert.NoError(t, lerr, "the last good checkpoint must load")
	}
}

func TestFitStopSavesACheckpoint(t *testing.T) {
	stop := make(chan struct{})
	close(stop)
	dir := t.TempDir()
	res, err := Fit(tinyRecipe(t, 100), FitOptions{Out: dir, Stop: stop})
	require.NoError(t, err)
	assert.True(t, res.Stopped)
	assert.Equal(t, 0, res.Step)
	assert.DirExists(t, res.Checkpoint)
}

// The memory estimate counts gradients and optimizer moments only for the
// trained parameters: training a part of the weights (as LoRA does) lowers it by
// three float32 copies of the rest.
func TestEstimateMemoryCountsTrainedParameters(t *testing.T) {
	r := tinyRecipe(t, 1)
	cfg, err := r.ModelConfig(259)
	require.NoError(t, err)
	m, err := models.New(cfg, autodiff.NewRNG(1))
	require.NoError(t, err)
	all := m.Params()
	full := (&run{r: r, model: m, params: all}).estimateMemory()
	part := (&run{r: r, model: m, params: all[:1]}).estimateMemory()
	rest := int64(m.NumParams() - all[0].Value.Len())
	assert.Equal(t, 4*3*rest, full-part)
}
