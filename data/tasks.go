package data

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// TaskSpec describes a built-in synthetic task. Zero fields take the defaults
// in brackets. All tasks write characters as bytes (NewByteTokenizer) and train
// only on the answer.
//
//   - "addition": "a+b=" then the sum in normal digit order, then EOS; the
//     operands have 1 to MaxDigits digits [3], the digit count drawn uniformly
//     first so short and long operands are equally common.
//   - "copy", "reverse", "sort": a sequence of MinLen to MaxLen [1, 8] symbols
//     from Alphabet ["0123456789"], "=", then the same sequence, reversed, or
//     sorted by byte value, then EOS.
//   - "mqar": multi-query associative recall (Zoology). Pairs [8] distinct keys
//     from Alphabet ["abcdefghijklmnopqrstuvwxyz"], each followed by its value
//     from Values ["0123456789"], then "|", then Queries [4] of those keys in
//     random order, each followed by its value. Only the queried values are
//     trained (no EOS), and each one is a separate evaluation problem whose
//     prompt holds everything before it, as Zoology scores it.
//
// HeldOut [500] instances (inputs for copy/reverse/sort, operand pairs in either
// order for addition, whole examples for mqar) are drawn from Seed for
// evaluation and never appear among the training examples. At most a tenth of
// any class of items (operand digit counts, sequence length) is held out, so
// training keeps most of the few short problems.
type TaskSpec struct {
	Kind           string
	MaxDigits      int
	MinLen, MaxLen int
	Alphabet       string
	Values         string
	Pairs, Queries int
	HeldOut        int
	Seed           uint64
}

// TaskKinds lists the kinds NewTask knows.
var TaskKinds = []string{"addition", "copy", "reverse", "sort", "mqar"}

// A Problem is one evaluation question: the prompt's tokens and the exact
// answer expected from greedy decoding (ending with EOS where the task trains one).
type Problem struct {
	Prompt, Answer []int32
}

// Correct reports whether predicted, the tokens generated after the prompt,
// starts with the whole answer. Tokens beyond it are ignored; since an answer
// ends with EOS, a prediction with extra digits before its EOS is wrong.
func (p Problem) Correct(predicted []int32) bool {
	return len(predicted) >= len(p.Answer) && slices.Equal(predicted[:len(p.Answer)], p.Answer)
}

// Predictor generates greedily from a prompt, at most maxNew tokens (it may stop
// after EOS; the EOS must be in what it returns).
type Predictor func(prompt []int32, maxNew int) []int32

// Accuracy is the fraction of problems answered exactly, asking predict for
// len(Answer) tokens each.
func Accuracy(problems []Problem, predict Predictor) float64 {
	if len(problems) == 0 {
		return 0
	}
	right := 0
	for _, p := range problems {
		if p.Correct(predict(p.Prompt, len(p.Answer))) {
			right++
		}
	}
	return float64(right) / float64(len(problems))
}

// A Task generates training examples and held-out problems.
type Task struct {
	spec    TaskSpec
	tok     *BPE
	gen     func(*rng) instance
	heldOut map[string]bool
	eval    []Document
}

// instance is one task item: its document and the key that identifies it for
// the held-out set.
type instance struct {
	key, class string
	doc        Document
}

// heldOutShare is the largest part of any class of items that is held out.
const heldOutShare = 0.1

func additionClass(da, db int) string {
	return strconv.Itoa(min(da, db)) + "," + strconv.Itoa(max(da, db))
}

func numDigits(x uint64) int { return len(strconv.FormatUint(x, 10)) }

// NewTask checks a spec, fills its defaults and draws the held-out set.
func NewTask(spec TaskSpec) (*Task, error) {
	s := spec
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	def(&s.HeldOut, 500)
	t := &Task{tok: NewByteTokenizer()}
	// classSize: the number of distinct items of each class (operand digit counts,
	// sequence length). At most heldOutShare of a class is held out, so training
	// still sees most short problems (there are only 55 sums of two digits).
	classSize := map[string]float64{}
	switch s.Kind {
	case "addition":
		def(&s.MaxDigits, 3)
		if s.MaxDigits < 1 || s.MaxDigits > 18 {
			return nil, fmt.Errorf("task addition: max_digits %d, want 1 to 18", s.MaxDigits)
		}
		count := func(d int) float64 {
			if d == 1 {
				return 10
			}
			return 9 * math.Pow10(d-1)
		}
		for da := 1; da <= s.MaxDigits; da++ {
			for db := da; db <= s.MaxDigits; db++ {
				n := count(da) * count(db)
				if da == db {
					n = count(da) * (count(da) + 1) / 2
				}
				classSize[additionClass(da, db)] = n
			}
		}
		t.gen = s.addition
	case "copy", "reverse", "sort":
		def(&s.MinLen, 1)
		def(&s.MaxLen, 8)
		if s.Alphabet == "" {
			s.Alphabet = "0123456789"
		}
		if s.MinLen < 1 || s.MaxLen < s.MinLen || s.MaxLen > 1<<16 {
			return nil, fmt.Errorf("task %s: lengths %d to %d, want 1 <= min_len <= max_len <= 65536", s.Kind, s.MinLen, s.MaxLen)
		}
		if err := checkSymbols(s.Kind, "alphabet", s.Alphabet); err != nil {
			return nil, err
		}
		for l := s.MinLen; l <= s.MaxLen; l++ {
			classSize[strconv.Itoa(l)] = math.Pow(float64(len(s.Alphabet)), float64(l))
		}
		t.gen = s.sequence
	case "mqar":
		def(&s.Pairs, 8)
		def(&s.Queries, 4)
		if s.Alphabet == "" {
			s.Alphabet = "abcdefghijklmnopqrstuvwxyz"
		}
		if s.Values == "" {
			s.Values = "0123456789"
		}
		if err := checkSymbols("mqar", "alphabet", s.Alphabet); err != nil {
			return nil, err
		}
		if err := checkSymbols("mqar", "values", s.Values); err != nil {
			return nil, err
		}
		if strings.ContainsAny(s.Alphabet, s.Values) {
			return nil, errors.New("task mqar: keys (alphabet) and values share symbols")
		}
		if s.Pairs < 1 || s.Pairs > len(s.Alphabet) {
			return nil, fmt.Errorf("task mqar: pairs %d, want 1 to %d (the number of keys)", s.Pairs, len(s.Alphabet))
		}
		if s.Queries < 1 || s.Queries > s.Pairs {
			return nil, fmt.Errorf("task mqar: queries %d, want 1 to pairs (%d)", s.Queries, s.Pairs)
		}
		// Distinct examples: ordered keys and their values, then ordered queries.
		n := math.Pow(float64(len(s.Values)), float64(s.Pairs))
		for i := 0; i < s.Pairs; i++ {
			n *= float64(len(s.Alphabet) - i)
		}
		for i := 0; i < s.Queries; i++ {
			n *= float64(s.Pairs - i)
		}
		classSize[""] = n
		t.gen = s.mqar
	default:
		return nil, fmt.Errorf("task: unknown kind %q (want one of %s)", s.Kind, strings.Join(TaskKinds, ", "))
	}
	limit := map[string]int{}
	total := 0.0
	for c, n := range classSize {
		limit[c] = int(math.Min(n*heldOutShare, 1<<40))
		total += float64(limit[c])
	}
	if s.HeldOut < 0 || float64(s.HeldOut) > total {
		return nil, fmt.Errorf("task %s: held_out %d, want 0 to %.0f (at most %g of each kind of item is held out)", s.Kind, s.HeldOut, total, heldOutShare)
	}
	t.spec = s
	t.heldOut = map[string]bool{}
	taken := map[string]int{}
	r := newRNG(s.Seed, stringSeed(s.Kind), stringSeed("held-out"))
	for tries := 0; len(t.eval) < s.HeldOut; tries++ {
		if tries > 1000*s.HeldOut+100000 {
			return nil, fmt.Errorf("task %s: could not draw %d distinct held-out items; lower held_out", s.Kind, s.HeldOut)
		}
		in := t.gen(r)
		if t.heldOut[in.key] || taken[in.class] >= limit[in.class] {
			continue
		}
		t.heldOut[in.key] = true
		taken[in.class]++
		t.eval = append(t.eval, in.doc)
	}
	return t, nil
}

func checkSymbols(kind, field, s string) error {
	if s == "" {
		return fmt.Errorf("task %s: %s is empty", kind, field)
	}
	seen := map[byte]bool{}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 || c == '=' || c == '|' || c == '+' || seen[c] {
			return fmt.Errorf("task %s: %s %q: symbols must be distinct ASCII other than = | +", kind, field, s)
		}
		seen[c] = true
	}
	return nil
}

// Spec returns the spec with its defaults filled in.
func (t *Task) Spec() TaskSpec { return t.spec }

// Tokenizer is the byte-level tokenizer the task is written in.
func (t *Task) Tokenizer() *BPE { return t.tok }

// Train returns the first n training examples of the task's stream (a fixed
// function of the seed: Train(m)[:n] == Train(n) for m >= n). Held-out items
// are skipped.
func (t *Task) Train(n int) []Example {
	out := make([]Example, 0, n)
	for _, d := range t.TrainDocuments(n) {
		out = append(out, Tokenize(t.tok, d))
	}
	return out
}

// TrainDocuments is Train before tokenizing.
func (t *Task) TrainDocuments(n int) []Document {
	r := newRNG(t.spec.Seed, stringSeed(t.spec.Kind), stringSeed("train"))
	out := make([]Document, 0, n)
	for len(out) < n {
		in := t.gen(r)
		if !t.heldOut[in.key] {
			out = append(out, in.doc)
		}
	}
	return out
}

// EvalDocuments returns the held-out items as documents (for a validation loss).
func (t *Task) EvalDocuments() []Document { return slices.Clone(t.eval) }

// EvalExamples returns the held-out items tokenized.
func (t *Task) EvalExamples() []Example {
	out := make([]Example, len(t.eval))
	for i, d := range t.eval {
		out[i] = Tokenize(t.tok, d)
	}
	return out
}

// Eval returns the held-out problems: one per held-out item, or, for mqar, one
// per query.
func (t *Task) Eval() []Problem {
	var out []Problem
	for _, d := range t.eval {
		out = append(out, Problems(t.tok, d)...)
	}
	return out
}

// Accuracy is the exact-match accuracy of predict on Eval().
func (t *Task) Accuracy(predict Predictor) float64 { return Accuracy(t.Eval(), predict) }

// Problems turns a document into one problem per trained segment: the prompt
// is everything before the segment, the answer the segment (plus EOS when it is
// the document's last segment, as Tokenize trains it).
func Problems(tok Tokenizer, d Document) []Problem {
	var out []Problem
	var prefix []int32
	for i, s := range d.Segments {
		ids := tok.Encode(s.Text)
		if s.Loss {
			ans := slices.Clone(ids)
			if i == len(d.Segments)-1 && tok.Special().EOS >= 0 {
				ans = append(ans, tok.Special().EOS)
			}
			out = append(out, Problem{Prompt: slices.Clone(prefix), Answer: ans})
		}
		prefix = append(prefix, ids...)
	}
	return out
}

// digits draws a number with 1..max digits, the count uniform first.
func digits(r *rng, max int) uint64 {
	d := 1 + r.intn(max)
	if d == 1 {
		return uint64(r.intn(10))
	}
	lo := uint64(math.Pow10(d - 1))
	return lo + uint64(r.intn(int(9*lo)))
}

func (s TaskSpec) addition(r *rng) instance {
	a, b := digits(r, s.MaxDigits), digits(r, s.MaxDigits)
	lo, hi := min(a, b), max(a, b)
	prompt := strconv.FormatUint(a, 10) + "+" + strconv.FormatUint(b, 10) + "="
	return instance{
		key:   strconv.FormatUint(lo, 10) + "+" + strconv.FormatUint(hi, 10),
		class: additionClass(numDigits(a), numDigits(b)),
		doc:   Document{Segments: []Segment{{Text: prompt}, {Text: strconv.FormatUint(a+b, 10), Loss: true}}},
	}
}

func (s TaskSpec) sequence(r *rng) instance {
	n := s.MinLen + r.intn(s.MaxLen-s.MinLen+1)
	in := make([]byte, n)
	for i := range in {
		in[i] = s.Alphabet[r.intn(len(s.Alphabet))]
	}
	out := slices.Clone(in)
	switch s.Kind {
	case "reverse":
		slices.Reverse(out)
	case "sort":
		slices.Sort(out)
	}
	return instance{
		key:   string(in),
		class: strconv.Itoa(n),
		doc:   Document{Segments: []Segment{{Text: string(in) + "="}, {Text: string(out), Loss: true}}},
	}
}

func (s TaskSpec) mqar(r *rng) instance {
	keys := r.perm(len(s.Alphabet))[:s.Pairs]
	vals := make([]byte, s.Pairs)
	var b strings.Builder
	for i, k := range keys {
		vals[i] = s.Values[r.intn(len(s.Values))]
		b.WriteByte(s.Alphabet[k])
		b.WriteByte(vals[i])
	}
	b.WriteByte('|')
	segs := []Segment{{Text: b.String()}}
	for _, q := range r.perm(s.Pairs)[:s.Queries] {
		segs = append(segs, Segment{Text: string(s.Alphabet[keys[q]])}, Segment{Text: string(vals[q]), Loss: true})
	}
	// A final empty segment without loss: the EOS that Tokenize appends is not
	// trained, and the last answer has no EOS, like the others.
	segs = append(segs, Segment{})
	var key strings.Builder
	for _, sg := range segs {
		key.WriteString(sg.Text)
	}
	return instance{key: key.String(), doc: Document{Segments: segs}}
}
