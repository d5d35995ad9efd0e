package data

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func corpus(t testing.TB) string {
	b, err := os.ReadFile("testdata/corpus.txt")
	require.NoError(t, err)
	return string(b)
}

type goldenCase struct {
	Text string  `json:"text"`
	IDs  []int32 `json:"ids"`
}

// The ids in testdata/golden_ids.json came from Hugging Face's own tokenizers
// (npm @huggingface/tokenizers) loading the tokenizer files in testdata.
func TestGoldenIDsFromHuggingFace(t *testing.T) {
	b, err := os.ReadFile("testdata/golden_ids.json")
	require.NoError(t, err)
	var golden map[string][]goldenCase
	require.NoError(t, json.Unmarshal(b, &golden))
	require.Len(t, golden, 3)
	for name, cases := range golden {
		t.Run(name, func(t *testing.T) {
			tok, err := LoadTokenizer(filepath.Join("testdata", "tokenizer_"+name+".json"))
			require.NoError(t, err)
			require.NotEmpty(t, cases)
			for _, c := range cases {
				ids := tok.Encode(c.Text)
				if c.IDs == nil {
					c.IDs = []int32{}
				}
				assert.Equal(t, c.IDs, append([]int32{}, ids...), "text %q", c.Text)
				assert.Equal(t, c.Text, tok.Decode(ids))
			}
		})
	}
}

// Training is deterministic: the committed GPT-2-style file is exactly what
// TrainBPE gives on the committed corpus, and text order does not matter.
func TestTrainBPEIsDeterministic(t *testing.T) {
	text := corpus(t)
	tok, err := TrainBPE([]string{text}, 420, BPEOptions{})
	require.NoError(t, err)
	assert.LessOrEqual(t, tok.VocabSize(), 420) // the corpus runs out of pairs seen twice
	assert.Greater(t, tok.NumMerges(), 100)
	got, err := tok.MarshalJSON()
	require.NoError(t, err)
	want, err := os.ReadFile("testdata/tokenizer_gpt2.json")
	require.NoError(t, err)
	assert.Equal(t, string(want), string(got))

	// Word counts do not depend on the order of the texts.
	lines := strings.SplitAfter(text, "\n")
	inOrder, err := TrainBPE(lines, 420, BPEOptions{})
	require.NoError(t, err)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(lines), func(i, j int) { lines[i], lines[j] = lines[j], lines[i] })
	shuffled, err := TrainBPE(lines, 420, BPEOptions{})
	require.NoError(t, err)
	a, _ := inOrder.MarshalJSON()
	b, _ := shuffled.MarshalJSON()
	assert.Equal(t, string(a), string(b))
}

func TestTrainBPEMergesTheMostFrequentPairFirst(t *testing.T) {
	// Words: "ab", " ab" x4, " cd" x3, " ef" x2, " gh". Pairs counted by hand:
	// a+b 5, " "+a 4, " "+c 3, c+d 3, " "+e 2, e+f 2, " "+g 1, g+h 1. So: "ab"
	// (5), " ab" (4), then " c" and "cd" tie at 3 and the smaller ids win
	// (32,99 < 99,100), then " c"+d (3).
	texts := []string{"ab ab ab ab ab cd cd cd ef ef gh"}
	tok, err := TrainBPE(texts, 259+4, BPEOptions{MinFrequency: 2})
	require.NoError(t, err)
	var got []string
	for _, m := range tok.merges {
		got = append(got, tok.Token(m.id))
	}
	assert.Equal(t, []string{"ab", " ab", " c", " cd"}, got)
	assert.Equal(t, []int32{259, 260, 262, 262, 32, 101, 102}, tok.Encode("ab ab cd cd ef"))

	// MinFrequency stops before pairs seen once.
	tok, err = TrainBPE([]string{"xy"}, 1000, BPEOptions{})
	require.NoError(t, err)
	assert.Equal(t, 0, tok.NumMerges())
	assert.Equal(t, 259, tok.VocabSize())
}

func TestTrainBPEErrors(t *testing.T) {
	_, err := TrainBPE([]string{"x"}, 100, BPEOptions{})
	assert.ErrorContains(t, err, "vocabSize 100")
	_, err = TrainBPE([]string{"x"}, 300, BPEOptions{BOS: "<s>", EOS: "<s>"})
	assert.ErrorContains(t, err, "must differ")
}

func randomText(r *rand.Rand, n int) string {
	pieces := []string{" ", "  ", "\n", "\r\n", "\t", "a", "Z", "'s", "'LL", "don't", "123", "4", "é", "e\u0301",
		"日本", "🚀", "\u00a0", "\u3000", "!", "...", "<|eos|>", "<|bos|", "\xff", "\xc3", "\xe2\x82", "\x00", "Ⅻ", "½"}
	var b strings.Builder
	for i := 0; i < n; i++ {
		if r.IntN(4) == 0 {
			b.WriteByte(byte(r.IntN(256)))
			continue
		}
		b.WriteString(pieces[r.IntN(len(pieces))])
	}
	return b.String()
}

func TestRoundTripOnArbitraryBytes(t *testing.T) {
	trained, err := TrainBPE([]string{corpus(t)}, 420, BPEOptions{})
	require.NoError(t, err)
	toks := map[string]*BPE{"bytes": NewByteTokenizer(), "trained": trained}
	for _, name := range []string{"llama3", "qwen2"} {
		tok, err := LoadTokenizer(filepath.Join("testdata", "tokenizer_"+name+".json"))
		require.NoError(t, err)
		toks[name] = tok
	}
	r := rand.New(rand.NewPCG(7, 7))
	texts := []string{"", "\xff\xfe", string([]byte{0, 1, 2, 255}), "a\u0085b\ufeffc"}
	for i := 0; i < 300; i++ {
		texts = append(texts, randomText(r, r.IntN(40)))
	}
	for name, tok := range toks {
		for _, s := range texts {
			ids := tok.Encode(s)
			for _, id := range ids {
				require.True(t, id >= 0 && int(id) < tok.VocabSize(), "%s: id %d", name, id)
			}
			require.Equal(t, s, tok.Decode(ids), "%s: %q", name, s)
		}
	}
}

func TestByteTokenizer(t *testing.T) {
	tok := NewByteTokenizer()
	assert.Equal(t, 259, tok.VocabSize())
	assert.Equal(t, SpecialTokens{BOS: ByteBOS, EOS: ByteEOS, PAD: BytePAD}, tok.Special())
	assert.Equal(t, []int32{'1', '2', '+', 0xc3, 0xa9}, tok.Encode("12+é"))
	assert.Equal(t, []int32{'a', ByteEOS, 'b'}, tok.Encode("a<|eos|>b"))
	assert.Equal(t, "a<|pad|>", tok.Decode([]int32{'a', BytePAD, 9999, -1}))

	// Saved as tokenizer.json, it loads as a BPE that encodes the same.
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	require.NoError(t, SaveTokenizer(path, tok))
	back, err := LoadTokenizer(path)
	require.NoError(t, err)
	assert.Equal(t, tok.Special(), back.Special())
	r := rand.New(rand.NewPCG(1, 1))
	for i := 0; i < 100; i++ {
		s := randomText(r, 20)
		assert.Equal(t, tok.Encode(s), back.Encode(s), "%q", s)
	}
}

func TestSaveLoadKeepsEverything(t *testing.T) {
	for _, name := range []string{"gpt2", "llama3", "qwen2"} {
		path := filepath.Join("testdata", "tokenizer_"+name+".json")
		tok, err := LoadTokenizer(path)
		require.NoError(t, err)
		assert.Equal(t, SpecialTokens{256, 257, 258}, tok.Special())
		out := filepath.Join(t.TempDir(), "t.json")
		require.NoError(t, SaveTokenizer(out, tok))
		back, err := LoadTokenizer(out)
		require.NoError(t, err)
		a, _ := tok.MarshalJSON()
		b, _ := back.MarshalJSON()
		assert.Equal(t, string(a), string(b), name)
		s := corpus(t)
		assert.Equal(t, tok.Encode(s), back.Encode(s))
	}
}

func TestLoadNewMergeFormatAndIgnoreMerges(t *testing.T) {
	// A tiny hand-written file: merges as pairs, ignore_merges, an unk token, and
	// a vocabulary where "abc" exists but the merges alone would not reach it.
	const file = `{"added_tokens":[{"id":6,"content":"</s>","special":true}],
	 "normalizer":null,"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":true,"use_regex":true},
	 "decoder":{"type":"ByteLevel"},
	 "model":{"type":"BPE","unk_token":"?","ignore_merges":IGN,
	  "vocab":{"a":0,"b":1,"c":2,"ab":3,"Ġ":4,"Ġabc":5,"</s>":6,"?":7},
	  "merges":[["a","b"]]}}`
	tok, err := ParseTokenizerJSON([]byte(strings.Replace(file, "IGN", "true", 1)))
	require.NoError(t, err)
	assert.Equal(t, int32(6), tok.Special().EOS)
	// add_prefix_space makes "abc" into " abc", found whole in the vocabulary.
	assert.Equal(t, []int32{5}, tok.Encode("abc"))
	// Without ignore_merges: " " + "ab" + "c"; "x" is not in the vocabulary: unk.
	tok, err = ParseTokenizerJSON([]byte(strings.Replace(file, "IGN", "false", 1)))
	require.NoError(t, err)
	assert.Equal(t, []int32{4, 3, 2}, tok.Encode("abc"))
	assert.Equal(t, []int32{4, 7, 6}, tok.Encode("x</s>"))
}

func TestParseTokenizerJSONErrors(t *testing.T) {
	good, err := os.ReadFile("testdata/tokenizer_gpt2.json")
	require.NoError(t, err)
	replace := func(old, new string) string {
		require.Contains(t, string(good), old)
		return strings.Replace(string(good), old, new, 1)
	}
	cases := []struct {
		name, file, want string
	}{
		{"not json", `{"model": `, "unexpected end of JSON"},
		{"no model", `{"version":"1.0"}`, `field "model": missing`},
		{"other model", `{"model":{"type":"WordPiece","vocab":{}}}`, `"model.type": "WordPiece" is not supported`},
		{"normalizer", replace(`"normalizer": null`, `"normalizer": {"type":"NFC"}`), `field "normalizer"`},
		{"pre-tokenizer", replace(`"pre_tokenizer": {"type":"ByteLevel"`, `"pre_tokenizer": {"type":"Whitespace"`), `"pre_tokenizer.type": "Whitespace"`},
		{"unknown regex", `{"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"\\w+"},"behavior":"Isolated"},{"type":"ByteLevel","use_regex":false}]},"model":{"type":"BPE","vocab":{}}}`, "not one of the known"},
		{"split behavior", `{"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"x"},"behavior":"Removed"},{"type":"ByteLevel","use_regex":false}]},"model":{"type":"BPE","vocab":{}}}`, "only Isolated"},
		{"decoder", replace(`"decoder": {"type":"ByteLevel"`, `"decoder": {"type":"Metaspace"`), `"decoder.type": "Metaspace"`},
		{"merge not in vocab", replace(`"merges": [`, `"merges": ["Ġ zzz",`), `merge 0 ("Ġ" "zzz")`},
		{"merge one token", replace(`"merges": [`, `"merges": ["Ġ",`), `merge 0 "Ġ" is not two tokens`},
		{"merge wrong type", replace(`"merges": [`, `"merges": [7,`), `want strings "a b" or pairs`},
		{"byte fallback", replace(`"byte_fallback": false`, `"byte_fallback": true`), "byte_fallback"},
		{"suffix", replace(`"end_of_word_suffix": null`, `"end_of_word_suffix": "</w>"`), "end_of_word_suffix"},
		{"negative id", replace(`"Ā": 0`, `"Ā": -5`), "out of range"},
		{"duplicate id", replace(`"ā": 1`, `"ā": 0`), "id 0 is given to two tokens"},
		{"unk missing", replace(`"unk_token": null`, `"unk_token": "<unk>"`), `"model.unk_token": "<unk>"`},
		{"added id clash", replace(`{"id": 256, "content": "<|bos|>"`, `{"id": 65, "content": "<|bos|>"`), `token "<|bos|>" has id 65, which the vocabulary gives to "A"`},
		{"empty added", replace(`"content": "<|bos|>"`, `"content": ""`), "empty content"},
		{"vocab wrong type", `{"model":{"type":"BPE","vocab":[1,2]}}`, "cannot unmarshal array"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseTokenizerJSON([]byte(c.file))
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
			assert.True(t, strings.HasPrefix(err.Error(), "tokenizer.json: "), err.Error())
		})
	}
	_, err = LoadTokenizer(filepath.Join(t.TempDir(), "missing.json"))
	assert.ErrorContains(t, err, "missing.json")
}

func TestPreTokenizerSplits(t *testing.T) {
	split := func(p splitPattern, s string) []string {
		var out []string
		splitText(p, s, func(w string) { out = append(out, w) })
		return out
	}
	cases := []struct {
		p    splitPattern
		in   string
		want []string
	}{
		{splitGPT2, "Hello world", []string{"Hello", " world"}},
		{splitGPT2, "a  b", []string{"a", " ", " b"}},
		{splitGPT2, "a \nb", []string{"a", " ", "\n", "b"}},
		{splitGPT2, "a\t b", []string{"a", "\t", " b"}},
		{splitGPT2, "end   ", []string{"end", "   "}},
		{splitGPT2, "don't 'hi' x'S", []string{"don", "'t", " '", "hi", "'", " x", "'", "S"}},
		{splitGPT2, "?'s", []string{"?'", "s"}},
		{splitGPT2, "12345 x1", []string{"12345", " x", "1"}},
		{splitGPT2, " !!! ok", []string{" !!!", " ok"}},
		{splitGPT2, "\xffab\xfe", []string{"\xff", "ab", "\xfe"}},
		{splitLlama3, "12345", []string{"123", "45"}},
		{splitLlama3, "I'M 'hi'", []string{"I", "'M", " '", "hi", "'"}},
		{splitLlama3, "x\n\n  y", []string{"x", "\n\n", " ", " y"}},
		{splitLlama3, "a \n b", []string{"a", " \n", " b"}},
		{splitLlama3, "ok!\n\nnext", []string{"ok", "!\n\n", "next"}},
		{splitLlama3, "\tword", []string{"\tword"}},
		{splitLlama3, ".word", []string{".word"}},
		{splitQwen2, "2026", []string{"2", "0", "2", "6"}},
		{splitNone, "a b", []string{"a b"}},
	}
	for _, c := range cases {
		got := split(c.p, c.in)
		assert.Equal(t, c.want, got, "%d %q", c.p, c.in)
		assert.Equal(t, c.in, strings.Join(got, ""))
	}
}

func TestByteLevelMapping(t *testing.T) {
	seen := map[rune]bool{}
	for b := 0; b < 256; b++ {
		r := byteToRune[b]
		assert.False(t, seen[r])
		seen[r] = true
		assert.True(t, utf8.ValidRune(r))
	}
	assert.Equal(t, 'Ġ', byteToRune[' '])
	assert.Equal(t, 'Ċ', byteToRune['\n'])
	assert.Equal(t, 'A', byteToRune['A'])
	raw, ok := byteLevelBytes(byteLevelString("\x00 é\xff"))
	assert.True(t, ok)
	assert.Equal(t, "\x00 é\xff", raw)
	_, ok = byteLevelBytes("日")
	assert.False(t, ok)
}

func FuzzParseTokenizerJSON(f *testing.F) {
	// Small seeds keep the fuzzer fast (it minimises every new input); the seed
	// corpus in testdata/fuzz adds more, and the big files are tested above.
	f.Add([]byte(`{"added_tokens":[{"id":6,"content":"</s>","special":true}],"normalizer":null,` +
		`"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":true,"use_regex":true},"decoder":{"type":"ByteLevel"},` +
		`"model":{"type":"BPE","unk_token":"?","ignore_merges":true,"vocab":{"a":0,"b":1,"c":2,"ab":3,"Ġ":4,"Ġabc":5,"</s>":6,"?":7},"merges":[["a","b"]]}}`))
	f.Add([]byte(`{"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"` +
		strings.ReplaceAll(patternLlama3, `\`, `\\`) + `"},"behavior":"Isolated","invert":false},{"type":"ByteLevel","use_regex":false}]},` +
		`"model":{"type":"BPE","vocab":{"1":0,"2":1,"12":2,"Ġ":3,"Ġ1":4},"merges":["1 2","Ġ 1"]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := ParseTokenizerJSON(b)
		if err != nil {
			return
		}
		for _, s := range []string{"", "Hello world 123", "it's\n\n  x\xff", "<|eos|>"} {
			ids := tok.Encode(s)
			for _, id := range ids {
				if id < 0 || int(id) >= tok.VocabSize() {
					t.Fatalf("id %d out of range %d", id, tok.VocabSize())
				}
			}
			_ = tok.Decode(ids)
		}
		out, err := tok.MarshalJSON()
		if err != nil {
			return // a verbatim section that is not JSON we can compact
		}
		back, err := ParseTokenizerJSON(out)
		if err != nil {
			t.Fatalf("saved file does not load: %v", err)
		}
		if got, want := back.Encode("Hello world 123 it's"), tok.Encode("Hello world 123 it's"); !equalIDs(got, want) {
			t.Fatalf("reloaded encodes %v, want %v", got, want)
		}
	})
}

func equalIDs(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// The allocation-free merge for short words and the heap merge for long ones
// agree.
func TestShortAndHeapMergesAgree(t *testing.T) {
	tok, err := LoadTokenizer("testdata/tokenizer_gpt2.json")
	require.NoError(t, err)
	r := rand.New(rand.NewPCG(3, 4))
	words := []string{"the", " the", "                 ", "aaaaaaaa", "thethethethe"}
	text := corpus(t)
	for i := 0; i < 500; i++ {
		a := r.IntN(len(text) - 80)
		words = append(words, text[a:a+1+r.IntN(79)])
	}
	for _, w := range words {
		sym := make([]int32, len(w))
		for i := 0; i < len(w); i++ {
			sym[i] = tok.byteID[w[i]]
		}
		heap := tok.mergeWord(sym)
		short := tok.mergeShort(append([]int32(nil), sym...))
		require.Equal(t, heap, short, "%q", w)
		require.Equal(t, w, tok.Decode(heap))
	}
}
