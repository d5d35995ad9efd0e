package data

import (
	"unicode"
	"unicode/utf8"
)

// The byte-level BPE of GPT-2 works on bytes, but stores each byte as a printable
// unicode character so that vocabularies and merges are readable text: the 188
// printable Latin-1 bytes map to themselves and the other 68 bytes (controls,
// space, 0x7f-0xa0, 0xad) map, in byte order, to U+0100 onwards. This is the
// mapping every Hugging Face ByteLevel tokenizer uses.
var byteToRune, runeToByte = buildByteLevelMaps()

func buildByteLevelMaps() ([256]rune, map[rune]byte) {
	var b2r [256]rune
	r2b := make(map[rune]byte, 256)
	printable := func(b int) bool {
		return (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)
	}
	n := 0
	for b := 0; b < 256; b++ {
		r := rune(b)
		if !printable(b) {
			r = rune(256 + n)
			n++
		}
		b2r[b] = r
		r2b[r] = byte(b)
	}
	return b2r, r2b
}

// byteLevelString maps raw bytes to their byte-level text form.
func byteLevelString(raw string) string {
	out := make([]rune, len(raw))
	for i := 0; i < len(raw); i++ {
		out[i] = byteToRune[raw[i]]
	}
	return string(out)
}

// byteLevelBytes inverts byteLevelString; ok is false when s has a character
// outside the 256 of the mapping.
func byteLevelBytes(s string) (raw string, ok bool) {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		b, found := runeToByte[r]
		if !found {
			return "", false
		}
		out = append(out, b)
	}
	return string(out), true
}

// Pattern names the pre-tokenizer split. Hugging Face writes these as regular
// expressions with a lookahead (`\s+(?!\S)`) that Go's regexp cannot express, so
// each known pattern is implemented by hand below; a tokenizer.json with any other
// pattern is refused rather than split differently.
type splitPattern int

const (
	splitNone   splitPattern = iota // the whole text is one piece
	splitGPT2                       // GPT-2, the ByteLevel pre-tokenizer's use_regex
	splitLlama3                     // Llama 3 (digits in runs of at most 3)
	splitQwen2                      // Qwen2 (digits one at a time)
)

const (
	patternGPT2   = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
	patternLlama3 = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	patternQwen2  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

type runeClass uint8

const (
	classOther runeClass = iota // [^\s\p{L}\p{N}], and bytes that are not UTF-8
	classSpace
	classLetter
	classNumber
)

// decodeAt returns the rune at s[i:] and its width; an invalid byte is
// utf8.RuneError of width 1 and counts as "other", so every input splits and
// its bytes survive unchanged.
func decodeAt(s string, i int) (rune, int) {
	r, w := utf8.DecodeRuneInString(s[i:])
	return r, w
}

func classify(r rune, w int) runeClass {
	switch {
	case r == utf8.RuneError && w <= 1:
		return classOther
	case unicode.IsSpace(r):
		return classSpace
	case unicode.IsLetter(r):
		return classLetter
	case unicode.IsNumber(r):
		return classNumber
	}
	return classOther
}

func classAt(s string, i int) (runeClass, int) {
	r, w := decodeAt(s, i)
	return classify(r, w), w
}

// runOf returns the end of the run of class c that starts at i.
func runOf(s string, i int, c runeClass) int {
	for i < len(s) {
		ci, w := classAt(s, i)
		if ci != c {
			break
		}
		i += w
	}
	return i
}

// contraction returns the length of 's 't 're 've 'm 'll 'd at s[i:] (i at the
// apostrophe), or 0.
func contraction(s string, i int, fold bool) int {
	if i >= len(s) || s[i] != '\'' {
		return 0
	}
	lower := func(b byte) byte {
		if fold && b >= 'A' && b <= 'Z' {
			return b + 'a' - 'A'
		}
		return b
	}
	if i+1 < len(s) {
		switch lower(s[i+1]) {
		case 's', 't', 'm', 'd':
			return 2
		}
	}
	if i+2 < len(s) {
		a, b := lower(s[i+1]), lower(s[i+2])
		if (a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l') {
			return 3
		}
	}
	return 0
}

// whitespaceEnd applies `\s+(?!\S)|\s+` at i (a whitespace rune): a run of
// whitespace followed by a non-space gives its last rune to the next piece,
// unless the run is that single rune.
func whitespaceEnd(s string, i int) int {
	end := runOf(s, i, classSpace)
	if end == len(s) {
		return end
	}
	last := end - 1
	for last > i && !utf8.RuneStart(s[last]) {
		last--
	}
	if last > i {
		return last
	}
	return end
}

func splitText(p splitPattern, s string, emit func(string)) {
	switch p {
	case splitNone:
		if s != "" {
			emit(s)
		}
	case splitGPT2:
		splitGPT2Text(s, emit)
	case splitLlama3:
		splitLlamaText(s, 3, emit)
	case splitQwen2:
		splitLlamaText(s, 1, emit)
	}
}

// splitGPT2Text is patternGPT2 by hand.
func splitGPT2Text(s string, emit func(string)) {
	for i := 0; i < len(s); {
		if n := contraction(s, i, false); n > 0 {
			emit(s[i : i+n])
			i += n
			continue
		}
		c, w := classAt(s, i)
		start := i
		if s[i] == ' ' && i+1 < len(s) {
			// ` ?\p{L}+`, ` ?\p{N}+` and ` ?[^\s\p{L}\p{N}]+` take one leading space.
			if next, _ := classAt(s, i+1); next != classSpace {
				end := runOf(s, i+1, next)
				emit(s[start:end])
				i = end
				continue
			}
		}
		var end int
		if c == classSpace {
			end = whitespaceEnd(s, i)
		} else {
			end = runOf(s, i+w, c)
		}
		emit(s[start:end])
		i = end
	}
}

// splitLlamaText is patternLlama3 (maxDigits 3) or patternQwen2 (maxDigits 1).
func splitLlamaText(s string, maxDigits int, emit func(string)) {
	isCRLF := func(i int) bool { return i < len(s) && (s[i] == '\r' || s[i] == '\n') }
	for i := 0; i < len(s); {
		// (?i:'s|'t|'re|'ve|'m|'ll|'d)
		if n := contraction(s, i, true); n > 0 {
			emit(s[i : i+n])
			i += n
			continue
		}
		c, w := classAt(s, i)
		// [^\r\n\p{L}\p{N}]?\p{L}+
		if c == classLetter {
			end := runOf(s, i, classLetter)
			emit(s[i:end])
			i = end
			continue
		}
		if c != classNumber && !isCRLF(i) && i+w < len(s) {
			if next, _ := classAt(s, i+w); next == classLetter {
				end := runOf(s, i+w, classLetter)
				emit(s[i:end])
				i = end
				continue
			}
		}
		// \p{N}{1,maxDigits}
		if c == classNumber {
			end := i
			for k := 0; k < maxDigits && end < len(s); k++ {
				ck, wk := classAt(s, end)
				if ck != classNumber {
					break
				}
				end += wk
			}
			emit(s[i:end])
			i = end
			continue
		}
		// ` ?[^\s\p{L}\p{N}]+[\r\n]*`
		start := i
		j := i
		if s[j] == ' ' && j+1 < len(s) {
			if next, _ := classAt(s, j+1); next == classOther {
				j++
			}
		}
		if cj, _ := classAt(s, j); cj == classOther {
			end := runOf(s, j, classOther)
			for isCRLF(end) {
				end++
			}
			emit(s[start:end])
			i = end
			continue
		}
		// c is whitespace from here on.
		// \s*[\r\n]+ : the whitespace run up to and including its last CR or LF.
		runEnd := runOf(s, i, classSpace)
		lastNL := -1
		for k := i; k < runEnd; k++ {
			if s[k] == '\r' || s[k] == '\n' {
				lastNL = k
			}
		}
		if lastNL >= 0 {
			emit(s[i : lastNL+1])
			i = lastNL + 1
			continue
		}
		// \s+(?!\S)|\s+
		end := whitespaceEnd(s, i)
		emit(s[i:end])
		i = end
	}
}
