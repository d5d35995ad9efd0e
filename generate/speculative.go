package generate

import (
	"fmt"
	"time"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/models"
)

// Speculative continues prompt with target, helped by a smaller draft model of
// the same vocabulary: each round the draft proposes up to numDraft tokens one
// by one, the target scores them all in one pass, and the standard rejection
// rule (Leviathan et al. 2023; Chen et al. 2023) decides how many to keep.
// Draft token d, proposed with probability q(d) where the target gives p(d), is
// accepted with probability min(1, p(d)/q(d)); the first rejected one is
// replaced by a draw from the residual max(0, p − q) renormalised; when all are
// accepted the target's distribution after them gives one more token. The
// tokens then follow the target's own distribution (with o.Sampler's
// processing), and greedy decoding (Temp 0) gives exactly the target's greedy
// tokens. Stats.Drafted and Stats.Accepted count the proposals.
//
// Both caches go back to the accepted tokens after each round: KV caches are
// trimmed; layers that cannot forget positions (Mamba states, rings that have
// wrapped) are restored from a copy and the accepted tokens run again.
func Speculative(target, draft *models.Model, prompt []int32, o Options, numDraft int, emit func(tok int32) bool) (Stats, error) {
	if err := o.Validate(); err != nil {
		return Stats{}, fmt.Errorf("generate: %w", err)
	}
	if numDraft < 1 {
		return Stats{}, fmt.Errorf("generate: %d draft tokens: want at least 1", numDraft)
	}
	if tv, dv := target.Config.VocabSize, draft.Config.VocabSize; tv != dv {
		return Stats{}, fmt.Errorf("generate: the draft model's vocabulary of %d tokens differs from the target's %d", dv, tv)
	}
	prompt, maxNew, cut, err := fitPrompt(target, prompt, o)
	if err != nil {
		return Stats{}, err
	}
	if n := Context(draft); n > 0 && len(prompt)+maxNew > n {
		if len(prompt) >= n {
			return Stats{}, fmt.Errorf("generate: draft model: %w", &ContextError{len(prompt), maxNew, n})
		}
		maxNew = n - len(prompt)
	}
	st := Stats{PromptTokens: len(prompt), Truncated: cut}
	tc, dc := models.NewCacheWith(target, o.Cache), models.NewCacheWith(draft, o.Cache)
	defer tc.Release()
	defer dc.Release()
	ts := NewSampler(o.Sampler)
	do := o.Sampler
	do.Seed ^= 0x5bd1e9955bd1e995 // the draft draws from its own stream
	ds := NewSampler(do)

	start := time.Now()
	body := prompt[:len(prompt)-1]
	feed(target, body, tc, o.prefillStep())
	feed(draft, body, dc, o.prefillStep())
	st.PromptTime = time.Since(start)
	start = time.Now()

	history := append([]int32(nil), prompt...)
	pendT := []int32{prompt[len(prompt)-1]} // tokens the target has not seen yet
	pendD := pendT                          // tokens the draft has not seen yet
	done := false
	put := func(tok int32) {
		st.Tokens++
		history = append(history, tok)
		if !emit(tok) || o.isEOS(tok) || st.Tokens >= maxNew {
			done = true
		}
	}
	for !done {
		k := min(numDraft, maxNew-st.Tokens-1) // room for the drafts and one more
		// Draft.
		dStart, dMark := dc.Offset(), dc.Mark()
		var drafts []int32
		var qs [][]float64
		in := pendD
		for len(drafts) < k {
			q := clone(ds.Probs(step(draft, in, dc)[0], append(history, drafts...)))
			d := int32(argmax(q))
			if !ds.Options.Greedy() {
				d = int32(ds.Draw(q))
			}
			drafts, qs = append(drafts, d), append(qs, q)
			in = []int32{d}
			if o.isEOS(d) {
				break
			}
		}
		st.Drafted += len(drafts)
		// Verify: the target scores the pending tokens and every draft.
		tStart, tMark := tc.Offset(), tc.Mark()
		all := concat(pendT, drafts)
		ids := autodiff.FromInt32(all, 1, len(all))
		logits := target.ForwardCache(nil, ids, tc)
		ids.Release()
		accepted := 0
		var final int32 = -1
		for i := 0; i <= len(drafts) && !done; i++ {
			// history holds the drafts accepted so far, as when the draft proposed d_i.
			p := ts.Probs(positionLogits(logits, 0, len(pendT)-1+i), history)
			if i == len(drafts) { // every draft accepted: one more from the target
				final = sampleFrom(ts, p)
				break
			}
			tok, ok := acceptDraft(ts, p, qs[i], drafts[i])
			if !ok {
				final = tok
				break
			}
			accepted++
			put(drafts[i])
		}
		logits.Release()
		st.Accepted += accepted
		if final >= 0 && !done {
			put(final)
		}
		if done {
			tMark.Release()
			dMark.Release()
			break
		}
		// The target saw pendT and every draft: keep pendT and the accepted.
		rewind(target, tc, tMark, tStart, concat(pendT, drafts[:accepted]), o.prefillStep())
		// The draft saw pendD and all drafts but the last.
		switch {
		case len(drafts) == 0:
			dMark.Release()
			pendD = concat(pendD, []int32{final})
		case accepted == len(drafts):
			dMark.Release()
			pendD = []int32{drafts[len(drafts)-1], final}
		default:
			rewind(draft, dc, dMark, dStart, concat(pendD, drafts[:accepted]), o.prefillStep())
			pendD = []int32{final}
		}
		pendT = []int32{final}
	}
	st.DecodeTime = time.Since(start)
	return st, nil
}

// acceptDraft is the rejection rule for one draft token d proposed with
// distribution q where the target has p: it returns (d, true) with probability
// min(1, p(d)/q(d)), else (a draw from max(0, p − q) renormalised, false).
// Greedy samplers accept d when it is p's most likely token and otherwise
// return that token.
func acceptDraft(s *Sampler, p, q []float64, d int32) (int32, bool) {
	if s.Options.Greedy() {
		best := int32(argmax(p))
		return best, best == d
	}
	if u := s.Uniform(); u*q[d] < p[d] { // u < p/q without dividing by a zero q
		return d, true
	}
	res := make([]float64, len(p))
	sum := 0.0
	for i := range p {
		res[i] = max(0, p[i]-q[i])
		sum += res[i]
	}
	if sum <= 0 { // p == q up to rounding: rejection had probability ~0
		return int32(s.Draw(p)), false
	}
	return int32(s.Draw(res)), false
}

func sampleFrom(s *Sampler, p []float64) int32 {
	if s.Options.Greedy() {
		return int32(argmax(p))
	}
	return int32(s.Draw(p))
}

// rewind puts cache back to its state at offset start followed by the tokens
// kept: by trimming when every layer can, else from the mark and running the
// kept tokens again.
func rewind(m *models.Model, cache *models.Cache, mk *models.CacheMark, start int, kept []int32, stepSize int) {
	if cache.TrimTo(start + len(kept)) {
		mk.Release()
		return
	}
	cache.Rewind(mk)
	feed(m, kept, cache, stepSize)
}

func concat(a, b []int32) []int32 { return append(append([]int32(nil), a...), b...) }

func clone(p []float64) []float64 { return append([]float64(nil), p...) }
