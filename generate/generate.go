package generate

import (
	"fmt"
	"slices"
	"time"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/models"
)

// DefaultPrefillStepSize is the prompt chunk of a prefill when none is given.
const DefaultPrefillStepSize = 512

// Options configure a generation.
type Options struct {
	MaxTokens int            // the most tokens to generate (≥ 1)
	Sampler   SamplerOptions // how each token is chosen (the zero value is greedy)
	EOS       []int32        // stop after emitting any of these

	Cache models.CacheOptions // the KV caches (growing, rotating with MaxKVSize, paged)

	// PrefillStepSize is how many prompt tokens go through the model at once
	// (bounding the prefill's activations); 0 means DefaultPrefillStepSize.
	PrefillStepSize int

	// Truncate keeps the last tokens of a prompt too long for the model's
	// context (Stats.Truncated says how many went); without it such a prompt is
	// a *ContextError.
	Truncate bool
}

// Validate reports options out of range.
func (o Options) Validate() error {
	if o.MaxTokens < 1 {
		return fmt.Errorf("max tokens %d: want at least 1", o.MaxTokens)
	}
	if o.PrefillStepSize < 0 {
		return fmt.Errorf("prefill step size %d: want ≥ 0", o.PrefillStepSize)
	}
	if err := o.Sampler.Validate(); err != nil {
		return err
	}
	return o.Cache.Validate()
}

func (o Options) prefillStep() int {
	if o.PrefillStepSize == 0 {
		return DefaultPrefillStepSize
	}
	return o.PrefillStepSize
}

func (o Options) isEOS(t int32) bool { return slices.Contains(o.EOS, t) }

// Stats measure a generation.
type Stats struct {
	PromptTokens int           // tokens prefilled (after truncation)
	Truncated    int           // prompt tokens dropped by Options.Truncate
	PromptTime   time.Duration // prefill, up to the first token's logits
	Tokens       int           // tokens generated
	DecodeTime   time.Duration // from the first token's logits to the end

	Drafted, Accepted int // speculative decoding: draft tokens proposed and accepted
	SharedTokens      int // batched paged decoding: prompt tokens taken from another prompt's cache
}

// PromptTokensPerSecond is the prefill's rate.
func (s Stats) PromptTokensPerSecond() float64 { return rate(s.PromptTokens, s.PromptTime) }

// TokensPerSecond is the decoding rate.
func (s Stats) TokensPerSecond() float64 { return rate(s.Tokens, s.DecodeTime) }

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// fitPrompt checks prompt against m's context: it returns the prompt to use (the
// last tokens of a too long one when truncating), how many tokens may be
// generated, and how many prompt tokens were dropped.
func fitPrompt(m *models.Model, prompt []int32, o Options) ([]int32, int, int, error) {
	if len(prompt) == 0 {
		return nil, 0, 0, fmt.Errorf("generate: empty prompt")
	}
	maxNew := o.MaxTokens
	n := Context(m)
	if n == 0 || len(prompt)+maxNew <= n {
		return prompt, maxNew, 0, nil
	}
	if o.Truncate {
		// Keep room for the tokens asked for, but at least half the context
		// for the prompt.
		keep := min(len(prompt), max(n-maxNew, n/2))
		return prompt[len(prompt)-keep:], min(maxNew, n-keep), len(prompt) - keep, nil
	}
	if len(prompt) >= n { // no position left for a generated token
		return nil, 0, 0, &ContextError{len(prompt), maxNew, n}
	}
	return prompt, n - len(prompt), 0, nil // the context bounds what can be generated
}

// Generate continues prompt with m: the prompt is prefilled in chunks, then
// each token is sampled as o.Sampler says and given to emit as soon as it is
// chosen. It stops after o.MaxTokens tokens, after an EOS token (emitted), when
// emit returns false, or at the context's end.
func Generate(m *models.Model, prompt []int32, o Options, emit func(tok int32) bool) (Stats, error) {
	if err := o.Validate(); err != nil {
		return Stats{}, fmt.Errorf("generate: %w", err)
	}
	prompt, maxNew, cut, err := fitPrompt(m, prompt, o)
	if err != nil {
		return Stats{}, err
	}
	st := Stats{PromptTokens: len(prompt), Truncated: cut}
	cache := models.NewCacheWith(m, o.Cache)
	defer cache.Release()
	s := NewSampler(o.Sampler)

	start := time.Now()
	logits := prefill(m, prompt, cache, o.prefillStep())
	st.PromptTime = time.Since(start)
	start = time.Now()
	history := append([]int32(nil), prompt...)
	for {
		tok := s.Sample(logits, history)
		st.Tokens++
		history = append(history, tok)
		if !emit(tok) || o.isEOS(tok) || st.Tokens >= maxNew {
			break
		}
		logits = step(m, []int32{tok}, cache)[0]
	}
	st.DecodeTime = time.Since(start)
	return st, nil
}

// prefill runs prompt into cache: all but the last token in chunks of at most
// stepSize without logits, then the last token, whose logits it returns.
func prefill(m *models.Model, prompt []int32, cache *models.Cache, stepSize int) []float64 {
	feed(m, prompt[:len(prompt)-1], cache, stepSize)
	return step(m, prompt[len(prompt)-1:], cache)[0]
}

// feed runs tokens into cache in chunks, without logits.
func feed(m *models.Model, tokens []int32, cache *models.Cache, stepSize int) {
	for i := 0; i < len(tokens); i += stepSize {
		chunk := tokens[i:min(i+stepSize, len(tokens))]
		ids := autodiff.FromInt32(chunk, 1, len(chunk))
		m.Prefill(ids, cache)
		ids.Release()
	}
}

// step runs one token per batch row (or, for a single row, the tokens given)
// and returns each row's logits at its last position.
func step(m *models.Model, tokens []int32, cache *models.Cache) [][]float64 {
	rows, n := 1, len(tokens)
	if cache.RowOffsets() != nil {
		rows, n = len(tokens), 1
	}
	ids := autodiff.FromInt32(tokens, rows, n)
	logits := m.ForwardCache(nil, ids, cache)
	ids.Release()
	out := lastLogits(logits)
	logits.Release()
	return out
}

// lastLogits copies the logits (batch, seq, vocab) of each row's last position.
func lastLogits(logits *autodiff.Tensor) [][]float64 {
	b, t := logits.Dim(0), logits.Dim(1)
	out := make([][]float64, b)
	for r := range b {
		out[r] = positionLogits(logits, r, t-1)
	}
	return out
}

// positionLogits copies the logits of row r at position i.
func positionLogits(logits *autodiff.Tensor, r, i int) []float64 {
	t, v := logits.Dim(1), logits.Dim(2)
	at := (r*t + i) * v
	out := make([]float64, v)
	if logits.DType() == autodiff.Float32 {
		for j, x := range logits.Float32s()[at : at+v] {
			out[j] = float64(x)
		}
		return out
	}
	copy(out, logits.Float64Values()[at:at+v])
	return out
}
