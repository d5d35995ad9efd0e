package generate

import (
	"bytes"
	"io"
	"slices"
	"unicode/utf8"
)

// TextStream turns tokens into text as they are generated and writes it to W:
// a token's bytes are written once they complete their UTF-8 characters (a
// byte-level token may end inside one), and text that could begin a stop string
// is held back until it is known not to. When a stop string appears, the text
// before it is written and Add returns false.
type TextStream struct {
	W      io.Writer
	Decode func(ids []int32) string // the tokenizer's
	Stops  []string                 // stop strings (not written)
	Skip   []int32                  // tokens not written (EOS)

	held    []byte
	stopped bool
	err     error
}

// Add appends tok's text; false means a stop string was met (or writing
// failed) and generation should stop.
func (s *TextStream) Add(tok int32) bool {
	if s.stopped || s.err != nil {
		return false
	}
	if slices.Contains(s.Skip, tok) {
		return true
	}
	s.held = append(s.held, s.Decode([]int32{tok})...)
	cut := -1
	for _, stop := range s.Stops {
		if i := bytes.Index(s.held, []byte(stop)); stop != "" && i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	if cut >= 0 {
		s.write(s.held[:cut])
		s.held, s.stopped = nil, true
		return false
	}
	n := completeUTF8(s.held)
	for _, stop := range s.Stops {
		n = min(n, len(s.held)-stopPrefix(s.held, stop))
	}
	s.write(s.held[:n])
	s.held = append(s.held[:0], s.held[n:]...)
	return s.err == nil
}

// Close writes what is held (a partial character included) and returns the
// first write error.
func (s *TextStream) Close() error {
	s.write(s.held)
	s.held = nil
	return s.err
}

// Stopped reports whether a stop string ended the text.
func (s *TextStream) Stopped() bool { return s.stopped }

func (s *TextStream) write(b []byte) {
	if len(b) > 0 && s.err == nil {
		_, s.err = s.W.Write(b)
	}
}

// completeUTF8 is the length of b's longest prefix that does not end inside a
// UTF-8 sequence (invalid bytes count as complete).
func completeUTF8(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return i
			}
			break
		}
	}
	return len(b)
}

// stopPrefix is the length of the longest suffix of b that is a proper prefix
// of stop.
func stopPrefix(b []byte, stop string) int {
	for n := min(len(b), len(stop)-1); n > 0; n-- {
		if string(b[len(b)-n:]) == stop[:n] {
			return n
		}
	}
	return 0
}
