package generate

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/models"
)

// families are tiny float64 models: GPT-2, llama with GQA, llama with
// sliding-window layers, Mamba, MoE and a Mamba/attention/MoE hybrid.
func families() map[string]models.Config {
	f := map[string]models.Config{}
	f["gpt2"] = models.GPT2Config(13, 16, 2, 2, 64)
	f["llama_gqa"] = models.LlamaConfig(13, 16, 2, 4, 2, 24, 64)
	w := models.LlamaConfig(13, 16, 2, 4, 2, 24, 64)
	w.LayerTypes = []string{models.MixerSlidingAttention, models.MixerFullAttention}
	w.SlidingWindow = 4
	f["llama_window"] = w
	mb := models.LlamaConfig(13, 16, 2, 4, 2, 24, 64)
	mb.LayerTypes = []string{models.MixerMamba, models.MixerMamba}
	mb.StateSize, mb.ConvKernel, mb.Expand, mb.TimeStepRank = 3, 3, 2, 2
	f["mamba"] = mb
	moe := models.LlamaConfig(13, 16, 2, 4, 2, 24, 64)
	moe.FeedForwardTypes = []string{models.FeedForwardMoE, models.FeedForwardMLP}
	moe.NumLocalExperts, moe.NumExpertsPerTok, moe.MoEIntermediateSize = 4, 2, 8
	f["moe"] = moe
	h := models.LlamaConfig(13, 16, 3, 4, 2, 24, 64)
	h.LayerTypes = []string{models.MixerMamba, models.MixerSlidingAttention, models.MixerFullAttention}
	h.FeedForwardTypes = []string{models.FeedForwardMoE, models.FeedForwardMLP, models.FeedForwardMoE}
	h.SlidingWindow = 3
	h.StateSize, h.ConvKernel, h.Expand, h.TimeStepRank = 3, 3, 2, 2
	h.NumLocalExperts, h.NumExpertsPerTok, h.MoEIntermediateSize = 3, 2, 8
	f["hybrid"] = h
	for k, c := range f {
		c.TorchDType = "float64"
		f[k] = c
	}
	return f
}

// sharpen scales the weights up so the models' distributions are far from
// uniform (random init gives near-uniform logits, where every sampler looks
// alike).
func sharpen(m *models.Model, by float64) {
	for _, p := range m.Params() {
		if p.Value.Rank() >= 2 {
			xs := p.Value.Float64s()
			for i := range xs {
				xs[i] *= by
			}
		}
	}
}

func newModel(t *testing.T, cfg models.Config, seed uint64) *models.Model {
	t.Helper()
	m, err := models.New(cfg, autodiff.NewRNG(seed))
	require.NoError(t, err)
	sharpen(m, 6)
	return m
}

// reference generates by recomputing the whole sequence at every step and
// drawing with a sampler of the same options: what Generate must reproduce.
func reference(m *models.Model, prompt []int32, o Options) []int32 {
	s := NewSampler(o.Sampler)
	seq := append([]int32(nil), prompt...)
	var out []int32
	for len(out) < o.MaxTokens {
		logits := m.Forward(nil, autodiff.FromInt32(seq, 1, len(seq)))
		tok := s.Sample(positionLogits(logits, 0, len(seq)-1), seq)
		out = append(out, tok)
		seq = append(seq, tok)
		if o.isEOS(tok) {
			break
		}
	}
	return out
}

func collect(m *models.Model, prompt []int32, o Options) ([]int32, Stats, error) {
	var out []int32
	st, err := Generate(m, prompt, o, func(t int32) bool { out = append(out, t); return true })
	return out, st, err
}

var sampled = SamplerOptions{Temp: 0.9, TopK: 8, TopP: 0.95, MinP: 0.02, RepetitionPenalty: 1.3, RepetitionContextSize: 6, PresencePenalty: 0.2, FrequencyPenalty: 0.1, Seed: 77}

// TestGenerateEqualsRecompute: greedy and sampled generation with every cache
// kind and chunked prefill gives the tokens of the recomputing reference.
func TestGenerateEqualsRecompute(t *testing.T) {
	prompt := []int32{1, 5, 2, 8, 3, 9, 4, 7, 0}
	for fam, cfg := range families() {
		m := newModel(t, cfg, 3)
		for _, so := range []SamplerOptions{{}, sampled} {
			want := reference(m, prompt, Options{MaxTokens: 12, Sampler: so})
			for name, co := range map[string]models.CacheOptions{
				"growing": {}, "paged": {BlockSize: 4}, "maxkv_nonevicting": {MaxKVSize: 32, Keep: 2},
			} {
				t.Run(fmt.Sprintf("%s/%s/temp%g", fam, name, so.Temp), func(t *testing.T) {
					got, st, err := collect(m, prompt, Options{MaxTokens: 12, Sampler: so, Cache: co, PrefillStepSize: 3})
					require.NoError(t, err)
					assert.Equal(t, want, got)
					assert.Equal(t, len(prompt), st.PromptTokens)
					assert.Equal(t, 12, st.Tokens)
				})
			}
		}
	}
}

// TestGenerateSeedReproduces: the same seed gives the same tokens, another
// seed others.
func TestGenerateSeedReproduces(t *testing.T) {
	m := newModel(t, families()["llama_gqa"], 4)
	run := func(seed uint64) []int32 {
		o := Options{MaxTokens: 20, Sampler: SamplerOptions{Temp: 1.5, Seed: seed}}
		out, _, err := collect(m, []int32{1, 2, 3}, o)
		require.NoError(t, err)
		return out
	}
	assert.Equal(t, run(5), run(5))
	assert.NotEqual(t, run(5), run(6))
}

// TestGenerateStopsAndTruncates: EOS and emit stop generation; a prompt too
// long for the learned positions is an error, or truncated with Truncate.
func TestGenerateStopsAndTruncates(t *testing.T) {
	cfg := models.GPT2Config(13, 16, 1, 2, 10)
	cfg.TorchDType = "float64"
	m := newModel(t, cfg, 5)
	prompt := []int32{1, 2, 3}
	ref := reference(m, prompt, Options{MaxTokens: 5})
	got, _, err := collect(m, prompt, Options{MaxTokens: 5, EOS: []int32{ref[1]}})
	require.NoError(t, err)
	assert.Equal(t, ref[:2], got[:min(2, len(got))])
	assert.LessOrEqual(t, len(got), 2)
	n := 0
	_, err = Generate(m, prompt, Options{MaxTokens: 5}, func(int32) bool { n++; return n < 3 })
	require.NoError(t, err)
	assert.Equal(t, 3, n)

	long := make([]int32, 14)
	for i := range long {
		long[i] = int32(i % 13)
	}
	_, _, err = collect(m, long, Options{MaxTokens: 4})
	var ce *ContextError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, 10, ce.Context)
	out, st, err := collect(m, long, Options{MaxTokens: 4, Truncate: true})
	require.NoError(t, err)
	assert.Equal(t, 6, st.PromptTokens, "the last 10 − 4 tokens")
	assert.Equal(t, 8, st.Truncated)
	assert.Equal(t, reference(m, long[8:], Options{MaxTokens: 4}), out)
	_, _, err = collect(m, prompt, Options{MaxTokens: 0})
	assert.Error(t, err)
}

// TestGenerateBatchEqualsOneByOne: prompts of different lengths decoded
// together give each prompt's tokens alone, greedy and sampled (sequence i
// seeded Seed + i), each stopping on its own.
func TestGenerateBatchEqualsOneByOne(t *testing.T) {
	prompts := [][]int32{{1, 5, 2, 8, 3, 9, 4}, {7}, {2, 2, 6, 1}, {11, 12, 0, 3, 3, 3, 3, 3, 3, 1}}
	for fam, cfg := range families() {
		m := newModel(t, cfg, 6)
		for _, so := range []SamplerOptions{{}, sampled} {
			for name, co := range map[string]models.CacheOptions{"growing": {}, "paged": {BlockSize: 3}} {
				t.Run(fmt.Sprintf("%s/%s/temp%g", fam, name, so.Temp), func(t *testing.T) {
					o := Options{MaxTokens: 9, Sampler: so, Cache: co, PrefillStepSize: 4}
					// An EOS that some sequence meets early.
					first := reference(m, prompts[0], o)
					o.EOS = []int32{first[3]}
					want := make([][]int32, len(prompts))
					for i, p := range prompts {
						oi := o
						oi.Sampler.Seed += uint64(i)
						want[i], _, _ = collect(m, p, oi)
					}
					got := make([][]int32, len(prompts))
					st, err := GenerateBatch(m, prompts, o, func(i int, tok int32) bool {
						got[i] = append(got[i], tok)
						return true
					})
					require.NoError(t, err)
					assert.Equal(t, want, got)
					total := 0
					for _, w := range want {
						total += len(w)
					}
					assert.Equal(t, total, st.Tokens)
				})
			}
		}
	}
}

// TestSpeculativeGreedyEqualsTarget: greedy speculative decoding gives the
// target's greedy tokens exactly, with a poor draft (another random model of
// the family), a
// perfect draft (the target itself: every proposal accepted) and across the
// families whose caches must be restored rather than trimmed (Mamba states,
// rings that wrap).
func TestSpeculativeGreedyEqualsTarget(t *testing.T) {
	prompt := []int32{1, 5, 2, 8, 3}
	for fam, cfg := range families() {
		target := newModel(t, cfg, 7)
		poor := newModel(t, cfg, 8) // same family: its caches rewind too
		want, _, err := collect(target, prompt, Options{MaxTokens: 20})
		require.NoError(t, err)
		for name, draft := range map[string]*models.Model{"poor": poor, "self": target} {
			for _, n := range []int{1, 3, 5} {
				t.Run(fmt.Sprintf("%s/%s/%d", fam, name, n), func(t *testing.T) {
					var got []int32
					st, err := Speculative(target, draft, prompt, Options{MaxTokens: 20}, n, func(tok int32) bool {
						got = append(got, tok)
						return true
					})
					require.NoError(t, err)
					assert.Equal(t, want, got)
					if name == "self" {
						assert.Equal(t, st.Drafted, st.Accepted)
					}
					assert.Equal(t, 20, st.Tokens)
				})
			}
		}
	}
}

// TestAcceptDraftRule checks the rejection rule against hand-computed
// distributions: a draft token drawn from q, put through the rule, comes out
// distributed as p; the acceptance probability of d is min(1, p(d)/q(d)).
func TestAcceptDraftRule(t *testing.T) {
	p := []float64{0.5, 0.2, 0.2, 0.1, 0}
	q := []float64{0.1, 0.4, 0.2, 0.1, 0.2}
	s := NewSampler(SamplerOptions{Temp: 1, Seed: 3})
	const n = 40000
	counts := make([]int, len(p))
	accepts := make([]int, len(p))
	proposed := make([]int, len(p))
	for range n {
		d := int32(s.Draw(q))
		tok, ok := acceptDraft(s, p, q, d)
		counts[tok]++
		proposed[d]++
		if ok {
			accepts[d]++
			assert.Equal(t, d, tok)
		}
	}
	chi := 0.0
	for i, c := range counts {
		if p[i] == 0 {
			assert.Zero(t, c, "token %d has target probability 0", i)
			continue
		}
		e := n * p[i]
		chi += (float64(c) - e) * (float64(c) - e) / e
	}
	assert.Less(t, chi, 30.0, "df 3; counts %v", counts)
	for d := range p {
		want := math.Min(1, p[d]/q[d])
		got := float64(accepts[d]) / float64(proposed[d])
		sd := math.Sqrt(want*(1-want)/float64(proposed[d])) + 1e-9
		assert.InDelta(t, want, got, 5*sd+1e-9, "acceptance of %d", d)
	}
	// The residual when rejecting: max(0, p − q)/Z = (0.4, 0, 0, 0, 0)/0.4.
	g := NewSampler(SamplerOptions{Temp: 1, Seed: 4})
	for range 100 {
		if tok, ok := acceptDraft(g, p, q, 1); !ok {
			assert.Equal(t, int32(0), tok, "only token 0 has p > q")
		}
	}
	// Greedy: accept exactly the target's best.
	gr := NewSampler(SamplerOptions{})
	tok, ok := acceptDraft(gr, []float64{0, 1, 0}, []float64{1, 0, 0}, 0)
	assert.False(t, ok)
	assert.Equal(t, int32(1), tok)
	tok, ok = acceptDraft(gr, []float64{0, 1, 0}, []float64{0, 1, 0}, 1)
	assert.True(t, ok)
	assert.Equal(t, int32(1), tok)
}

// TestSpeculativeSampledFollowsTarget: sampled speculative decoding of one
// token after a prompt, with a draft whose distribution differs, gives the
// target's distribution for the first two tokens (χ² against the exact
// probabilities the target computes).
func TestSpeculativeSampledFollowsTarget(t *testing.T) {
	cfg := models.LlamaConfig(5, 8, 1, 2, 1, 12, 32)
	cfg.TorchDType = "float64"
	target, err := models.New(cfg, autodiff.NewRNG(1))
	require.NoError(t, err)
	sharpen(target, 8)
	draft, err := models.New(cfg, autodiff.NewRNG(2))
	require.NoError(t, err)
	sharpen(draft, 8)
	prompt := []int32{1, 3}
	so := SamplerOptions{Temp: 1}
	// Exact distribution of the first two tokens under the target.
	first := softmaxRef(positionLogits(target.Forward(nil, autodiff.FromInt32(prompt, 1, 2)), 0, 1), 1)
	pairs := map[[2]int32]float64{}
	for a := range int32(5) {
		seq := []int32{1, 3, a}
		second := softmaxRef(positionLogits(target.Forward(nil, autodiff.FromInt32(seq, 1, 3)), 0, 2), 1)
		for b := range int32(5) {
			pairs[[2]int32{a, b}] = first[a] * second[b]
		}
	}
	const n = 3000
	counts := map[[2]int32]int{}
	var drafted, accepted int
	for i := range n {
		so.Seed = uint64(i)
		var got []int32
		st, err := Speculative(target, draft, prompt, Options{MaxTokens: 2, Sampler: so}, 1, func(tok int32) bool {
			got = append(got, tok)
			return true
		})
		require.NoError(t, err)
		require.Len(t, got, 2)
		counts[[2]int32{got[0], got[1]}]++
		drafted += st.Drafted
		accepted += st.Accepted
	}
	chi, df := 0.0, -1
	for k, p := range pairs {
		e := n * p
		if e < 5 { // pool the rare cells' counts into none: they are checked for sanity only
			continue
		}
		df++
		c := float64(counts[k])
		chi += (c - e) * (c - e) / e
	}
	require.Greater(t, df, 3)
	// χ² with df degrees of freedom stays below df + 6√(2df) with overwhelming
	// probability.
	assert.Less(t, chi, float64(df)+6*math.Sqrt(2*float64(df)), "df %d", df)
	assert.Greater(t, drafted, 0)
	assert.Less(t, accepted, drafted, "a different draft is sometimes rejected")
}

// TestGenerateBatchSharesPrefixes: with paged caches, prompts that begin alike
// reuse the first one's cache for the common prefix (attention-only models),
// and still give each prompt's tokens alone.
func TestGenerateBatchSharesPrefixes(t *testing.T) {
	common := []int32{3, 1, 4, 1, 5, 9, 2}
	prompts := [][]int32{append(slices.Clone(common), 6, 5), append(slices.Clone(common), 3), slices.Clone(common[:3]), append(slices.Clone(common), 6, 5, 3, 5)}
	for fam, cfg := range families() {
		t.Run(fam, func(t *testing.T) {
			m := newModel(t, cfg, 10)
			o := Options{MaxTokens: 6, Sampler: sampled, Cache: models.CacheOptions{BlockSize: 2}}
			got := make([][]int32, len(prompts))
			st, err := GenerateBatch(m, prompts, o, func(i int, tok int32) bool {
				got[i] = append(got[i], tok)
				return true
			})
			require.NoError(t, err)
			for i, p := range prompts {
				oi := o
				oi.Sampler.Seed += uint64(i)
				want, _, err := collect(m, p, oi)
				require.NoError(t, err)
				assert.Equal(t, want, got[i], "prompt %d", i)
			}
			if fam == "mamba" || fam == "hybrid" {
				assert.Zero(t, st.SharedTokens, "a Mamba state cannot be cut back")
			} else {
				// The prefilled bodies are the prompts but their last tokens.
				// Prompt 1's body (common) is in prompt 0's (common, 6): 7; prompt
				// 2's (3, 1), one block: 2; prompt 3's begins with all of prompt
				// 0's: 8.
				assert.Equal(t, 7+2+8, st.SharedTokens)
			}
		})
	}
}
