package data

import (
	"errors"
	"fmt"
	"sort"
)

// Packing says how examples become rows of fixed length.
type Packing struct {
	// SeqLen is L: a row is L+1 tokens, giving L inputs (tokens 0..L-1) and L
	// targets (tokens 1..L).
	SeqLen int
	// EOS separates examples; PAD fills the end of the last row (or, with
	// PadEach, of every row). Padding is never a target.
	EOS, PAD int32
	// PadEach puts each example in a row of its own (cut at L+1 tokens) instead
	// of concatenating them; fit for short tasks whose examples must not share
	// a row.
	PadEach bool
}

// A Sequence is one packed row of L+1 tokens. Mask[j] says whether Tokens[j]
// counts as a target; Mask[0] is always false (the first token is only an input).
type Sequence struct {
	Tokens []int32
	Mask   []bool
}

func (p Packing) check() error {
	if p.SeqLen < 1 {
		return fmt.Errorf("packing: sequence length %d, want >= 1", p.SeqLen)
	}
	if p.EOS < 0 || p.PAD < 0 {
		return errors.New("packing: the tokenizer needs EOS and PAD ids")
	}
	return nil
}

// stream lays the non-empty examples end to end in a given order, each followed by EOS unless
// it already ends with one (the EOS takes the loss flag of the example's last
// token), and cuts it into rows of L+1 tokens that overlap by one: row k is
// stream[kL : kL+L+1], so every token after the first is a target exactly once.
type stream struct {
	ex     []Example
	order  []int
	p      Packing
	starts []int64 // starts[i]: offset of ex[order[i]] in the stream; last = total
}

func exampleLen(e Example, eos int32) int64 {
	n := int64(len(e.Tokens))
	if n > 0 && e.Tokens[n-1] != eos {
		n++
	}
	return n
}

func newStream(ex []Example, order []int, p Packing) *stream {
	kept := order[:0:0]
	for _, j := range order {
		if len(ex[j].Tokens) > 0 {
			kept = append(kept, j)
		}
	}
	order = kept
	s := &stream{ex: ex, order: order, p: p, starts: make([]int64, len(order)+1)}
	for i, j := range order {
		s.starts[i+1] = s.starts[i] + exampleLen(ex[j], p.EOS)
	}
	return s
}

func (s *stream) total() int64 { return s.starts[len(s.starts)-1] }

// rows is the number of rows the stream gives.
func (s *stream) rows() int {
	if s.p.PadEach {
		return len(s.order)
	}
	t, l := s.total(), int64(s.p.SeqLen)
	if t < 2 {
		return 0
	}
	return int((t - 1 + l - 1) / l)
}

// token returns stream position pos of example i (in stream order).
func (s *stream) token(i int, pos int64) (int32, bool) {
	e := s.ex[s.order[i]]
	k := pos - s.starts[i]
	if k < int64(len(e.Tokens)) {
		return e.Tokens[k], e.Mask[k]
	}
	return s.p.EOS, e.Mask[len(e.Mask)-1]
}

// row fills tokens and mask (length L+1) with row k.
func (s *stream) row(k int, tokens []int32, mask []bool) {
	if s.p.PadEach {
		s.padRow(k, tokens, mask)
		return
	}
	l := int64(s.p.SeqLen)
	start := int64(k) * l
	i := sort.Search(len(s.order), func(i int) bool { return s.starts[i+1] > start })
	for j := range tokens {
		pos := start + int64(j)
		for i < len(s.order) && pos >= s.starts[i+1] {
			i++
		}
		if i >= len(s.order) {
			tokens[j], mask[j] = s.p.PAD, false
			continue
		}
		tokens[j], mask[j] = s.token(i, pos)
	}
	mask[0] = false
}

func (s *stream) padRow(k int, tokens []int32, mask []bool) {
	e := s.ex[s.order[k]]
	n := len(e.Tokens)
	for j := range tokens {
		switch {
		case j < n:
			tokens[j], mask[j] = e.Tokens[j], e.Mask[j]
		case j == n && e.Tokens[n-1] != s.p.EOS:
			tokens[j], mask[j] = s.p.EOS, e.Mask[n-1]
		default:
			tokens[j], mask[j] = s.p.PAD, false
		}
	}
	mask[0] = false
}

func checkExamples(ex []Example) error {
	for i, e := range ex {
		if len(e.Mask) != len(e.Tokens) {
			return fmt.Errorf("example %d: %d tokens but %d mask entries", i, len(e.Tokens), len(e.Mask))
		}
	}
	return nil
}

// Pack packs examples in the given order (see Packing).
func Pack(examples []Example, p Packing) ([]Sequence, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	if err := checkExamples(examples); err != nil {
		return nil, err
	}
	order := make([]int, len(examples))
	for i := range order {
		order[i] = i
	}
	s := newStream(examples, order, p)
	out := make([]Sequence, s.rows())
	for k := range out {
		out[k] = Sequence{Tokens: make([]int32, p.SeqLen+1), Mask: make([]bool, p.SeqLen+1)}
		s.row(k, out[k].Tokens, out[k].Mask)
	}
	return out, nil
}

// Position is where a Batcher is in its data: the next row is row Index of
// epoch Epoch, whose example order Seed and Epoch decide. It is all a resumed
// run needs to continue with the same batches; Data fingerprints the examples
// and packing so that a resume on different data is an error, not a silent
// divergence.
type Position struct {
	Seed  uint64 `json:"seed"`
	Epoch int    `json:"epoch"`
	Index int    `json:"index"`
	Data  uint64 `json:"data,string"`
}

// A Batch is BatchSize rows of SeqLen, row-major: Inputs[r*SeqLen+j] predicts
// Targets[r*SeqLen+j], which counts in the loss where Mask is 1.
type Batch struct {
	Size, SeqLen    int
	Inputs, Targets []int32
	Mask            []float32
}

// BatchConfig configures a Batcher.
type BatchConfig struct {
	Packing
	BatchSize int
	Seed      uint64
	// NoShuffle keeps the examples in their order every epoch (for evaluation).
	NoShuffle bool
}

// A Batcher cuts examples into batches forever: each epoch shuffles the examples
// (a permutation drawn from Seed and the epoch number), packs them, and serves the
// rows in order; a batch that reaches the end of an epoch continues into the
// next. Position and SetPosition make it resumable.
type Batcher struct {
	ex     []Example
	cfg    BatchConfig
	pos    Position
	stream *stream
	rows   int
	fp     uint64
}

// NewBatcher checks the configuration and starts at epoch 0, row 0.
func NewBatcher(examples []Example, cfg BatchConfig) (*Batcher, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.BatchSize < 1 {
		return nil, fmt.Errorf("batcher: batch size %d, want >= 1", cfg.BatchSize)
	}
	if err := checkExamples(examples); err != nil {
		return nil, err
	}
	b := &Batcher{ex: examples, cfg: cfg}
	b.fp = b.fingerprint()
	b.pos = Position{Seed: cfg.Seed, Data: b.fp}
	b.startEpoch()
	if b.rows == 0 {
		return nil, errors.New("batcher: the examples give no rows (no data, or one token in all)")
	}
	return b, nil
}

func (b *Batcher) fingerprint() uint64 {
	h := newRNG(uint64(b.cfg.SeqLen), uint64(b.cfg.EOS), uint64(b.cfg.PAD), uint64(len(b.ex)))
	if b.cfg.PadEach {
		h = newRNG(h.next(), 1)
	}
	if b.cfg.NoShuffle {
		h = newRNG(h.next(), 2)
	}
	x := h.next()
	for _, e := range b.ex {
		x = mix64(x ^ uint64(len(e.Tokens)))
		for i, t := range e.Tokens {
			m := uint64(0)
			if e.Mask[i] {
				m = 1 << 40
			}
			x = mix64(x ^ uint64(uint32(t)) ^ m)
		}
	}
	return x
}

func (b *Batcher) startEpoch() {
	var order []int
	if b.cfg.NoShuffle {
		order = make([]int, len(b.ex))
		for i := range order {
			order[i] = i
		}
	} else {
		order = newRNG(b.pos.Seed, stringSeed("epoch"), uint64(b.pos.Epoch)).perm(len(b.ex))
	}
	b.stream = newStream(b.ex, order, b.cfg.Packing)
	b.rows = b.stream.rows()
}

// RowsPerEpoch is the number of rows in one pass over the examples.
func (b *Batcher) RowsPerEpoch() int { return b.rows }

// Position returns where the next batch starts.
func (b *Batcher) Position() Position { return b.pos }

// SetPosition moves to p, as saved by Position (its seed included).
func (b *Batcher) SetPosition(p Position) error {
	if p.Data != 0 && p.Data != b.fp {
		return fmt.Errorf("batcher: position was saved for other data (fingerprint %x, this data %x)", p.Data, b.fp)
	}
	if p.Epoch < 0 || p.Index < 0 || p.Index > b.rows {
		return fmt.Errorf("batcher: position epoch %d index %d out of range (%d rows per epoch)", p.Epoch, p.Index, b.rows)
	}
	p.Data = b.fp
	b.pos = p
	b.startEpoch()
	return nil
}

// Next returns the next batch and advances the position.
func (b *Batcher) Next() Batch {
	l := b.cfg.SeqLen
	bt := newBatch(b.cfg.BatchSize, l)
	tokens := make([]int32, l+1)
	mask := make([]bool, l+1)
	for r := 0; r < bt.Size; r++ {
		if b.pos.Index >= b.rows {
			b.pos.Epoch++
			b.pos.Index = 0
			b.startEpoch()
		}
		b.stream.row(b.pos.Index, tokens, mask)
		bt.setRow(r, tokens, mask)
		b.pos.Index++
	}
	return bt
}

// OnePass returns every row of one epoch once, unshuffled, in batches of
// BatchSize (the last may be smaller); it does not move the position. For
// validation and test sets.
func (b *Batcher) OnePass() []Batch {
	order := make([]int, len(b.ex))
	for i := range order {
		order[i] = i
	}
	s := newStream(b.ex, order, b.cfg.Packing)
	n, l := s.rows(), b.cfg.SeqLen
	tokens := make([]int32, l+1)
	mask := make([]bool, l+1)
	var out []Batch
	for start := 0; start < n; start += b.cfg.BatchSize {
		bt := newBatch(min(b.cfg.BatchSize, n-start), l)
		for r := 0; r < bt.Size; r++ {
			s.row(start+r, tokens, mask)
			bt.setRow(r, tokens, mask)
		}
		out = append(out, bt)
	}
	return out
}

func newBatch(size, l int) Batch {
	return Batch{Size: size, SeqLen: l,
		Inputs: make([]int32, size*l), Targets: make([]int32, size*l), Mask: make([]float32, size*l)}
}

func (bt *Batch) setRow(r int, tokens []int32, mask []bool) {
	l := bt.SeqLen
	copy(bt.Inputs[r*l:(r+1)*l], tokens[:l])
	copy(bt.Targets[r*l:(r+1)*l], tokens[1:])
	for j := 0; j < l; j++ {
		m := float32(0)
		if mask[j+1] {
			m = 1
		}
		bt.Mask[r*l+j] = m
	}
}
