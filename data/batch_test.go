package data

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testEOS, testPAD = 900, 901

// randomExamples makes n examples of 0..maxLen tokens (some already ending in
// EOS, some empty) with random masks.
func randomExamples(seed uint64, n, maxLen int) []Example {
	r := newRNG(seed)
	out := make([]Example, n)
	for i := range out {
		l := r.intn(maxLen + 1)
		for j := 0; j < l; j++ {
			tok := int32(r.intn(50))
			if j == l-1 && r.intn(4) == 0 {
				tok = testEOS
			}
			out[i].Tokens = append(out[i].Tokens, tok)
			out[i].Mask = append(out[i].Mask, r.intn(3) > 0)
		}
	}
	return out
}

// referenceStream is the packing written out naively: examples one after the
// other, an EOS after each that does not end with one.
func referenceStream(ex []Example) ([]int32, []bool) {
	var toks []int32
	var mask []bool
	for _, e := range ex {
		if len(e.Tokens) == 0 {
			continue
		}
		toks = append(toks, e.Tokens...)
		mask = append(mask, e.Mask...)
		if e.Tokens[len(e.Tokens)-1] != testEOS {
			toks = append(toks, testEOS)
			mask = append(mask, e.Mask[len(e.Mask)-1])
		}
	}
	return toks, mask
}

func TestPackMatchesTheNaiveStream(t *testing.T) {
	for _, l := range []int{1, 2, 7, 33} {
		for _, seed := range []uint64{1, 2, 3} {
			ex := randomExamples(seed, 40, 12)
			seqs, err := Pack(ex, Packing{SeqLen: l, EOS: testEOS, PAD: testPAD})
			require.NoError(t, err)
			toks, mask := referenceStream(ex)
			wantRows := (len(toks) - 1 + l - 1) / l
			require.Len(t, seqs, wantRows)
			for k, s := range seqs {
				require.Len(t, s.Tokens, l+1)
				require.Len(t, s.Mask, l+1)
				assert.False(t, s.Mask[0], "the first token is never a target")
				for j := 0; j <= l; j++ {
					pos := k*l + j
					if pos < len(toks) {
						assert.Equal(t, toks[pos], s.Tokens[j])
						if j > 0 {
							assert.Equal(t, mask[pos], s.Mask[j], "row %d col %d", k, j)
						}
					} else {
						assert.Equal(t, int32(testPAD), s.Tokens[j])
						assert.False(t, s.Mask[j])
					}
				}
			}
			// Every target position of the stream is a target in exactly one row.
			targets := 0
			for _, s := range seqs {
				for _, m := range s.Mask {
					if m {
						targets++
					}
				}
			}
			want := 0
			for _, m := range mask[1:] {
				if m {
					want++
				}
			}
			assert.Equal(t, want, targets)
		}
	}
}

func TestPackEachExampleInItsOwnRow(t *testing.T) {
	ex := []Example{
		{Tokens: []int32{1, 2}, Mask: []bool{false, true}},
		{},
		{Tokens: []int32{3, 4, 5, 6, 7}, Mask: []bool{true, true, true, true, true}},
		{Tokens: []int32{8, testEOS}, Mask: []bool{false, false}},
	}
	seqs, err := Pack(ex, Packing{SeqLen: 3, EOS: testEOS, PAD: testPAD, PadEach: true})
	require.NoError(t, err)
	assert.Equal(t, []Sequence{
		{Tokens: []int32{1, 2, testEOS, testPAD}, Mask: []bool{false, true, true, false}},
		{Tokens: []int32{3, 4, 5, 6}, Mask: []bool{false, true, true, true}},
		{Tokens: []int32{8, testEOS, testPAD, testPAD}, Mask: []bool{false, false, false, false}},
	}, seqs)
}

func TestPackErrors(t *testing.T) {
	_, err := Pack(nil, Packing{SeqLen: 0, EOS: 1, PAD: 2})
	assert.ErrorContains(t, err, "sequence length 0")
	_, err = Pack(nil, Packing{SeqLen: 4, EOS: -1, PAD: 2})
	assert.ErrorContains(t, err, "EOS and PAD")
	_, err = Pack([]Example{{Tokens: []int32{1}, Mask: nil}}, Packing{SeqLen: 4, EOS: 1, PAD: 2})
	assert.ErrorContains(t, err, "example 0: 1 tokens but 0 mask entries")
	_, err = NewBatcher(randomExamples(1, 5, 5), BatchConfig{Packing: Packing{SeqLen: 4, EOS: 1, PAD: 2}})
	assert.ErrorContains(t, err, "batch size 0")
	_, err = NewBatcher([]Example{{}}, BatchConfig{Packing: Packing{SeqLen: 4, EOS: 1, PAD: 2}, BatchSize: 1})
	assert.ErrorContains(t, err, "no rows")
}

func batchConfig(l, b int, seed uint64) BatchConfig {
	return BatchConfig{Packing: Packing{SeqLen: l, EOS: testEOS, PAD: testPAD}, BatchSize: b, Seed: seed}
}

func TestBatchShapesAndShift(t *testing.T) {
	ex := randomExamples(5, 30, 10)
	b, err := NewBatcher(ex, batchConfig(6, 4, 9))
	require.NoError(t, err)
	for i := 0; i < 20; i++ {
		bt := b.Next()
		require.Equal(t, 4, bt.Size)
		require.Equal(t, 6, bt.SeqLen)
		require.Len(t, bt.Inputs, 24)
		require.Len(t, bt.Targets, 24)
		require.Len(t, bt.Mask, 24)
		for r := 0; r < 4; r++ {
			for j := 0; j+1 < 6; j++ {
				assert.Equal(t, bt.Targets[r*6+j], bt.Inputs[r*6+j+1])
			}
		}
		for j, m := range bt.Mask {
			assert.True(t, m == 0 || m == 1)
			if bt.Targets[j] == testPAD {
				assert.Zero(t, m)
			}
		}
	}
}

// rowsOf collects n rows, one per batch of one.
func rowsOf(b *Batcher, n int) [][]int32 {
	var out [][]int32
	for i := 0; i < n; i++ {
		bt := b.Next()
		out = append(out, append(slices.Clone(bt.Inputs), bt.Targets[len(bt.Targets)-1]))
	}
	return out
}

func TestEpochsAreShuffledPermutations(t *testing.T) {
	ex := randomExamples(11, 50, 8)
	b, err := NewBatcher(ex, batchConfig(5, 1, 3))
	require.NoError(t, err)
	n := b.RowsPerEpoch()
	e0 := rowsOf(b, n)
	assert.Equal(t, Position{Seed: 3, Epoch: 0, Index: n, Data: b.Position().Data}, b.Position())
	e1 := rowsOf(b, n)
	assert.Equal(t, 1, b.Position().Epoch)
	assert.NotEqual(t, e0, e1, "each epoch has its own order")

	// Each epoch is all the (non-empty) examples, each once: rebuild the stream
	// from the overlapping rows, cut it at EOS and compare as multisets.
	examplesOf := func(rows [][]int32) []string {
		stream := slices.Clone(rows[0])
		for _, r := range rows[1:] {
			stream = append(stream, r[1:]...)
		}
		for len(stream) > 0 && stream[len(stream)-1] == testPAD {
			stream = stream[:len(stream)-1]
		}
		var out []string
		start := 0
		for i, tok := range stream {
			if tok == testEOS {
				out = append(out, fmt.Sprint(stream[start:i]))
				start = i + 1
			}
		}
		require.Equal(t, len(stream), start, "the stream ends with EOS")
		slices.Sort(out)
		return out
	}
	var want []string
	for _, e := range ex {
		if len(e.Tokens) > 0 {
			toks := e.Tokens
			if toks[len(toks)-1] == testEOS {
				toks = toks[:len(toks)-1]
			}
			want = append(want, fmt.Sprint(toks))
		}
	}
	slices.Sort(want)
	assert.Equal(t, want, examplesOf(e0))
	assert.Equal(t, want, examplesOf(e1))

	// Without shuffling, the rows are Pack's.
	b, err = NewBatcher(ex, BatchConfig{Packing: Packing{SeqLen: 5, EOS: testEOS, PAD: testPAD}, BatchSize: 1, NoShuffle: true})
	require.NoError(t, err)
	seqs, err := Pack(ex, Packing{SeqLen: 5, EOS: testEOS, PAD: testPAD})
	require.NoError(t, err)
	got := rowsOf(b, len(seqs))
	for k, s := range seqs {
		assert.Equal(t, s.Tokens, got[k])
	}
}

// The resume test of the brief: N batches, save the position, restore it in a
// new batcher, and the next batches equal the uninterrupted run's, across
// epoch boundaries.
func TestResumeGivesTheSameBatches(t *testing.T) {
	ex := randomExamples(21, 37, 15)
	cfg := batchConfig(8, 3, 1234)
	for _, n := range []int{0, 1, 5, 13, 40} {
		full, err := NewBatcher(ex, cfg)
		require.NoError(t, err)
		var want []Batch
		for i := 0; i < n+25; i++ {
			want = append(want, full.Next())
		}

		first, err := NewBatcher(ex, cfg)
		require.NoError(t, err)
		for i := 0; i < n; i++ {
			require.Equal(t, want[i], first.Next())
		}
		saved, err := json.Marshal(first.Position())
		require.NoError(t, err)

		var pos Position
		require.NoError(t, json.Unmarshal(saved, &pos))
		resumed, err := NewBatcher(ex, batchConfig(8, 3, 999)) // the seed comes from the position
		require.NoError(t, err)
		require.NoError(t, resumed.SetPosition(pos))
		for i := n; i < n+25; i++ {
			require.Equal(t, want[i], resumed.Next(), "batch %d after resuming at %d", i, n)
		}
		assert.Greater(t, resumed.Position().Epoch, 0, "the run crossed an epoch")
	}
}

func TestSetPositionErrors(t *testing.T) {
	ex := randomExamples(1, 20, 6)
	b, err := NewBatcher(ex, batchConfig(4, 2, 1))
	require.NoError(t, err)
	pos := b.Position()

	other, err := NewBatcher(randomExamples(2, 20, 6), batchConfig(4, 2, 1))
	require.NoError(t, err)
	assert.ErrorContains(t, other.SetPosition(pos), "saved for other data")
	longer, err := NewBatcher(ex, batchConfig(5, 2, 1))
	require.NoError(t, err)
	assert.ErrorContains(t, longer.SetPosition(pos), "saved for other data")

	assert.ErrorContains(t, b.SetPosition(Position{Epoch: -1}), "out of range")
	assert.ErrorContains(t, b.SetPosition(Position{Index: b.RowsPerEpoch() + 1}), "out of range")
	assert.NoError(t, b.SetPosition(Position{Seed: 5, Index: b.RowsPerEpoch()}), "the end of an epoch is a valid place")
}

func TestOnePassCoversEveryRowOnce(t *testing.T) {
	ex := randomExamples(8, 25, 9)
	b, err := NewBatcher(ex, batchConfig(4, 3, 1))
	require.NoError(t, err)
	before := b.Position()
	batches := b.OnePass()
	assert.Equal(t, before, b.Position())
	seqs, err := Pack(ex, Packing{SeqLen: 4, EOS: testEOS, PAD: testPAD})
	require.NoError(t, err)
	var rows int
	for i, bt := range batches {
		if i < len(batches)-1 {
			assert.Equal(t, 3, bt.Size)
		}
		for r := 0; r < bt.Size; r++ {
			s := seqs[rows]
			assert.Equal(t, s.Tokens[:4], bt.Inputs[r*4:(r+1)*4])
			assert.Equal(t, s.Tokens[1:], bt.Targets[r*4:(r+1)*4])
			rows++
		}
	}
	assert.Equal(t, len(seqs), rows)
}

func BenchmarkBatcherNext(b *testing.B) {
	ex := randomExamples(1, 10000, 200)
	bt, err := NewBatcher(ex, batchConfig(256, 16, 1))
	require.NoError(b, err)
	b.SetBytes(16 * 256 * 4)
	for b.Loop() {
		bt.Next()
	}
}
