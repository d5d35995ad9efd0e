package generate

import (
	"fmt"
	"time"

	"github.com/mlxtrain/mlxtrain/models"
)

// GenerateBatch continues several prompts together. Each prompt is prefilled
// on its own (in chunks), then the sequences decode side by side: every step
// runs one token of each unfinished sequence through the model as one batch
// (the projections and feed-forwards as batched matrix products), each
// sequence attending its own cache at its own positions. Sequence i samples
// with its own generator, seeded o.Sampler.Seed + i, so its tokens are those
// [Generate] gives it alone with that seed. emit(i, tok) receives sequence i's
// tokens; a sequence stops on its own (EOS, MaxTokens, emit returning false,
// the context) and leaves the batch.
func GenerateBatch(m *models.Model, prompts [][]int32, o Options, emit func(seq int, tok int32) bool) (Stats, error) {
	if err := o.Validate(); err != nil {
		return Stats{}, fmt.Errorf("generate: %w", err)
	}
	if len(prompts) == 0 {
		return Stats{}, fmt.Errorf("generate: no prompts")
	}
	type seq struct {
		id      int
		maxNew  int
		made    int
		history []int32
		sampler *Sampler
	}
	var st Stats
	seqs := make([]*seq, len(prompts))
	for i, p := range prompts {
		p, maxNew, cut, err := fitPrompt(m, p, o)
		if err != nil {
			return Stats{}, fmt.Errorf("prompt %d: %w", i+1, err)
		}
		so := o.Sampler
		so.Seed += uint64(i)
		seqs[i] = &seq{id: i, maxNew: maxNew, history: append([]int32(nil), p...), sampler: NewSampler(so)}
		st.PromptTokens += len(p)
		st.Truncated += cut
	}

	start := time.Now()
	caches := make([]*models.Cache, len(seqs))
	last := make([]int32, len(seqs))
	for i, s := range seqs {
		caches[i] = models.NewCacheWith(m, o.Cache)
		feed(m, s.history[:len(s.history)-1], caches[i], o.prefillStep())
		last[i] = s.history[len(s.history)-1]
	}
	cache := models.StackCaches(caches...)
	defer cache.Release()
	logits := step(m, last, cache)
	st.PromptTime = time.Since(start)

	start = time.Now()
	live := seqs
	for len(live) > 0 {
		var keep []int
		var next []int32
		for r, s := range live {
			tok := s.sampler.Sample(logits[r], s.history)
			s.made++
			st.Tokens++
			s.history = append(s.history, tok)
			if emit(s.id, tok) && !o.isEOS(tok) && s.made < s.maxNew {
				keep = append(keep, r)
				next = append(next, tok)
			}
		}
		if len(keep) == 0 {
			break
		}
		if len(keep) < len(live) {
			cache.Select(keep)
			kept := make([]*seq, len(keep))
			for i, r := range keep {
				kept[i] = live[r]
			}
			live = kept
		}
		logits = step(m, next, cache)
	}
	st.DecodeTime = time.Since(start)
	return st, nil
}
