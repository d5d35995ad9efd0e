package generate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// SamplerOptions choose the next token from the logits. The steps run in this
// order: the penalties change the logits of tokens already seen, the
// temperature divides them, softmax makes them a distribution, top-k, top-p and
// min-p remove tokens from it (each renormalising what is left), and a token is
// drawn. Temp 0 is greedy decoding (the penalties still apply; the filters do
// not matter). The zero value is greedy decoding.
type SamplerOptions struct {
	Temp float64 // temperature; 0 is greedy

	TopK int     // keep the TopK most likely tokens; 0 keeps all
	TopP float64 // keep the most likely tokens whose probabilities first reach TopP (nucleus); 0 or 1 keeps all
	MinP float64 // keep the tokens at least MinP times as likely as the most likely one; 0 keeps all

	// RepetitionPenalty (> 0; 0 or 1 is off) divides the positive logits and
	// multiplies the negative ones of every token among the last
	// RepetitionContextSize tokens (prompt included), as in the CTRL paper and
	// Hugging Face. PresencePenalty is subtracted from the logit of each token
	// seen in that window, FrequencyPenalty times the number of times it was
	// seen there (OpenAI's definitions). RepetitionContextSize 0 means 20.
	RepetitionPenalty     float64
	RepetitionContextSize int
	PresencePenalty       float64
	FrequencyPenalty      float64

	Seed uint64 // the same seed draws the same tokens
}

// DefaultRepetitionContextSize is the penalty window when none is given.
const DefaultRepetitionContextSize = 20

// Validate reports options out of range, naming the flag-style field.
func (o SamplerOptions) Validate() error {
	switch {
	case o.Temp < 0 || math.IsNaN(o.Temp) || math.IsInf(o.Temp, 0):
		return fmt.Errorf("temp %g: want a finite value ≥ 0", o.Temp)
	case o.TopK < 0:
		return fmt.Errorf("top-k %d: want ≥ 0", o.TopK)
	case !(o.TopP >= 0 && o.TopP <= 1):
		return fmt.Errorf("top-p %g: want a value in [0, 1]", o.TopP)
	case !(o.MinP >= 0 && o.MinP <= 1):
		return fmt.Errorf("min-p %g: want a value in [0, 1]", o.MinP)
	case o.RepetitionPenalty < 0 || math.IsNaN(o.RepetitionPenalty) || math.IsInf(o.RepetitionPenalty, 0):
		return fmt.Errorf("repetition-penalty %g: want a finite value > 0 (1 is off)", o.RepetitionPenalty)
	case o.RepetitionContextSize < 0:
		return fmt.Errorf("repetition-context-size %d: want ≥ 0", o.RepetitionContextSize)
	case math.IsNaN(o.PresencePenalty) || math.IsInf(o.PresencePenalty, 0):
		return fmt.Errorf("presence-penalty %g: want a finite value", o.PresencePenalty)
	case math.IsNaN(o.FrequencyPenalty) || math.IsInf(o.FrequencyPenalty, 0):
		return fmt.Errorf("frequency-penalty %g: want a finite value", o.FrequencyPenalty)
	}
	return nil
}

// Greedy reports whether the options always pick the most likely token.
func (o SamplerOptions) Greedy() bool { return o.Temp == 0 }

func (o SamplerOptions) window() int {
	if o.RepetitionContextSize == 0 {
		return DefaultRepetitionContextSize
	}
	return o.RepetitionContextSize
}

func (o SamplerOptions) penalised() bool {
	return (o.RepetitionPenalty != 0 && o.RepetitionPenalty != 1) || o.PresencePenalty != 0 || o.FrequencyPenalty != 0
}

// Sampler draws tokens as its options say, from its own seeded generator
// (PCG from math/rand/v2): the same options and the same logits give the same
// tokens. Not safe for concurrent use; batched generation gives each sequence
// its own.
type Sampler struct {
	Options SamplerOptions
	rng     *rand.Rand
	scratch []float64
	order   []int
}

// NewSampler returns a sampler for o (call o.Validate first for user input).
func NewSampler(o SamplerOptions) *Sampler {
	return &Sampler{Options: o, rng: rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))}
}

// Penalize applies the repetition, presence and frequency penalties of o to
// logits in place, for the tokens in history's last window positions.
func (o SamplerOptions) Penalize(logits []float64, history []int32) {
	if !o.penalised() {
		return
	}
	win := history[max(0, len(history)-o.window()):]
	counts := map[int32]int{}
	for _, t := range win {
		if t >= 0 && int(t) < len(logits) {
			counts[t]++
		}
	}
	rp := o.RepetitionPenalty
	for t, n := range counts {
		x := logits[t]
		if rp != 0 && rp != 1 {
			if x > 0 {
				x /= rp
			} else {
				x *= rp
			}
		}
		x -= o.PresencePenalty + o.FrequencyPenalty*float64(n)
		logits[t] = x
	}
}

// Probs returns the distribution the sampler draws from after history: logits
// (one position, vocab long; left unchanged) through the penalties, the
// temperature, softmax and the filters. For greedy options it is one-hot on the
// most likely token (the lowest id among equals). The result is the sampler's
// scratch, valid until its next call.
func (s *Sampler) Probs(logits []float64, history []int32) []float64 {
	p := append(s.scratch[:0], logits...)
	s.scratch = p
	o := s.Options
	o.Penalize(p, history)
	if o.Greedy() {
		best := argmax(p)
		clear(p)
		p[best] = 1
		return p
	}
	softmaxTemp(p, o.Temp)
	if o.TopK > 0 && o.TopK < len(p) {
		s.keepTopK(p, o.TopK)
	}
	if o.TopP > 0 && o.TopP < 1 {
		s.keepTopP(p, o.TopP)
	}
	if o.MinP > 0 {
		keepMinP(p, o.MinP)
	}
	return p
}

// Sample draws the next token from logits after history.
func (s *Sampler) Sample(logits []float64, history []int32) int32 {
	p := s.Probs(logits, history)
	if s.Options.Greedy() {
		return int32(argmax(p))
	}
	return int32(s.Draw(p))
}

// Draw picks an index with the probabilities p (which sum to 1 up to rounding)
// by inverting the cumulative distribution at one uniform draw.
func (s *Sampler) Draw(p []float64) int {
	return drawFrom(p, s.rng.Float64())
}

// Uniform is one draw in [0, 1) from the sampler's generator (speculative
// decoding's acceptance test uses it).
func (s *Sampler) Uniform() float64 { return s.rng.Float64() }

func drawFrom(p []float64, u float64) int {
	total := 0.0
	for _, x := range p {
		total += x
	}
	u *= total
	acc, last := 0.0, -1
	for i, x := range p {
		if x <= 0 {
			continue
		}
		acc += x
		last = i
		if u < acc {
			return i
		}
	}
	if last < 0 {
		return 0
	}
	return last // rounding left u at the very top
}

// softmaxTemp turns logits into probabilities at temperature temp, in place.
func softmaxTemp(p []float64, temp float64) {
	m := math.Inf(-1)
	for _, x := range p {
		m = max(m, x)
	}
	sum := 0.0
	for i, x := range p {
		e := math.Exp((x - m) / temp)
		if math.IsInf(m, -1) {
			e = 1
		}
		p[i] = e
		sum += e
	}
	for i := range p {
		p[i] /= sum
	}
}

// byProb fills s.order with the token ids sorted by probability, descending,
// lower ids first among equals.
func (s *Sampler) byProb(p []float64) []int {
	s.order = s.order[:0]
	for i := range p {
		s.order = append(s.order, i)
	}
	sort.SliceStable(s.order, func(a, b int) bool { return p[s.order[a]] > p[s.order[b]] })
	return s.order
}

func (s *Sampler) keepTopK(p []float64, k int) {
	for _, i := range s.byProb(p)[k:] {
		p[i] = 0
	}
	normalize(p)
}

func (s *Sampler) keepTopP(p []float64, top float64) {
	order := s.byProb(p)
	acc := 0.0
	for n, i := range order {
		acc += p[i]
		if acc >= top {
			for _, j := range order[n+1:] {
				p[j] = 0
			}
			break
		}
	}
	normalize(p)
}

func keepMinP(p []float64, minP float64) {
	m := 0.0
	for _, x := range p {
		m = max(m, x)
	}
	for i, x := range p {
		if x < minP*m {
			p[i] = 0
		}
	}
	normalize(p)
}

func normalize(p []float64) {
	sum := 0.0
	for _, x := range p {
		sum += x
	}
	for i := range p {
		p[i] /= sum
	}
}

// argmax is the index of the largest value (the lowest among equals).
func argmax(x []float64) int {
	best := 0
	for j, v := range x {
		if v > x[best] {
			best = j
		}
	}
	return best
}
