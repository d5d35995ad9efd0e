package models_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/layers"
	"github.com/mlxtrain/mlxtrain/models"
	"github.com/mlxtrain/mlxtrain/optim"
)

// countingTokens returns (batch, seq) sequences that count up modulo vocab, each
// row from its own start.
func countingTokens(batch, seq, vocab int) *autodiff.Tensor {
	ids := make([]int32, batch*seq)
	for b := range batch {
		for t := range seq {
			ids[b*seq+t] = int32((3*b + t) % vocab)
		}
	}
	return autodiff.FromInt32(ids, batch, seq)
}

// TestTrainingLearnsPattern trains a tiny model for 50 AdamW steps on sequences
// that count up modulo the vocabulary: the next token is determined, so the loss
// must fall far below log(vocab).
func TestTrainingLearnsPattern(t *testing.T) {
	for name, cfg := range map[string]models.Config{
		"gpt2":  models.GPT2Config(11, 32, 2, 4, 16),
		"llama": models.LlamaConfig(11, 32, 2, 4, 2, 64, 16),
	} {
		t.Run(name, func(t *testing.T) {
			m, err := models.New(cfg, autodiff.NewRNG(6))
			require.NoError(t, err)
			opt, err := optim.NewAdamW(m.Params(), optim.AdamConfig{LR: optim.Constant(1e-2), WeightDecay: 0.01})
			require.NoError(t, err)
			defer opt.Release()
			seq := countingTokens(8, 17, 11)
			inputs, targets := autodiff.Slice(seq, 1, 0, 16), autodiff.Slice(seq, 1, 1, 17)
			var first, last float64
			for step := range 50 {
				tp := autodiff.NewTape()
				loss := m.Loss(&layers.Ctx{Tape: tp, Train: true}, inputs, targets, nil)
				if step == 0 {
					first = loss.Item()
				}
				last = loss.Item()
				tp.Backward(loss)
				opt.Step(optim.Grads(tp, m.Params()))
				tp.Release()
			}
			t.Logf("loss %.3f → %.3f", first, last)
			assert.InDelta(t, math.Log(11), first, 0.3, "starts near log(vocab)")
			assert.Less(t, last, 0.2*first)
		})
	}
}
