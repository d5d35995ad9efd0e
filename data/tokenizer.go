package data

import (
	"container/heap"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Tokenizer turns text into token ids and back.
//
// Encode never adds BOS or EOS by itself (Tokenize and the packer place EOS);
// Decode(Encode(s)) == s for every string, valid UTF-8 or not.
type Tokenizer interface {
	Encode(text string) []int32
	Decode(ids []int32) string
	// VocabSize is one more than the largest id Encode can return.
	VocabSize() int
	// Special returns the ids of BOS, EOS and PAD (-1 for one the tokenizer lacks).
	Special() SpecialTokens
}

// SpecialTokens holds the ids of the special tokens; -1 means absent.
type SpecialTokens struct {
	BOS, EOS, PAD int32
}

// Default special-token texts of the tokenizers this package builds.
const (
	DefaultBOS = "<|bos|>"
	DefaultEOS = "<|eos|>"
	DefaultPAD = "<|pad|>"
)

// The byte-level tokenizer's ids: 0-255 are the bytes, then these.
const (
	ByteBOS int32 = 256
	ByteEOS int32 = 257
	BytePAD int32 = 258
)

// BPE is a byte-level byte-pair-encoding tokenizer, the kind of GPT-2, Llama 3
// and Qwen2. With no merges it is the plain byte-level tokenizer (NewByteTokenizer).
// It is safe for concurrent use.
type BPE struct {
	tokens  []string // id -> raw bytes (or an added token's text); "" for unused ids
	isAdded []bool   // id -> true for added tokens (decoded verbatim)
	byBytes map[string]int32
	byteID  [256]int32 // single-byte ids, -1 when missing
	merges  []bpeMerge
	ranks   map[uint64]mergeRank // key: pairKey(left, right)
	added   []addedToken         // longest first, for leftmost-longest matching
	special SpecialTokens
	unk     int32

	split          splitPattern
	addPrefixSpace bool
	ignoreMerges   bool

	cache wordCache

	// The JSON sections kept verbatim from a loaded file, so saving writes back
	// what was read.
	raw *rawSections
}

type bpeMerge struct{ left, right, id int32 }

func pairKey(l, r int32) uint64 { return uint64(uint32(l))<<32 | uint64(uint32(r)) }

// wordCache remembers the merged ids of frequent pre-tokens; text repeats its
// words, and a hit skips all the merging.
type wordCache struct {
	mu sync.RWMutex
	m  map[string][]int32
}

const wordCacheMax = 1 << 16

func (c *wordCache) get(w string) ([]int32, bool) {
	c.mu.RLock()
	ids, ok := c.m[w]
	c.mu.RUnlock()
	return ids, ok
}

func (c *wordCache) put(w string, ids []int32) {
	c.mu.Lock()
	if len(c.m) >= wordCacheMax {
		clear(c.m)
	}
	c.m[w] = ids
	c.mu.Unlock()
}

type mergeRank struct{ rank, id int32 }

type addedToken struct {
	id      int32
	content string
	special bool
}

var _ Tokenizer = (*BPE)(nil)

// NewByteTokenizer returns the byte-level tokenizer: ids 0-255 are the bytes, then
// ByteBOS, ByteEOS and BytePAD (written DefaultBOS, DefaultEOS, DefaultPAD), 259
// ids in all. It is a BPE without merges, so it saves as a tokenizer.json too.
func NewByteTokenizer() *BPE {
	t, err := newBPE(nil, []string{DefaultBOS, DefaultEOS, DefaultPAD})
	if err != nil {
		panic(err)
	}
	return t
}

// newBPE builds a tokenizer with ids 0-255 for the bytes, the specials next (BOS,
// EOS, PAD in that order; "" skips one) and then one id per new merged token.
func newBPE(merges [][2]int32, specials []string) (*BPE, error) {
	t := &BPE{unk: -1, split: splitGPT2, special: SpecialTokens{-1, -1, -1}}
	for b := 0; b < 256; b++ {
		t.tokens = append(t.tokens, string([]byte{byte(b)}))
		t.isAdded = append(t.isAdded, false)
	}
	ids := []*int32{&t.special.BOS, &t.special.EOS, &t.special.PAD}
	for i, s := range specials {
		if s == "" {
			continue
		}
		id := int32(len(t.tokens))
		t.tokens = append(t.tokens, s)
		t.isAdded = append(t.isAdded, true)
		t.added = append(t.added, addedToken{id: id, content: s, special: true})
		if i < len(ids) {
			*ids[i] = id
		}
	}
	byContent := map[string]int32{}
	for id, s := range t.tokens {
		if !t.isAdded[id] {
			byContent[s] = int32(id)
		}
	}
	for _, m := range merges {
		s := t.tokens[m[0]] + t.tokens[m[1]]
		id, ok := byContent[s]
		if !ok {
			id = int32(len(t.tokens))
			t.tokens = append(t.tokens, s)
			t.isAdded = append(t.isAdded, false)
			byContent[s] = id
		}
		t.merges = append(t.merges, bpeMerge{m[0], m[1], id})
	}
	t.index()
	return t, nil
}

// index builds the lookup tables from tokens, isAdded, merges and added.
func (t *BPE) index() {
	t.byBytes = make(map[string]int32, len(t.tokens))
	for i := range t.byteID {
		t.byteID[i] = -1
	}
	for id, s := range t.tokens {
		if t.isAdded[id] || s == "" {
			continue
		}
		if _, dup := t.byBytes[s]; !dup {
			t.byBytes[s] = int32(id)
		}
		if len(s) == 1 && t.byteID[s[0]] < 0 {
			t.byteID[s[0]] = int32(id)
		}
	}
	t.ranks = make(map[uint64]mergeRank, len(t.merges))
	t.cache = wordCache{m: map[string][]int32{}}
	for r, m := range t.merges {
		k := pairKey(m.left, m.right)
		if _, dup := t.ranks[k]; !dup {
			t.ranks[k] = mergeRank{int32(r), m.id}
		}
	}
	sort.SliceStable(t.added, func(i, j int) bool { return len(t.added[i].content) > len(t.added[j].content) })
}

// VocabSize implements Tokenizer.
func (t *BPE) VocabSize() int { return len(t.tokens) }

// Special implements Tokenizer.
func (t *BPE) Special() SpecialTokens { return t.special }

// SetSpecial sets which ids are BOS, EOS and PAD (-1 for none). A tokenizer.json
// does not say which added token plays which role, so LoadTokenizer guesses from
// their texts; a caller that knows better says so here.
func (t *BPE) SetSpecial(s SpecialTokens) {
	t.special = s
}

// NumMerges is the number of merge rules.
func (t *BPE) NumMerges() int { return len(t.merges) }

// Token returns the text of one id: an added token's text, or the raw bytes of a
// regular token. It returns "" for an id out of range.
func (t *BPE) Token(id int32) string {
	if id < 0 || int(id) >= len(t.tokens) {
		return ""
	}
	return t.tokens[id]
}

// Encode implements Tokenizer. Added tokens (the specials among them) written in
// the text are encoded as themselves, as Hugging Face tokenizers do.
func (t *BPE) Encode(text string) []int32 {
	n := len(text)/3 + 1
	if len(t.merges) == 0 {
		n = len(text)
	}
	out := make([]int32, 0, n)
	for len(text) > 0 {
		pos, tok := t.findAdded(text)
		if pos < 0 {
			out = t.encodePlain(out, text)
			break
		}
		out = t.encodePlain(out, text[:pos])
		out = append(out, tok.id)
		text = text[pos+len(tok.content):]
	}
	return out
}

// findAdded returns the leftmost added token in s (the longest at that place).
func (t *BPE) findAdded(s string) (int, addedToken) {
	best, bestTok := -1, addedToken{}
	for _, a := range t.added {
		if a.content == "" {
			continue
		}
		limit := s
		if best >= 0 {
			limit = s[:min(len(s), best+len(a.content))]
		}
		if p := strings.Index(limit, a.content); p >= 0 && (best < 0 || p < best) {
			best, bestTok = p, a
		}
	}
	return best, bestTok
}

func (t *BPE) encodePlain(out []int32, text string) []int32 {
	if text == "" {
		return out
	}
	if t.addPrefixSpace && text[0] != ' ' {
		text = " " + text
	}
	if len(t.merges) == 0 && !t.ignoreMerges {
		for i := 0; i < len(text); i++ {
			out = t.appendByte(out, text[i])
		}
		return out
	}
	var sym []int32
	splitText(t.split, text, func(word string) {
		if t.ignoreMerges {
			if id, ok := t.byBytes[word]; ok {
				out = append(out, id)
				return
			}
		}
		if ids, ok := t.cache.get(word); ok {
			out = append(out, ids...)
			return
		}
		sym = sym[:0]
		for i := 0; i < len(word); i++ {
			sym = t.appendByte(sym, word[i])
		}
		var ids []int32
		if len(sym) <= 32 {
			ids = slices.Clone(t.mergeShort(sym))
		} else {
			ids = t.mergeWord(sym)
		}
		if len(word) <= 64 {
			t.cache.put(word, ids)
		}
		out = append(out, ids...)
	})
	return out
}

func (t *BPE) appendByte(out []int32, b byte) []int32 {
	if id := t.byteID[b]; id >= 0 {
		return append(out, id)
	}
	if t.unk >= 0 {
		return append(out, t.unk)
	}
	return out // as Hugging Face does without an unk token: the byte is dropped
}

// mergeShort is mergeWord for short words, in place: scan for the best pair,
// merge it, repeat. Quadratic, but without allocations.
func (t *BPE) mergeShort(ids []int32) []int32 {
	for len(ids) > 1 {
		best, bestRank, bestID := -1, int32(0), int32(0)
		for i := 0; i+1 < len(ids); i++ {
			if m, ok := t.ranks[pairKey(ids[i], ids[i+1])]; ok && (best < 0 || m.rank < bestRank) {
				best, bestRank, bestID = i, m.rank, m.id
			}
		}
		if best < 0 {
			break
		}
		ids[best] = bestID
		ids = append(ids[:best+1], ids[best+2:]...)
	}
	return ids
}

// mergeWord applies the merges to one pre-token: repeatedly the pair of lowest
// rank, leftmost first. A heap over a linked list keeps long words O(n log n).
func (t *BPE) mergeWord(sym []int32) []int32 {
	n := len(sym)
	if n < 2 {
		return append([]int32(nil), sym...)
	}
	ids := append([]int32(nil), sym...)
	next := make([]int, n)
	prev := make([]int, n)
	for i := range ids {
		next[i], prev[i] = i+1, i-1
	}
	next[n-1] = -1
	h := &pairHeap{}
	push := func(i int) {
		j := next[i]
		if j < 0 {
			return
		}
		if m, ok := t.ranks[pairKey(ids[i], ids[j])]; ok {
			heap.Push(h, pairCand{rank: m.rank, pos: i, left: ids[i], right: ids[j]})
		}
	}
	for i := 0; i < n-1; i++ {
		push(i)
	}
	dead := make([]bool, n)
	for h.Len() > 0 {
		c := heap.Pop(h).(pairCand)
		i := c.pos
		if dead[i] || ids[i] != c.left {
			continue
		}
		j := next[i]
		if j < 0 || ids[j] != c.right {
			continue
		}
		ids[i] = t.ranks[pairKey(c.left, c.right)].id
		dead[j] = true
		next[i] = next[j]
		if next[j] >= 0 {
			prev[next[j]] = i
		}
		if prev[i] >= 0 {
			push(prev[i])
		}
		push(i)
	}
	out := make([]int32, 0, n)
	for i := 0; i >= 0; i = next[i] {
		out = append(out, ids[i])
	}
	return out
}

type pairCand struct {
	rank        int32
	pos         int
	left, right int32
}

type pairHeap []pairCand

func (h pairHeap) Len() int { return len(h) }
func (h pairHeap) Less(i, j int) bool {
	if h[i].rank != h[j].rank {
		return h[i].rank < h[j].rank
	}
	return h[i].pos < h[j].pos
}
func (h pairHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pairHeap) Push(x any)   { *h = append(*h, x.(pairCand)) }
func (h *pairHeap) Pop() (x any) { x, *h = (*h)[len(*h)-1], (*h)[:len(*h)-1]; return x }

// Decode implements Tokenizer. Ids out of range decode to nothing.
func (t *BPE) Decode(ids []int32) string {
	var b strings.Builder
	for _, id := range ids {
		if id >= 0 && int(id) < len(t.tokens) {
			b.WriteString(t.tokens[id])
		}
	}
	return b.String()
}
