package generate

import (
	"fmt"
	"time"

	"github.com/mlxtrain/mlxtrain/attention"
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
//
// With paged caches (o.Cache.BlockSize > 0) a prompt that begins like an
// earlier one by at least a block starts from a fork of that one's cache, so
// the common prefix is computed once and its full blocks are stored once
// (Stats.SharedTokens counts the prompt tokens not recomputed). Models with
// Mamba layers, whose state cannot be cut back to the prefix, prefill alone.
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
	bodies := make([][]int32, len(seqs))
	for i, s := range seqs {
		body := s.history[:len(s.history)-1]
		if o.Cache.BlockSize > 0 {
			var skip int
			caches[i], skip = sharePrefix(caches[:i], bodies[:i], body)
			st.SharedTokens += skip
			body = body[skip:]
		}
		if caches[i] == nil {
			caches[i] = models.NewCacheWith(m, o.Cache)
		}
		bodies[i] = s.history[:len(s.history)-1]
		feed(m, body, caches[i], o.prefillStep())
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

// sharePrefix finds the earlier prompt body sharing the longest prefix with
// body, at least one block long, and returns a fork of its cache cut back to
// that prefix with the prefix's length; nil, 0 when there is none or the cache
// cannot be cut (Mamba layers).
func sharePrefix(caches []*models.Cache, bodies [][]int32, body []int32) (*models.Cache, int) {
	best, bestN := -1, 0
	for j, b := range bodies {
		n := 0
		for n < len(b) && n < len(body) && b[n] == body[n] {
			n++
		}
		if n > bestN {
			best, bestN = j, n
		}
	}
	if best < 0 || bestN < pagedBlockSize(caches[best]) {
		return nil, 0
	}
	f := caches[best].Fork()
	if !f.TrimTo(bestN) {
		f.Release()
		return nil, 0
	}
	return f, bestN
}

// pagedBlockSize is the block size of c's paged caches (0 without).
func pagedBlockSize(c *models.Cache) int {
	for _, l := range c.Layers {
		if pc, ok := l.KV.(*attention.PagedCache); ok {
			return pc.Pool.BlockSize
		}
	}
	return 0
}
