package data

import (
	"container/heap"
	"fmt"
	"sort"
)

// BPEOptions tunes TrainBPE. The zero value is usable.
type BPEOptions struct {
	// MinFrequency stops training when the most frequent pair occurs fewer times
	// (default 2).
	MinFrequency int
	// BOS, EOS and PAD are the special tokens' texts (defaults DefaultBOS,
	// DefaultEOS, DefaultPAD). They get ids 256, 257, 258.
	BOS, EOS, PAD string
}

// TrainBPE learns a byte-level BPE from texts: GPT-2 pre-tokenization, then
// merges of the most frequent adjacent pair until the vocabulary has vocabSize
// ids (256 bytes + 3 specials + merges) or no pair occurs MinFrequency times.
// Ties go to the pair with the smaller ids, so the result depends only on the
// texts and options. Special-token texts inside texts are not learned from.
func TrainBPE(texts []string, vocabSize int, opts BPEOptions) (*BPE, error) {
	if opts.MinFrequency <= 0 {
		opts.MinFrequency = 2
	}
	specials := []string{opts.BOS, opts.EOS, opts.PAD}
	defaults := []string{DefaultBOS, DefaultEOS, DefaultPAD}
	for i := range specials {
		if specials[i] == "" {
			specials[i] = defaults[i]
		}
	}
	if specials[0] == specials[1] || specials[0] == specials[2] || specials[1] == specials[2] {
		return nil, fmt.Errorf("TrainBPE: special tokens must differ: %q", specials)
	}
	if vocabSize < 256+len(specials) {
		return nil, fmt.Errorf("TrainBPE: vocabSize %d is below the %d ids of bytes and specials", vocabSize, 256+len(specials))
	}
	base, err := newBPE(nil, specials)
	if err != nil {
		return nil, err
	}

	// Count pre-tokens (words), never across special tokens.
	counts := map[string]int64{}
	for _, text := range texts {
		for len(text) > 0 {
			pos, tok := base.findAdded(text)
			piece := text
			if pos >= 0 {
				piece = text[:pos]
			}
			splitText(splitGPT2, piece, func(w string) { counts[w]++ })
			if pos < 0 {
				break
			}
			text = text[pos+len(tok.content):]
		}
	}
	words := make([]string, 0, len(counts))
	for w := range counts {
		words = append(words, w)
	}
	sort.Strings(words)
	syms := make([][]int32, len(words))
	freq := make([]int64, len(words))
	for i, w := range words {
		freq[i] = counts[w]
		s := make([]int32, len(w))
		for k := 0; k < len(w); k++ {
			s[k] = int32(w[k])
		}
		syms[i] = s
	}

	tr := &bpeTrainer{
		pairs: map[[2]int32]int64{},
		where: map[[2]int32][]int32{},
	}
	for wi, s := range syms {
		for k := 0; k+1 < len(s); k++ {
			p := [2]int32{s[k], s[k+1]}
			tr.pairs[p] += freq[wi]
			tr.addWhere(p, int32(wi))
		}
	}
	for p, c := range tr.pairs {
		heap.Push(&tr.queue, pairCount{p, c})
	}

	// Token contents, to reuse an id when two merges give the same bytes.
	contents := append([]string(nil), base.tokens...)
	byContent := map[string]int32{}
	for id, s := range contents {
		if !base.isAdded[id] {
			byContent[s] = int32(id)
		}
	}
	nextID := int32(len(contents))
	var merges [][2]int32
	for int(nextID) < vocabSize && tr.queue.Len() > 0 {
		top := heap.Pop(&tr.queue).(pairCount)
		if cur := tr.pairs[top.pair]; cur != top.count {
			if cur > 0 {
				heap.Push(&tr.queue, pairCount{top.pair, cur})
			}
			continue
		}
		if top.count < int64(opts.MinFrequency) {
			break
		}
		a, b := top.pair[0], top.pair[1]
		merged := contents[a] + contents[b]
		id, seen := byContent[merged]
		if !seen {
			id = nextID
			nextID++
			contents = append(contents, merged)
			byContent[merged] = id
		}
		merges = append(merges, top.pair)
		tr.apply(top.pair, id, syms, freq)
	}
	return newBPE(merges, specials)
}

type bpeTrainer struct {
	pairs map[[2]int32]int64
	where map[[2]int32][]int32 // words that contain (or once contained) the pair
	queue pairQueue
}

func (tr *bpeTrainer) addWhere(p [2]int32, wi int32) {
	ws := tr.where[p]
	if n := len(ws); n > 0 && ws[n-1] == wi {
		return
	}
	tr.where[p] = append(ws, wi)
}

// apply merges pair into id in every word that holds it and updates the counts.
func (tr *bpeTrainer) apply(pair [2]int32, id int32, syms [][]int32, freq []int64) {
	changed := map[[2]int32]bool{}
	ws := tr.where[pair]
	delete(tr.where, pair)
	// A word may be listed twice (appended again after an earlier merge): visit once.
	sort.Slice(ws, func(i, j int) bool { return ws[i] < ws[j] })
	for k, wi := range ws {
		if k > 0 && ws[k-1] == wi {
			continue
		}
		s := syms[wi]
		has := false
		for i := 0; i+1 < len(s); i++ {
			if s[i] == pair[0] && s[i+1] == pair[1] {
				has = true
				break
			}
		}
		if !has {
			continue
		}
		f := freq[wi]
		for i := 0; i+1 < len(s); i++ {
			p := [2]int32{s[i], s[i+1]}
			tr.pairs[p] -= f
			changed[p] = true
		}
		out := s[:0]
		for i := 0; i < len(s); i++ {
			if i+1 < len(s) && s[i] == pair[0] && s[i+1] == pair[1] {
				out = append(out, id)
				i++
				continue
			}
			out = append(out, s[i])
		}
		syms[wi] = out
		for i := 0; i+1 < len(out); i++ {
			p := [2]int32{out[i], out[i+1]}
			tr.pairs[p] += f
			changed[p] = true
			if p[0] == id || p[1] == id {
				tr.addWhere(p, wi)
			}
		}
	}
	delete(tr.pairs, pair)
	// Push the new counts in a fixed order so that the queue, and so the result,
	// does not depend on map iteration.
	keys := make([][2]int32, 0, len(changed))
	for p := range changed {
		keys = append(keys, p)
	}
	sort.Slice(keys, func(i, j int) bool { return pairLess(keys[i], keys[j]) })
	for _, p := range keys {
		if c := tr.pairs[p]; c > 0 {
			heap.Push(&tr.queue, pairCount{p, c})
		} else {
			delete(tr.pairs, p)
		}
	}
}

func pairLess(a, b [2]int32) bool {
	if a[0] != b[0] {
		return a[0] < b[0]
	}
	return a[1] < b[1]
}

type pairCount struct {
	pair  [2]int32
	count int64
}

// pairQueue pops the highest count first, then the smallest pair.
type pairQueue []pairCount

func (q pairQueue) Len() int { return len(q) }
func (q pairQueue) Less(i, j int) bool {
	if q[i].count != q[j].count {
		return q[i].count > q[j].count
	}
	return pairLess(q[i].pair, q[j].pair)
}
func (q pairQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *pairQueue) Push(x any)   { *q = append(*q, x.(pairCount)) }
func (q *pairQueue) Pop() (x any) { x, *q = (*q)[len(*q)-1], (*q)[:len(*q)-1]; return x }
