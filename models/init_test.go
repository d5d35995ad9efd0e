package models

import (
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/autodiff"
)

// moments returns the mean, standard deviation and largest magnitude of t.
func moments(t *autodiff.Tensor) (mean, std, maxAbs float64) {
	v := t.Float32s()
	for _, x := range v {
		mean += float64(x)
		maxAbs = max(maxAbs, math.Abs(float64(x)))
	}
	mean /= float64(len(v))
	for _, x := range v {
		std += (float64(x) - mean) * (float64(x) - mean)
	}
	return mean, math.Sqrt(std / float64(len(v))), maxAbs
}

// With init_scheme "pytorch" the embeddings are N(0, 1) and every matrix is
// uniform in ±1/√fan_in (std 1/√(3·fan_in)), as torch.nn's defaults draw them;
// "normal" keeps GPT-2's N(0, 0.02²) with the residual projections scaled.
func TestInitSchemes(t *testing.T) {
	cfg := GPT2Config(300, 64, 2, 4, 128)
	cfg.TieWordEmbeddings = false
	cfg.InitScheme = InitPyTorch
	m, err := New(cfg, autodiff.NewRNG(3))
	require.NoError(t, err)
	seen := 0
	for name, w := range m.StateDict() {
		if w.Rank() != 2 {
			continue
		}
		mean, std, maxAbs := moments(w)
		if strings.Contains(name, "embed") || strings.Contains(name, "wpe") || strings.Contains(name, "position") {
			assert.InDelta(t, 0, mean, 0.02, name)
			assert.InDelta(t, 1, std, 0.03, name)
			seen++
			continue
		}
		fanIn := float64(w.Dim(1))
		bound := 1 / math.Sqrt(fanIn)
		assert.LessOrEqual(t, maxAbs, bound, name)
		assert.InDelta(t, bound/math.Sqrt(3), std, 0.05*bound, name)
		seen++
	}
	assert.GreaterOrEqual(t, seen, 2+2*4+1, "embeddings, positions, 4 matrices per layer, the head")

	cfg.InitScheme = InitNormal
	m, err = New(cfg, autodiff.NewRNG(3))
	require.NoError(t, err)
	_, std, _ := moments(m.Embed.Weight)
	assert.InDelta(t, 0.02, std, 0.001)

	cfg.InitScheme = "xavier"
	_, err = New(cfg, autodiff.NewRNG(3))
	require.ErrorContains(t, err, "init_scheme")
}
