package generate

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/models"
)

// recompute is the reference: the whole sequence through the model at every step.
func recompute(m *models.Model, prompt []int32, maxNew int, eos int32) []int32 {
	seq := append([]int32(nil), prompt...)
	var out []int32
	for len(out) < maxNew {
		ids := autodiff.FromInt32(seq, 1, len(seq))
		next := int32(argmaxLast(m.Forward(nil, ids)))
		out = append(out, next)
		seq = append(seq, next)
		if next == eos {
			break
		}
	}
	return out
}

func TestGreedyWithCacheEqualsRecompute(t *testing.T) {
	for _, cfg := range []models.Config{
		models.GPT2Config(11, 16, 2, 2, 24),
		models.LlamaConfig(11, 16, 2, 4, 2, 24, 24),
	} {
		m, err := models.New(cfg, autodiff.NewRNG(7))
		require.NoError(t, err)
		for _, prompt := range [][]int32{{1}, {3, 1, 4, 1, 5}, {2, 7, 1, 8, 2, 8, 1}} {
			got, err := Greedy(m, prompt, 10, -1)
			require.NoError(t, err)
			assert.Equal(t, recompute(m, prompt, 10, -1), got, "%s %v", cfg.NormType, prompt)
		}
	}
}

func TestGreedyStopsAtEOSAndChecksTheContext(t *testing.T) {
	m, err := models.New(models.GPT2Config(5, 8, 1, 2, 8), autodiff.NewRNG(1))
	require.NoError(t, err)
	ref := recompute(m, []int32{1, 2}, 6, -1)
	eos := ref[2]
	got, err := Greedy(m, []int32{1, 2}, 6, eos)
	require.NoError(t, err)
	assert.Equal(t, ref[:3], got[:min(len(got), 3)])
	assert.Equal(t, eos, got[len(got)-1], "stops right after the first EOS")

	_, err = Greedy(m, make([]int32, 9), 1, -1)
	var ce *ContextError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, 8, ce.Context)
	out, err := Greedy(m, make([]int32, 6), 10, -1)
	require.NoError(t, err)
	assert.Len(t, out, 2, "generation stops at the context")
	_, err = Greedy(m, nil, 1, -1)
	assert.Error(t, err)
}
