package models_test

import (
	"math"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/layers"
	"github.com/mlxtrain/mlxtrain/models"
)

// TestFloat32GradientsAtTrainingShapes compares the float32 gradients of the
// default recipe's model (GPT-2 style, d_model 64, 4 layers, byte vocabulary) on a
// batch of its training size (256 × 15 tokens) with the same model's float64
// gradients. At these sizes every fast path of a CPU training step runs: the
// packed assembly GEMM with its k-split and side-by-side products, the fused
// linear epilogues and the tiled attention kernels; the small models of the
// gradient checks never reach their thresholds. Each tensor's error is measured
// against its own norm, or a thousandth of the largest gradient norm for the
// tensors whose exact gradient is 0 (the key biases: softmax ignores a constant
// added to a row of scores).
func TestFloat32GradientsAtTrainingShapes(t *testing.T) {
	if testing.Short() {
		t.Skip("a full-size batch")
	}
	checkFloat32Gradients(t, models.GPT2Config(259, 64, 4, 4, 16), 256, 15)
}

// TestFloat32MoEGradientsAtTrainingShapes is TestFloat32GradientsAtTrainingShapes
// for the mixture-of-experts model (top-2 of 8 experts in every layer) on
// 2048 tokens: the router statistics, the residual combine and the row
// kernels then run in parallel chunks.
func TestFloat32MoEGradientsAtTrainingShapes(t *testing.T) {
	if testing.Short() {
		t.Skip("a full-size batch")
	}
	cfg := models.GPT2Config(259, 64, 2, 4, 16)
	cfg.FeedForwardTypes = slices.Repeat([]string{models.FeedForwardMoE}, cfg.NumHiddenLayers)
	cfg.NumLocalExperts, cfg.NumExpertsPerTok = 8, 2
	cfg.ScoringFunc = models.ScoringSoftmax
	checkFloat32Gradients(t, cfg, 128, 16)
}

// checkFloat32Gradients compares the float32 gradients of the model cfg
// describes on one random batch (B sequences of T tokens) with the float64
// gradients of the same weights.
func checkFloat32Gradients(t *testing.T, cfg models.Config, B, T int) {
	m32, err := models.New(cfg, autodiff.NewRNG(1))
	require.NoError(t, err)
	cfg64 := cfg
	cfg64.TorchDType = "float64"
	m64, err := models.New(cfg64, autodiff.NewRNG(1))
	require.NoError(t, err)
	sd := map[string]*autodiff.Tensor{}
	for k, v := range m32.StateDict() {
		sd[k] = v
	}
	require.NoError(t, m64.LoadStateDict(sd))
	rng := autodiff.NewRNG(3)
	u := make([]uint32, 2*B*T)
	rng.Uint32s(u)
	in, tg := make([]int32, B*T), make([]int32, B*T)
	for i := range in {
		in[i], tg[i] = int32(u[i]%uint32(cfg.VocabSize)), int32(u[B*T+i]%uint32(cfg.VocabSize))
	}
	x, y := autodiff.FromInt32(in, B, T), autodiff.FromInt32(tg, B, T)
	grads := func(m *models.Model) map[string][]float64 {
		tp := autodiff.NewTape()
		defer tp.Release()
		c := &layers.Ctx{Tape: tp, Train: true}
		loss := m.Loss(c, x, y, nil)
		tp.Backward(loss)
		out := map[string][]float64{}
		for _, p := range m.Params() {
			g := tp.Grad(p.Value)
			if g == nil {
				continue
			}
			if g.DType() == autodiff.Float32 {
				f := g.Float32s()
				d := make([]float64, len(f))
				for i := range f {
					d[i] = float64(f[i])
				}
				out[p.Name] = d
			} else {
				out[p.Name] = append([]float64(nil), g.Float64s()...)
			}
		}
		return out
	}
	g32, g64 := grads(m32), grads(m64)
	require.Len(t, g32, len(m32.Params()))
	norm := func(x []float64) float64 {
		var s float64
		for _, v := range x {
			s += v * v
		}
		return math.Sqrt(s)
	}
	largest := 0.0
	for _, b := range g64 {
		largest = math.Max(largest, norm(b))
	}
	worst := 0.0
	for name, a := range g32 {
		b := g64[name]
		require.Len(t, a, len(b), name)
		diff := make([]float64, len(a))
		for i := range a {
			diff[i] = a[i] - b[i]
		}
		rel := norm(diff) / math.Max(norm(b), 1e-3*largest)
		worst = math.Max(worst, rel)
		assert.Less(t, rel, 1e-4, "%s: |g32 - g64| / |g64| = %.2e", name, rel)
	}
	t.Logf("largest relative error of a float32 gradient: %.2e", worst)
}
