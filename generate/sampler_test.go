package generate

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// softmaxRef is softmax(x/temp) written out plainly.
func softmaxRef(x []float64, temp float64) []float64 {
	out := make([]float64, len(x))
	sum := 0.0
	for i, v := range x {
		out[i] = math.Exp(v / temp)
		sum += out[i]
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}

// keepOnly zeroes p outside keep and renormalises (a new slice).
func keepOnly(p []float64, keep ...int) []float64 {
	out := make([]float64, len(p))
	sum := 0.0
	for _, i := range keep {
		sum += p[i]
	}
	for _, i := range keep {
		out[i] = p[i] / sum
	}
	return out
}

func TestSamplerDistributions(t *testing.T) {
	logits := []float64{1.0, 2.0, 0.5, -1.0, 1.5, 0.0}
	// probabilities at temperature 0.7, by hand: order of likelihood 1, 4, 0, 2, 5, 3.
	p7 := softmaxRef(logits, 0.7)
	p1 := softmaxRef(logits, 1)
	cases := []struct {
		name string
		o    SamplerOptions
		want []float64
	}{
		{"temp 1", SamplerOptions{Temp: 1}, p1},
		{"temp 0.7", SamplerOptions{Temp: 0.7}, p7},
		{"top-k 3", SamplerOptions{Temp: 0.7, TopK: 3}, keepOnly(p7, 1, 4, 0)},
		{"top-k 1", SamplerOptions{Temp: 0.7, TopK: 1}, keepOnly(p7, 1)},
		// p7 sorted: the first two sum to below 0.85 (and 0.8), the first three above.
		{"top-p 0.85", SamplerOptions{Temp: 0.7, TopP: 0.85}, keepOnly(p7, 1, 4, 0)},
		{"top-p tiny", SamplerOptions{Temp: 0.7, TopP: 1e-9}, keepOnly(p7, 1)},
		// min-p 0.3: keep p ≥ 0.3·p[1]: exp((l−2)/0.7) ≥ 0.3 ⇔ l ≥ 2 + 0.7·ln 0.3 ≈ 1.157.
		{"min-p 0.3", SamplerOptions{Temp: 0.7, MinP: 0.3}, keepOnly(p7, 1, 4)},
		{"top-k 4 then top-p 0.8", SamplerOptions{Temp: 0.7, TopK: 4, TopP: 0.8}, keepOnly(p7, 1, 4)},
	}
	// Sanity of the hand reasoning above.
	require.Less(t, p7[1]+p7[4], 0.8)
	require.Greater(t, p7[1]+p7[4]+p7[0], 0.85)
	// After top-k 4 the kept mass renormalises: the first two reach 0.8 there.
	k4 := keepOnly(p7, 1, 4, 0, 2)
	require.GreaterOrEqual(t, k4[1]+k4[4], 0.8)

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSampler(tc.o)
			got := s.Probs(logits, nil)
			assert.InDeltaSlice(t, tc.want, got, 1e-12, "exact distribution")
			// Empirical frequencies against the exact ones: Pearson's χ² over the
			// kept tokens stays under a bound its distribution passes with
			// probability ≈ 1 − 1e-6 (df ≤ 5: χ² < 35).
			const n = 20000
			counts := make([]int, len(logits))
			for range n {
				counts[s.Sample(logits, nil)]++
			}
			chi := 0.0
			for i, c := range counts {
				if tc.want[i] == 0 {
					assert.Zero(t, c, "token %d is filtered out", i)
					continue
				}
				e := n * tc.want[i]
				chi += (float64(c) - e) * (float64(c) - e) / e
			}
			assert.Less(t, chi, 35.0, "counts %v for %v", counts, tc.want)
		})
	}
}

func TestSamplerPenalties(t *testing.T) {
	logits := []float64{2, -1, 0.5, 3, -2}
	history := []int32{3, 3, 1, 0, 9, 3, 1} // 9 is outside the vocab: ignored
	o := SamplerOptions{RepetitionPenalty: 2, PresencePenalty: 0.25, FrequencyPenalty: 0.1, RepetitionContextSize: 5}
	got := append([]float64(nil), logits...)
	o.Penalize(got, history)
	// Window: the last five tokens 1, 0, 9, 3, 1: counts 1→2, 0→1, 3→1.
	want := []float64{
		2/2.0 - 0.25 - 0.1,
		-1*2.0 - 0.25 - 0.2,
		0.5,
		3/2.0 - 0.25 - 0.1,
		-2,
	}
	assert.InDeltaSlice(t, want, got, 1e-12)

	// Greedy with the penalty picks differently: 3 was the best, now 0 is.
	s := NewSampler(SamplerOptions{RepetitionPenalty: 4, RepetitionContextSize: 1})
	assert.Equal(t, int32(3), s.Sample(logits, []int32{0}))
	assert.Equal(t, int32(0), s.Sample(logits, []int32{3}))
}

func TestSamplerSeedReproduces(t *testing.T) {
	logits := []float64{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7}
	draw := func(seed uint64) []int32 {
		s := NewSampler(SamplerOptions{Temp: 1, Seed: seed})
		var out []int32
		for range 50 {
			out = append(out, s.Sample(logits, nil))
		}
		return out
	}
	assert.Equal(t, draw(42), draw(42))
	assert.NotEqual(t, draw(42), draw(43))
}

func TestSamplerGreedyAndValidate(t *testing.T) {
	s := NewSampler(SamplerOptions{})
	assert.Equal(t, int32(1), s.Sample([]float64{1, 3, 3, 2}, nil), "lowest id among equals")
	assert.Equal(t, []float64{0, 1, 0, 0}, s.Probs([]float64{1, 3, 3, 2}, nil))
	for _, o := range []SamplerOptions{
		{Temp: -1}, {TopK: -1}, {TopP: 1.5}, {MinP: -0.1}, {RepetitionPenalty: -1}, {RepetitionContextSize: -2},
		{Temp: math.NaN()}, {PresencePenalty: math.Inf(1)},
	} {
		assert.Error(t, o.Validate(), "%+v", o)
	}
	assert.NoError(t, SamplerOptions{Temp: 0.8, TopK: 40, TopP: 0.95, MinP: 0.05, RepetitionPenalty: 1.1}.Validate())
}
