package data

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// The Hugging Face tokenizer.json format, as far as a byte-level BPE uses it.
// Loading accepts: model type "BPE" (merges as "a b" strings or ["a","b"] pairs,
// ignore_merges, an unk_token); normalizer null; pre_tokenizer ByteLevel
// (use_regex on or off, add_prefix_space), or a Sequence of Split with the GPT-2,
// Llama 3 or Qwen2 pattern (behavior Isolated) and ByteLevel with use_regex off;
// decoder ByteLevel or null; any post_processor (Encode adds no tokens, so it is
// kept only to be written back). Anything else is refused with an error naming
// the field, rather than encoded differently from Hugging Face.

type rawSections struct {
	normalizer, preTokenizer, postProcessor, decoder json.RawMessage
}

type tokenizerFile struct {
	Version       string           `json:"version"`
	AddedTokens   []addedTokenJSON `json:"added_tokens"`
	Normalizer    json.RawMessage  `json:"normalizer"`
	PreTokenizer  json.RawMessage  `json:"pre_tokenizer"`
	PostProcessor json.RawMessage  `json:"post_processor"`
	Decoder       json.RawMessage  `json:"decoder"`
	Model         *bpeModelJSON    `json:"model"`
}

type addedTokenJSON struct {
	ID         int32  `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

type bpeModelJSON struct {
	Type                    string           `json:"type"`
	Dropout                 *float64         `json:"dropout"`
	UnkToken                *string          `json:"unk_token"`
	ContinuingSubwordPrefix *string          `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string          `json:"end_of_word_suffix"`
	FuseUnk                 bool             `json:"fuse_unk"`
	ByteFallback            bool             `json:"byte_fallback"`
	IgnoreMerges            bool             `json:"ignore_merges"`
	Vocab                   map[string]int32 `json:"vocab"`
	Merges                  json.RawMessage  `json:"merges"`
}

type preTokenizerJSON struct {
	Type           string             `json:"type"`
	AddPrefixSpace *bool              `json:"add_prefix_space"`
	UseRegex       *bool              `json:"use_regex"`
	Pattern        *patternJSON       `json:"pattern"`
	Behavior       string             `json:"behavior"`
	Invert         bool               `json:"invert"`
	PreTokenizers  []preTokenizerJSON `json:"pretokenizers"`
}

type patternJSON struct {
	Regex  *string `json:"Regex"`
	String *string `json:"String"`
}

// LoadTokenizer reads a Hugging Face tokenizer.json holding a byte-level BPE.
func LoadTokenizer(path string) (*BPE, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := ParseTokenizerJSON(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// SaveTokenizer writes t as a Hugging Face tokenizer.json.
func SaveTokenizer(path string, t *BPE) error {
	b, err := t.MarshalJSON()
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func isNull(m json.RawMessage) bool {
	m = bytes.TrimSpace(m)
	return len(m) == 0 || string(m) == "null"
}

// ParseTokenizerJSON reads a tokenizer.json from memory (see LoadTokenizer).
func ParseTokenizerJSON(b []byte) (*BPE, error) {
	var f tokenizerFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	m := f.Model
	if m == nil {
		return nil, errors.New(`tokenizer.json: field "model": missing`)
	}
	if m.Type != "" && m.Type != "BPE" {
		return nil, fmt.Errorf(`tokenizer.json: field "model.type": %q is not supported (only "BPE")`, m.Type)
	}
	if m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "" {
		return nil, errors.New(`tokenizer.json: field "model.continuing_subword_prefix": not supported`)
	}
	if m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "" {
		return nil, errors.New(`tokenizer.json: field "model.end_of_word_suffix": not supported`)
	}
	if m.ByteFallback {
		return nil, errors.New(`tokenizer.json: field "model.byte_fallback": not supported (not a byte-level BPE)`)
	}
	if !isNull(f.Normalizer) {
		return nil, errors.New(`tokenizer.json: field "normalizer": only null is supported`)
	}
	t := &BPE{unk: -1, special: SpecialTokens{-1, -1, -1}, ignoreMerges: m.IgnoreMerges}
	t.raw = &rawSections{f.Normalizer, f.PreTokenizer, f.PostProcessor, f.Decoder}
	if err := t.parsePreTokenizer(f.PreTokenizer); err != nil {
		return nil, err
	}
	if !isNull(f.Decoder) {
		var d preTokenizerJSON
		if err := json.Unmarshal(f.Decoder, &d); err != nil {
			return nil, fmt.Errorf(`tokenizer.json: field "decoder": %w`, err)
		}
		if d.Type != "ByteLevel" {
			return nil, fmt.Errorf(`tokenizer.json: field "decoder.type": %q is not supported (only "ByteLevel")`, d.Type)
		}
	}

	// Vocabulary: byte-level strings, then added tokens (which may or may not be in
	// it). Ids must be about dense: a small file cannot ask for a huge table.
	limit := int32(2*(len(m.Vocab)+len(f.AddedTokens)) + 1024)
	size := int32(0)
	for s, id := range m.Vocab {
		if s == "" {
			return nil, errors.New(`tokenizer.json: field "model.vocab": an empty token`)
		}
		if id < 0 || id >= limit {
			return nil, fmt.Errorf(`tokenizer.json: field "model.vocab": token %q has id %d out of range (the file has %d tokens)`, s, id, len(m.Vocab))
		}
		size = max(size, id+1)
	}
	for _, a := range f.AddedTokens {
		if a.ID < 0 || a.ID >= limit {
			return nil, fmt.Errorf(`tokenizer.json: field "added_tokens": token %q has id %d out of range (the file has %d tokens)`, a.Content, a.ID, len(m.Vocab))
		}
		size = max(size, a.ID+1)
	}
	t.tokens = make([]string, size)
	t.isAdded = make([]bool, size)
	have := make([]bool, size)
	// Sort for a deterministic choice when two strings claim one id.
	keys := make([]string, 0, len(m.Vocab))
	for s := range m.Vocab {
		keys = append(keys, s)
	}
	sort.Strings(keys)
	for _, s := range keys {
		id := m.Vocab[s]
		if have[id] {
			return nil, fmt.Errorf(`tokenizer.json: field "model.vocab": id %d is given to two tokens`, id)
		}
		have[id] = true
		if raw, ok := byteLevelBytes(s); ok {
			t.tokens[id] = raw
		} else {
			// Not byte-level text (a special token kept in the vocabulary): verbatim.
			t.tokens[id] = s
			t.isAdded[id] = true
		}
	}
	byID := make(map[int32]string, len(m.Vocab))
	for s, id := range m.Vocab {
		byID[id] = s
	}
	for _, a := range f.AddedTokens {
		if a.Content == "" {
			return nil, fmt.Errorf(`tokenizer.json: field "added_tokens": id %d has empty content`, a.ID)
		}
		if s, ok := byID[a.ID]; ok && s != a.Content {
			return nil, fmt.Errorf(`tokenizer.json: field "added_tokens": token %q has id %d, which the vocabulary gives to %q`, a.Content, a.ID, s)
		}
		t.tokens[a.ID] = a.Content
		t.isAdded[a.ID] = true
		t.added = append(t.added, addedToken{id: a.ID, content: a.Content, special: a.Special})
	}
	if m.UnkToken != nil {
		id, ok := m.Vocab[*m.UnkToken]
		if !ok {
			return nil, fmt.Errorf(`tokenizer.json: field "model.unk_token": %q is not in the vocabulary`, *m.UnkToken)
		}
		t.unk = id
	}

	merges, err := parseMerges(m.Merges)
	if err != nil {
		return nil, err
	}
	for i, mg := range merges {
		l, okL := m.Vocab[mg[0]]
		r, okR := m.Vocab[mg[1]]
		id, okM := m.Vocab[mg[0]+mg[1]]
		if !okL || !okR || !okM {
			return nil, fmt.Errorf(`tokenizer.json: field "model.merges": merge %d (%q %q) uses a token that is not in the vocabulary`, i, mg[0], mg[1])
		}
		t.merges = append(t.merges, bpeMerge{l, r, id})
	}
	t.index()
	t.special = guessSpecials(f.AddedTokens)
	return t, nil
}

func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	var strs []string
	if err := json.Unmarshal(raw, &strs); err == nil {
		out := make([][2]string, len(strs))
		for i, s := range strs {
			parts := strings.Split(s, " ")
			if len(parts) != 2 {
				return nil, fmt.Errorf(`tokenizer.json: field "model.merges": merge %d %q is not two tokens separated by a space`, i, s)
			}
			out[i] = [2]string{parts[0], parts[1]}
		}
		return out, nil
	}
	var pairs [][]string
	if err := json.Unmarshal(raw, &pairs); err != nil {
		return nil, fmt.Errorf(`tokenizer.json: field "model.merges": want strings "a b" or pairs ["a","b"]: %w`, err)
	}
	out := make([][2]string, len(pairs))
	for i, p := range pairs {
		if len(p) != 2 {
			return nil, fmt.Errorf(`tokenizer.json: field "model.merges": merge %d has %d parts, want 2`, i, len(p))
		}
		out[i] = [2]string{p[0], p[1]}
	}
	return out, nil
}

func (t *BPE) parsePreTokenizer(raw json.RawMessage) error {
	if isNull(raw) {
		t.split = splitNone
		return nil
	}
	var p preTokenizerJSON
	if err := json.Unmarshal(raw, &p); err != nil {
		return fmt.Errorf(`tokenizer.json: field "pre_tokenizer": %w`, err)
	}
	switch p.Type {
	case "ByteLevel":
		return t.byteLevel(p, "pre_tokenizer", true)
	case "Sequence":
		// Split(pattern) then ByteLevel(use_regex: false), as Llama 3 and Qwen2 write it.
		if len(p.PreTokenizers) != 2 || p.PreTokenizers[0].Type != "Split" || p.PreTokenizers[1].Type != "ByteLevel" {
			return errors.New(`tokenizer.json: field "pre_tokenizer.pretokenizers": only [Split, ByteLevel] is supported`)
		}
		sp := p.PreTokenizers[0]
		if sp.Pattern == nil || sp.Pattern.Regex == nil {
			return errors.New(`tokenizer.json: field "pre_tokenizer.pretokenizers[0].pattern": want a Regex`)
		}
		if sp.Behavior != "Isolated" || sp.Invert {
			return fmt.Errorf(`tokenizer.json: field "pre_tokenizer.pretokenizers[0].behavior": %q (invert %v) is not supported (only Isolated)`, sp.Behavior, sp.Invert)
		}
		switch *sp.Pattern.Regex {
		case patternGPT2:
			t.split = splitGPT2
		case patternLlama3:
			t.split = splitLlama3
		case patternQwen2:
			t.split = splitQwen2
		default:
			return fmt.Errorf(`tokenizer.json: field "pre_tokenizer.pretokenizers[0].pattern": regex %q is not one of the known GPT-2, Llama 3 or Qwen2 patterns`, *sp.Pattern.Regex)
		}
		return t.byteLevel(p.PreTokenizers[1], "pre_tokenizer.pretokenizers[1]", false)
	}
	return fmt.Errorf(`tokenizer.json: field "pre_tokenizer.type": %q is not supported`, p.Type)
}

func (t *BPE) byteLevel(p preTokenizerJSON, field string, splitAllowed bool) error {
	t.addPrefixSpace = p.AddPrefixSpace != nil && *p.AddPrefixSpace
	useRegex := p.UseRegex == nil || *p.UseRegex
	switch {
	case useRegex && !splitAllowed:
		return fmt.Errorf(`tokenizer.json: field "%s.use_regex": true after a Split is not supported`, field)
	case useRegex:
		t.split = splitGPT2
	case splitAllowed:
		t.split = splitNone
	}
	return nil
}

// guessSpecials picks BOS, EOS and PAD among the added tokens by their usual
// names (tokenizer.json itself does not say; see SetSpecial).
func guessSpecials(added []addedTokenJSON) SpecialTokens {
	s := SpecialTokens{-1, -1, -1}
	has := func(c string, names ...string) bool {
		c = strings.ToLower(c)
		for _, n := range names {
			if strings.Contains(c, n) {
				return true
			}
		}
		return false
	}
	for _, a := range added {
		switch {
		case s.PAD < 0 && has(a.Content, "pad"):
			s.PAD = a.ID
		case s.BOS < 0 && (a.Content == "<s>" || has(a.Content, "bos", "begin_of_text", "startoftext")):
			s.BOS = a.ID
		case s.EOS < 0 && (a.Content == "</s>" || has(a.Content, "eos", "endoftext", "end_of_text", "im_end")):
			s.EOS = a.ID
		}
	}
	return s
}

// MarshalJSON writes the tokenizer as a Hugging Face tokenizer.json: vocabulary
// in id order, merges as "a b" strings (read by every version of tokenizers).
func (t *BPE) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	str := func(s string) string {
		var q bytes.Buffer
		enc := json.NewEncoder(&q)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(s)
		return strings.TrimSuffix(q.String(), "\n")
	}
	b.WriteString("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [")
	added := append([]addedToken(nil), t.added...)
	sort.Slice(added, func(i, j int) bool { return added[i].id < added[j].id })
	for i, a := range added {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "\n    {\"id\": %d, \"content\": %s, \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": %v}", a.id, str(a.content), a.special)
	}
	b.WriteString("\n  ],\n")
	sections := t.raw
	if sections == nil {
		sections = &rawSections{
			normalizer:    json.RawMessage(`null`),
			preTokenizer:  json.RawMessage(`{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}`),
			postProcessor: json.RawMessage(`null`),
			decoder:       json.RawMessage(`{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}`),
		}
	}
	for _, s := range []struct {
		name string
		v    json.RawMessage
	}{{"normalizer", sections.normalizer}, {"pre_tokenizer", sections.preTokenizer}, {"post_processor", sections.postProcessor}, {"decoder", sections.decoder}} {
		v := s.v
		if isNull(v) {
			v = json.RawMessage("null")
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, v); err != nil {
			return nil, fmt.Errorf("tokenizer.json: %s: %w", s.name, err)
		}
		fmt.Fprintf(&b, "  %q: %s,\n", s.name, compact.String())
	}
	unk := "null"
	if t.unk >= 0 {
		unk = str(t.vocabString(t.unk))
	}
	fmt.Fprintf(&b, "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": %s,\n    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": %v,\n    \"vocab\": {", unk, t.ignoreMerges)
	first := true
	for id := range t.tokens {
		if t.tokens[id] == "" {
			continue // an id that a loaded file left unused
		}
		if !first {
			b.WriteString(",")
		}
		first = false
		b.WriteString("\n      " + str(t.vocabString(int32(id))) + ": " + strconv.Itoa(id))
	}
	b.WriteString("\n    },\n    \"merges\": [")
	for i, m := range t.merges {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n      " + str(t.vocabString(m.left)+" "+t.vocabString(m.right)))
	}
	b.WriteString("\n    ]\n  }\n}\n")
	return b.Bytes(), nil
}

// vocabString is an id's key in the tokenizer.json vocabulary.
func (t *BPE) vocabString(id int32) string {
	if t.isAdded[id] {
		return t.tokens[id]
	}
	return byteLevelString(t.tokens[id])
}
