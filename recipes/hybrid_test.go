package recipes

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/models"
)

// TestModelConfigSSMAndMoE translates the ssm and moe kinds and their tables.
func TestModelConfigSSMAndMoE(t *testing.T) {
	r, err := Load(filepath.Join("examples", "hybrid.toml"))
	require.NoError(t, err)
	require.NoError(t, r.Apply("model.ssm.dt_rank=3", "model.moe.router=sigmoid", "model.moe.shared_experts=1",
		"model.moe.capacity_factor=1.5", "model.moe.z_loss_coef=0.002"))
	cfg, err := r.ModelConfig(50)
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	assert.Equal(t, []string{"mamba", "full_attention", "mamba", "full_attention"}, cfg.LayerTypes)
	assert.Equal(t, []string{"moe", "moe", "moe", "moe"}, cfg.FeedForwardTypes)
	assert.Equal(t, [4]int{16, 4, 2, 3}, [4]int{cfg.StateSize, cfg.ConvKernel, cfg.Expand, cfg.TimeStepRank})
	assert.Equal(t, [4]int{4, 2, 1, cfg.IntermediateSize}, [4]int{cfg.NumLocalExperts, cfg.NumExpertsPerTok, cfg.NSharedExperts, cfg.MoEIntermediateSize})
	assert.Equal(t, models.ScoringSigmoid, cfg.ScoringFunc)
	assert.Equal(t, [3]float64{1.5, 0.01, 0.002}, [3]float64{cfg.CapacityFactor, cfg.RouterAuxLossCoef, cfg.RouterZLossCoef})

	// dt_rank 0 is ceil(d_model/16); a plain transformer gets none of the keys.
	require.NoError(t, r.Apply("model.ssm.dt_rank=0", "model.layer_pattern=[\"ssm\",\"attention\"]"))
	cfg, err = r.ModelConfig(50)
	require.NoError(t, err)
	assert.Equal(t, 4, cfg.TimeStepRank)
	assert.Equal(t, []string{"mlp", "mlp", "mlp", "mlp"}, cfg.FeedForwardTypes)
	assert.Zero(t, cfg.NumLocalExperts)
	require.NoError(t, r.Apply("model.layer_pattern=[\"attention\"]"))
	cfg, err = r.ModelConfig(50)
	require.NoError(t, err)
	assert.Zero(t, cfg.StateSize)
}

// TestExampleRecipesTrain trains each SSM/MoE example recipe, shrunk, for 10
// steps and checks that the loss falls and the model has the kinds asked for.
func TestExampleRecipesTrain(t *testing.T) {
	small := []string{
		"model.d_model=32", "model.layers=2", "train.batch_size=8",
		"data.task.examples=400", "data.task.held_out=20", "train.iters=10", "train.steps_per_report=2",
		"train.steps_per_eval=10", "train.save_every=0", "lr_schedule.warmup=0", "optimizer.learning_rate=1e-2",
		"lr_schedule.name=constant", // ten steps at the full rate
	}
	for _, c := range []struct {
		file         string
		sets         []string
		mixers, ffns []string
	}{
		{"moe.toml", nil, []string{"full_attention", "full_attention"}, []string{"moe", "moe"}},
		{"mamba.toml", []string{"model.ssm.d_state=8"}, []string{"mamba", "mamba"}, []string{"mlp", "mlp"}},
		{"hybrid.toml", []string{"model.ssm.d_state=8"}, []string{"mamba", "full_attention"}, []string{"moe", "moe"}},
	} {
		t.Run(c.file, func(t *testing.T) {
			r, err := Load(filepath.Join("examples", c.file))
			require.NoError(t, err)
			require.NoError(t, r.Apply(append(small, c.sets...)...))
			cfg, err := r.ModelConfig(300)
			require.NoError(t, err)
			assert.Equal(t, c.mixers, cfg.LayerTypes)
			assert.Equal(t, c.ffns, cfg.FeedForwardTypes)
			dir := t.TempDir()
			res, err := Fit(r, FitOptions{Out: dir})
			require.NoError(t, err)
			assert.Equal(t, 10, res.Step)
			var losses []float64
			for _, m := range readMetrics(t, dir) {
				if m.TrainLoss != nil {
					losses = append(losses, *m.TrainLoss)
				}
			}
			require.Len(t, losses, 5)
			assert.Less(t, losses[4], 0.8*losses[0], "loss should fall: %v", losses)
			t.Logf("losses %.3f, accuracy %.3f", losses, res.Accuracy)
			// The evaluation ran greedy decoding through the cache (Mamba
			// states, KV caches) on the held-out problems.
			assert.False(t, math.IsNaN(res.Accuracy), "accuracy measured")
		})
	}
}
