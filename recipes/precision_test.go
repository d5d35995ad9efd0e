package recipes

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/checkpoints"
	"github.com/mlxtrain/mlxtrain/data"
	"github.com/mlxtrain/mlxtrain/metal"
)

func TestLossScalerOverflowSkipsAndHalves(t *testing.T) {
	s := NewLossScaler()
	require.Equal(t, float64(DefaultLossScale), s.Scale)
	s.GoodSteps = 5
	g := autodiff.FromFloat32([]float32{1, float32(math.Inf(1)), 2}, 3)
	assert.False(t, s.Unscale([]*autodiff.Tensor{nil, g}), "an Inf is an overflow")
	assert.False(t, s.Update(false), "the step is skipped")
	assert.Equal(t, float64(DefaultLossScale/2), s.Scale)
	assert.Equal(t, 0, s.GoodSteps)
	g = autodiff.FromFloat64([]float64{math.NaN()}, 1)
	assert.False(t, s.Unscale([]*autodiff.Tensor{g}), "so is a NaN")
	for range 100 {
		s.Update(false)
	}
	assert.Equal(t, MinLossScale, s.Scale, "the scale has a floor")
}

func TestLossScalerGrowsAfterAnIntervalOfGoodSteps(t *testing.T) {
	s := &LossScaler{Scale: 8, GrowthInterval: 3}
	for i := range 2 {
		assert.True(t, s.Update(true))
		assert.Equal(t, 8.0, s.Scale, "step %d", i)
	}
	assert.True(t, s.Update(true))
	assert.Equal(t, 16.0, s.Scale)
	assert.Equal(t, 0, s.GoodSteps)
	s.Update(true)
	s.Update(false) // an overflow resets the count
	assert.Equal(t, 8.0, s.Scale)
	s.Update(true)
	s.Update(true)
	assert.Equal(t, 8.0, s.Scale)
	s = &LossScaler{Scale: MaxLossScale, GrowthInterval: 1}
	s.Update(true)
	assert.Equal(t, float64(MaxLossScale), s.Scale, "the scale has a ceiling")
}

func TestLossScalerUnscaleIsExact(t *testing.T) {
	s := &LossScaler{Scale: 1024}
	vals := []float32{3, -0.5, 1e-30, 6e4}
	g := autodiff.FromFloat32(append([]float32(nil), vals...), 4)
	assert.True(t, s.Unscale([]*autodiff.Tensor{g}))
	for i, v := range vals {
		assert.Equal(t, v/1024, g.Float32s()[i])
	}
	st := s.State()
	var back LossScaler
	back.SetState(st)
	assert.Equal(t, s.Scale, back.Scale)
}

// TestFitHalfPrecisionTracksF32: 20 steps of the tiny addition run in bf16, f16
// and auto stay within 0.5% of the float32 run's loss at every report (mean of 5
// steps), and grad_checkpoint changes nothing but memory.
func TestFitHalfPrecisionTracksF32(t *testing.T) {
	run := func(sets ...string) []float64 {
		dir := t.TempDir()
		_, err := Fit(tinyRecipe(t, 20, append([]string{"optimizer.learning_rate=3e-3"}, sets...)...), FitOptions{Out: dir})
		require.NoError(t, err, sets)
		return trainLosses(t, dir)
	}
	ref := run()
	require.Len(t, ref, 4)
	assert.Less(t, ref[3], ref[0], "the loss falls")
	for _, p := range []string{"bf16", "f16", "auto"} {
		got := run("train.precision=" + p)
		t.Logf("%s: %.5f (f32 %.5f)", p, got, ref)
		require.Len(t, got, len(ref))
		for i := range ref {
			assert.InEpsilon(t, ref[i], got[i], 0.005, "%s, report %d: %v against %v", p, i, got, ref)
		}
	}
	assert.InDeltaSlice(t, ref, run("train.grad_checkpoint=true"), 1e-4)
	assert.InDeltaSlice(t, run("train.precision=bf16"), run("train.precision=bf16", "train.grad_checkpoint=true"), 1e-4)
}

// TestResumeIsBitExactWithPrecisionAndDropout: N steps + resume + N steps is
// 2N steps byte for byte, in f16 with its loss scaler (saved in
// trainer_state.json) and with dropout under gradient checkpointing.
func TestResumeIsBitExactWithPrecisionAndDropout(t *testing.T) {
	const n = 4
	for _, sets := range [][]string{
		{"train.precision=f16"},
		{"model.dropout=0.1", "train.grad_checkpoint=true", "train.precision=bf16"},
	} {
		t.Run(strings.Join(sets, ","), func(t *testing.T) {
			sets := append([]string{"train.save_every=" + itoa(n)}, sets...)
			a := t.TempDir()
			_, err := Fit(tinyRecipe(t, 2*n, sets...), FitOptions{Out: a})
			require.NoError(t, err)
			mid := filepath.Join(a, "checkpoints", checkpoints.DirName(n))
			b := t.TempDir()
			_, err = Fit(tinyRecipe(t, 2*n, sets...), FitOptions{Out: b, Resume: mid})
			require.NoError(t, err)
			for _, f := range []string{checkpoints.ModelFile, checkpoints.OptimizerFile} {
				want, err := os.ReadFile(filepath.Join(a, "checkpoints", checkpoints.DirName(2*n), f))
				require.NoError(t, err)
				got, err := os.ReadFile(filepath.Join(b, "checkpoints", checkpoints.DirName(2*n), f))
				require.NoError(t, err)
				assert.True(t, bytes.Equal(want, got), "%s differs after resume", f)
			}
			st, err := checkpoints.LoadState(filepath.Join(mid, checkpoints.StateFile))
			require.NoError(t, err)
			if sets[1] == "train.precision=f16" {
				require.NotNil(t, st.LossScale)
				assert.Equal(t, float64(DefaultLossScale), st.LossScale.Scale)
				assert.Equal(t, int64(n), st.LossScale.GoodSteps)
			} else {
				assert.Nil(t, st.LossScale)
				assert.NotZero(t, st.RNG.Offset, "dropout drew masks")
			}
		})
	}
}

func TestFitEpochs(t *testing.T) {
	r := tinyRecipe(t, 1, "train.iters=0", "train.epochs=2", "data.task.examples=100", "train.max_seq_length=64")
	res, err := Fit(r, FitOptions{NoSave: true})
	require.NoError(t, err)
	d, err := r.loadData()
	require.NoError(t, err)
	b, err := data.NewBatcher(d.train, r.BatchConfig(d.tok))
	require.NoError(t, err)
	rows := b.RowsPerEpoch()
	require.Greater(t, rows, 16)
	assert.Equal(t, (2*rows+15)/16, res.Step, "⌈epochs × rows / batch⌉ steps")
}

func TestFitEvalProblemsAndSample(t *testing.T) {
	var log bytes.Buffer
	r := tinyRecipe(t, 2, "eval.problems=7", "eval.sample_tokens=5", "eval.sample_prompt=12+", "train.steps_per_eval=2")
	res, err := Fit(r, FitOptions{NoSave: true, Log: &log})
	require.NoError(t, err)
	assert.False(t, math.IsNaN(res.Accuracy))
	assert.Contains(t, log.String(), "(7 held-out problems)")
	// The sample stops early at EOS, which an untrained model may well choose.
	assert.Regexp(t, `sample at step 2: "12\+.*"\n`, log.String())
}

// TestFitReportsMoERouting: a tiny mixture-of-experts run writes each MoE
// layer's expert load fractions and dropped pairs to metrics.jsonl and briefly
// to the report line.
func TestFitReportsMoERouting(t *testing.T) {
	dir := t.TempDir()
	var log bytes.Buffer
	r := tinyRecipe(t, 5, `model.layer_pattern=["attention:moe", "attention:dense"]`, "model.moe.experts=4", "model.moe.top_k=2",
		"model.moe.capacity_factor=1.0")
	_, err := Fit(r, FitOptions{Out: dir, Log: &log})
	require.NoError(t, err)
	var seen bool
	for _, m := range readMetrics(t, dir) {
		if m.TrainLoss == nil {
			continue
		}
		seen = true
		require.Len(t, m.MoE, 1, "one MoE layer")
		l := m.MoE[0]
		assert.Equal(t, 0, l.Layer)
		require.Len(t, l.Load, 4)
		sum := 0.0
		for _, f := range l.Load {
			assert.GreaterOrEqual(t, f, 0.0)
			sum += f
		}
		assert.InDelta(t, 1, sum+float64(l.Dropped)/float64(16*r.Train.MaxSeqLength*2), 1e-9, "processed + dropped = all pairs")
		assert.Greater(t, l.Balance, 0.0)
	}
	assert.True(t, seen)
	assert.Regexp(t, `moe L0 max \d+%/\d+ dropped`, log.String())
}

// TestFitF16OverflowSkipsStepsAndResumesExactly starts the loss scale at the
// ceiling, where the float16 gradients overflow: the first steps are skipped
// with the scale halving each time, the scale in the middle checkpoint is no
// longer the initial one, and resuming from it is still bit-exact.
func TestFitF16OverflowSkipsStepsAndResumesExactly(t *testing.T) {
	defer func(v float64) { initialLossScale = v }(initialLossScale)
	initialLossScale = MaxLossScale
	const n = 4
	sets := []string{"train.precision=f16", "train.save_every=" + itoa(n), "train.steps_per_report=1"}
	a := t.TempDir()
	var log bytes.Buffer
	_, err := Fit(tinyRecipe(t, 2*n, sets...), FitOptions{Out: a, Log: &log})
	require.NoError(t, err)
	var scales []float64
	skipped := 0
	for _, m := range readMetrics(t, a) {
		if m.TrainLoss != nil {
			scales = append(scales, m.LossScale)
			skipped = m.Skipped
		}
	}
	t.Logf("loss scale per step: %v; %d skipped", scales, skipped)
	require.Len(t, scales, 2*n)
	assert.Less(t, scales[0], float64(MaxLossScale), "the first step overflowed and halved the scale")
	assert.Greater(t, skipped, 0)
	assert.Contains(t, log.String(), "skipped")
	mid := filepath.Join(a, "checkpoints", checkpoints.DirName(n))
	st, err := checkpoints.LoadState(filepath.Join(mid, checkpoints.StateFile))
	require.NoError(t, err)
	require.NotNil(t, st.LossScale)
	assert.Equal(t, scales[n-1], st.LossScale.Scale)
	b := t.TempDir()
	_, err = Fit(tinyRecipe(t, 2*n, sets...), FitOptions{Out: b, Resume: mid})
	require.NoError(t, err)
	for _, f := range []string{checkpoints.ModelFile, checkpoints.OptimizerFile, checkpoints.StateFile} {
		want, err := os.ReadFile(filepath.Join(a, "checkpoints", checkpoints.DirName(2*n), f))
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join(b, "checkpoints", checkpoints.DirName(2*n), f))
		require.NoError(t, err)
		if f == checkpoints.StateFile {
			ws, gs := string(want), string(got)
			assert.Equal(t, stateScale(t, ws), stateScale(t, gs), "the scaler continues where it was")
			continue
		}
		assert.True(t, bytes.Equal(want, got), "%s differs after resume", f)
	}
}

// stateScale extracts the loss_scale object of a trainer_state.json text.
func stateScale(t *testing.T, text string) string {
	i := strings.Index(text, `"loss_scale"`)
	require.GreaterOrEqual(t, i, 0)
	j := strings.Index(text[i:], "}")
	return text[i : i+j]
}

func TestGradSumAddsInOrder(t *testing.T) {
	vals := [][]float32{{0.1, 1e8, -3}, {0.2, 1, 3}, {0.3, -1e8, 1e-8}}
	want := make([]float32, 3)
	for _, v := range vals {
		for i := range want {
			want[i] += v[i] // one tape accumulating: ((g1 + g2) + g3)
		}
	}
	var sum gradSum
	defer sum.release()
	for _, v := range vals[:2] {
		sum.add([]*autodiff.Tensor{autodiff.FromFloat32(append([]float32(nil), v...), 3), nil})
	}
	only := autodiff.FromFloat32([]float32{7}, 1)
	sum.add([]*autodiff.Tensor{nil, only})
	got := sum.addTo([]*autodiff.Tensor{autodiff.FromFloat32(append([]float32(nil), vals[2]...), 3), nil})
	assert.Equal(t, want, got[0].Float32s())
	assert.Equal(t, []float32{7}, got[1].Float32s(), "a gradient only an earlier micro-batch had")
}

// TestGradAccumulationFreesEachMicroBatch: two micro-batches of 8 rows keep
// clearly less in the tensor pool than one of 16 (the activations of one
// micro-batch are gone before the next runs).
func TestGradAccumulationFreesEachMicroBatch(t *testing.T) {
	peak := func(sets ...string) int64 {
		r := tinyRecipe(t, 2, append([]string{"model.d_model=64", "train.max_seq_length=64"}, sets...)...)
		runtime.GC() // buffers dropped by earlier tests leave the count now, not during the run
		metal.HostPool.ResetPeak()
		base := metal.HostPool.Live()
		_, err := Fit(r, FitOptions{NoSave: true})
		require.NoError(t, err)
		return metal.HostPool.Peak() - base
	}
	one := peak("train.batch_size=16")
	two := peak("train.batch_size=8", "train.grad_accumulation_steps=2")
	t.Logf("pool peak: batch 16 %s, 2 × 8 %s", metal.HumanBytes(one), metal.HumanBytes(two))
	assert.Less(t, float64(two), 0.8*float64(one))
}
