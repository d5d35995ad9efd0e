package recipes

import (
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// keyLines maps each key path defined in a TOML text to the 1-based line that
// defines it: a key = value line, a [table] header, or the first line that
// creates a table implicitly (a.b.c = 1 creates a and a.b). BurntSushi/toml
// keeps its key positions private, so this scanner finds them again.
//
// It is meant for text the TOML parser has accepted, and is tolerant of
// anything else: it never panics, and on text it does not understand it skips
// to the next line. Keys inside arrays are not recorded (recipes have no
// arrays of tables). Paths are joined with pathSep.
func keyLines(src string) map[string]int {
	s := &keyScanner{src: src, lines: map[string]int{}}
	for i := 0; i < len(src); i++ {
		if src[i] == '\n' {
			s.newlines = append(s.newlines, i)
		}
	}
	s.run()
	return s.lines
}

// pathSep joins key pieces in keyLines' map; it cannot occur in a TOML key
// without an escape, and recipe keys never hold it.
const pathSep = "\x00"

type keyScanner struct {
	src      string
	i        int
	newlines []int // offsets of '\n'
	lines    map[string]int
}

// lineAt returns the 1-based line of byte offset off.
func (s *keyScanner) lineAt(off int) int {
	return sort.SearchInts(s.newlines, off) + 1
}

func (s *keyScanner) eof() bool { return s.i >= len(s.src) }

func (s *keyScanner) peek(k int) byte {
	if s.i+k < len(s.src) {
		return s.src[s.i+k]
	}
	return 0
}

// record notes the line of path and of each of its prefixes, keeping the
// first line seen for each.
func (s *keyScanner) record(path []string, line int) {
	for n := 1; n <= len(path); n++ {
		k := strings.Join(path[:n], pathSep)
		if _, ok := s.lines[k]; !ok {
			s.lines[k] = line
		}
	}
}

// skipBlank skips spaces and tabs; with newlines, also line ends and comments.
func (s *keyScanner) skipBlank(newlines bool) {
	for !s.eof() {
		switch c := s.src[s.i]; {
		case c == ' ' || c == '\t':
			s.i++
		case newlines && (c == '\n' || c == '\r'):
			s.i++
		case newlines && c == '#':
			s.skipLine()
		default:
			return
		}
	}
}

// skipLine moves past the next '\n'.
func (s *keyScanner) skipLine() {
	for !s.eof() && s.src[s.i] != '\n' {
		s.i++
	}
	if !s.eof() {
		s.i++
	}
}

func (s *keyScanner) run() {
	var table []string
	for {
		s.skipBlank(true)
		if s.eof() {
			return
		}
		start := s.i
		line := s.lineAt(s.i)
		if s.src[s.i] == '[' {
			s.i++
			if s.peek(0) == '[' {
				s.i++
			}
			key := s.key()
			if len(key) > 0 {
				table = key
				s.record(key, line)
			}
			s.skipLine()
			continue
		}
		key := s.key()
		s.skipBlank(false)
		if len(key) == 0 || s.peek(0) != '=' {
			s.skipLine()
			continue
		}
		s.i++
		path := append(append([]string{}, table...), key...)
		s.record(path, line)
		s.value(path)
		if s.i <= start { // cannot happen; guarantees progress all the same
			s.skipLine()
		}
	}
}

// key reads a dotted key (bare and quoted pieces) and returns its pieces, or
// nil if there is none.
func (s *keyScanner) key() []string {
	var out []string
	for {
		s.skipBlank(false)
		if s.eof() {
			return out
		}
		var piece string
		switch c := s.src[s.i]; {
		case c == '"':
			piece = s.basicString()
		case c == '\'':
			piece = s.literalString()
		default:
			start := s.i
			for !s.eof() && !strings.ContainsRune(" \t\r\n=.[]{},#\"'", rune(s.src[s.i])) {
				s.i++
			}
			if s.i == start {
				return out
			}
			piece = s.src[start:s.i]
		}
		out = append(out, piece)
		s.skipBlank(false)
		if s.peek(0) != '.' {
			return out
		}
		s.i++
	}
}

// value skips one value; inside an inline table it records the keys under
// path (nil: record nothing, as inside arrays).
func (s *keyScanner) value(path []string) {
	s.skipBlank(false)
	if s.eof() {
		return
	}
	switch s.src[s.i] {
	case '"':
		if strings.HasPrefix(s.src[s.i:], `"""`) {
			s.multiline('"')
		} else {
			s.basicString()
		}
	case '\'':
		if strings.HasPrefix(s.src[s.i:], `'''`) {
			s.multiline('\'')
		} else {
			s.literalString()
		}
	case '[':
		s.i++
		for {
			s.skipBlank(true)
			if s.eof() {
				return
			}
			switch s.src[s.i] {
			case ']':
				s.i++
				return
			case ',':
				s.i++
			default:
				before := s.i
				s.value(nil)
				if s.i == before {
					s.i++ // a stray byte; move on
				}
			}
		}
	case '{':
		s.i++
		for {
			s.skipBlank(true)
			if s.eof() {
				return
			}
			switch s.src[s.i] {
			case '}':
				s.i++
				return
			case ',':
				s.i++
			default:
				line := s.lineAt(s.i)
				key := s.key()
				s.skipBlank(false)
				if len(key) == 0 || s.peek(0) != '=' {
					s.i++ // not a key = value; move on
					continue
				}
				s.i++
				var sub []string
				if path != nil {
					sub = append(append([]string{}, path...), key...)
					s.record(sub, line)
				}
				s.value(sub)
			}
		}
	default: // a number, boolean or datetime: up to a delimiter
		for !s.eof() && !strings.ContainsRune(",]}#\r\n", rune(s.src[s.i])) {
			s.i++
		}
	}
}

// basicString reads a "..." string and returns its value (escapes decoded
// well enough to match the parser's key).
func (s *keyScanner) basicString() string {
	s.i++ // opening quote
	var b strings.Builder
	for !s.eof() {
		c := s.src[s.i]
		switch {
		case c == '"':
			s.i++
			return b.String()
		case c == '\n':
			return b.String()
		case c == '\\' && s.i+1 < len(s.src):
			s.i += 2
			switch e := s.src[s.i-1]; e {
			case 'b':
				b.WriteByte('\b')
			case 't':
				b.WriteByte('\t')
			case 'n':
				b.WriteByte('\n')
			case 'f':
				b.WriteByte('\f')
			case 'r':
				b.WriteByte('\r')
			case 'e':
				b.WriteByte(0x1b)
			case 'x', 'u', 'U':
				n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
				if s.i+n <= len(s.src) {
					if v, err := strconv.ParseUint(s.src[s.i:s.i+n], 16, 32); err == nil && utf8.ValidRune(rune(v)) {
						b.WriteRune(rune(v))
						s.i += n
						continue
					}
				}
				b.WriteByte(e)
			default:
				b.WriteByte(e)
			}
		default:
			b.WriteByte(c)
			s.i++
		}
	}
	return b.String()
}

// literalString reads a '...' string.
func (s *keyScanner) literalString() string {
	s.i++
	start := s.i
	for !s.eof() && s.src[s.i] != '\'' && s.src[s.i] != '\n' {
		s.i++
	}
	v := s.src[start:s.i]
	if !s.eof() && s.src[s.i] == '\'' {
		s.i++
	}
	return v
}

// multiline skips a """...""" or ”'...”' string. Up to two quotes may
// directly precede the closing three.
func (s *keyScanner) multiline(q byte) {
	s.i += 3
	for !s.eof() {
		c := s.src[s.i]
		if c == '\\' && q == '"' {
			s.i += 2
			continue
		}
		if c == q && s.peek(1) == q && s.peek(2) == q {
			for !s.eof() && s.src[s.i] == q {
				s.i++
			}
			return
		}
		s.i++
	}
}
