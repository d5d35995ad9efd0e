package data

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Format is the shape of the records in a JSONL or Parquet source.
type Format string

const (
	// FormatAuto picks, per file, from the first record's fields: "messages"
	// means chat, "prompt" completions, "text" text.
	FormatAuto Format = ""
	// FormatText is {"text": "..."}: trained on all of it.
	FormatText Format = "text"
	// FormatCompletions is {"prompt": "...", "completion": "..."}: trained on the
	// completion only.
	FormatCompletions Format = "completions"
	// FormatChat is {"messages": [{"role": "user", "content": "..."}, ...]},
	// rendered with a ChatTemplate and trained on the assistant turns only.
	FormatChat Format = "chat"
)

// A Source is a list of files: plain text (one document per file), JSONL
// (".jsonl", one record per line) or Parquet (".parquet", one record per row).
// Paths may be globs; matches are read in sorted order.
type Source struct {
	Paths  []string
	Format Format
	// Field (or column) names; the defaults are "text", "prompt", "completion"
	// and "messages".
	TextField, PromptField, CompletionField, MessagesField string
	// Chat renders chat records (default DefaultChatTemplate()).
	Chat *ChatTemplate
}

// Stats counts what a source held.
type Stats struct {
	Files     int // files read
	Documents int // documents produced
	Nulls     int // records skipped because a field was null
}

// SourceError places a problem in a data file. Line is the 1-based line of a
// JSONL or text file; Row the 0-based row of a Parquet file (-1 when neither
// applies); Field the record field or Parquet column.
type SourceError struct {
	File  string
	Line  int
	Row   int64
	Field string
	Err   error
}

func (e *SourceError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	switch {
	case e.Line > 0:
		fmt.Fprintf(&b, ":%d", e.Line)
	case e.Row >= 0:
		fmt.Fprintf(&b, ": row %d", e.Row)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ": field %q", e.Field)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

func (e *SourceError) Unwrap() error { return e.Err }

// FieldError is a problem with one field of a record; readers wrap it in a
// SourceError that adds the file and line.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return fmt.Sprintf("field %q: %s", e.Field, e.Msg) }

// errSkip marks a record skipped for a null field.
var errSkip = errors.New("null field")

func (s Source) withDefaults() Source {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&s.TextField, "text")
	def(&s.PromptField, "prompt")
	def(&s.CompletionField, "completion")
	def(&s.MessagesField, "messages")
	if s.Chat == nil {
		t := DefaultChatTemplate()
		s.Chat = &t
	}
	return s
}

// Files expands the globs. A pattern that matches nothing is an error.
func (s Source) Files() ([]string, error) {
	if len(s.Paths) == 0 {
		return nil, errors.New("data source: no paths")
	}
	var files []string
	for _, p := range s.Paths {
		if !strings.ContainsAny(p, "*?[") {
			files = append(files, p)
			continue
		}
		m, err := filepath.Glob(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("%s: no files match", p)
		}
		sort.Strings(m)
		files = append(files, m...)
	}
	return files, nil
}

// Each reads the source in order and calls fn with each document; an error from
// fn stops it. Nothing is held beyond the current record (Parquet: the current
// row group's columns).
func (s Source) Each(fn func(Document) error) (Stats, error) {
	s = s.withDefaults()
	var st Stats
	switch s.Format {
	case FormatAuto, FormatText, FormatCompletions, FormatChat:
	default:
		return st, fmt.Errorf("data source: unknown format %q (want text, completions or chat)", s.Format)
	}
	files, err := s.Files()
	if err != nil {
		return st, err
	}
	for _, f := range files {
		count := func(d Document) error { st.Documents++; return fn(d) }
		switch strings.ToLower(filepath.Ext(f)) {
		case ".jsonl":
			err = s.readJSONL(f, count, &st)
		case ".parquet":
			err = s.readParquet(f, count, &st)
		default:
			err = s.readText(f, count)
		}
		if err != nil {
			return st, err
		}
		st.Files++
	}
	if st.Documents == 0 {
		return st, fmt.Errorf("data source %s: no documents", strings.Join(files, ", "))
	}
	return st, nil
}

// Load reads and tokenizes the whole source (see Tokenize).
func (s Source) Load(tok Tokenizer) ([]Example, Stats, error) {
	var out []Example
	st, err := s.Each(func(d Document) error {
		out = append(out, Tokenize(tok, d))
		return nil
	})
	if err != nil {
		return nil, st, err
	}
	return out, st, nil
}

func (s Source) readText(path string, fn func(Document) error) error {
	if s.Format != FormatAuto && s.Format != FormatText {
		return &SourceError{File: path, Row: -1, Err: fmt.Errorf("format %q needs a .jsonl or .parquet file; a plain text file is format text", s.Format)}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if len(b) == 0 {
		return &SourceError{File: path, Row: -1, Err: errors.New("empty file")}
	}
	return fn(TextDocument(string(b)))
}

func (s Source) readJSONL(path string, fn func(Document) error, st *Stats) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<16)
	format := s.Format
	records := 0
	for line := 1; ; line++ {
		b, err := r.ReadBytes('\n')
		if err != nil && err != io.EOF {
			return &SourceError{File: path, Line: line, Err: err}
		}
		if trimmed := bytes.TrimSpace(b); len(trimmed) > 0 {
			records++
			doc, ferr := s.parseRecord(trimmed, &format)
			switch {
			case ferr == errSkip:
				st.Nulls++
			case ferr != nil:
				se := &SourceError{File: path, Line: line, Row: -1, Err: ferr}
				var fe *FieldError
				if errors.As(ferr, &fe) {
					se.Field, se.Err = fe.Field, errors.New(fe.Msg)
				}
				return se
			default:
				if err := fn(doc); err != nil {
					return err
				}
			}
		}
		if err == io.EOF {
			break
		}
	}
	if records == 0 {
		return &SourceError{File: path, Row: -1, Err: errors.New("empty file (no records)")}
	}
	return nil
}

func jsonKind(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

// stringField returns a record's string field; errSkip when it is null.
func stringField(rec map[string]json.RawMessage, name string) (string, error) {
	v, ok := rec[name]
	if !ok {
		return "", &FieldError{Field: name, Msg: "missing"}
	}
	switch k := jsonKind(v); k {
	case "null":
		return "", errSkip
	case "string":
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", &FieldError{Field: name, Msg: err.Error()}
		}
		return s, nil
	default:
		return "", &FieldError{Field: name, Msg: fmt.Sprintf("got %s, want string", k)}
	}
}

// parseRecord turns one JSON object into a document. *format is settled from
// the first record when it is FormatAuto.
func (s Source) parseRecord(line []byte, format *Format) (Document, error) {
	var rec map[string]json.RawMessage
	if err := json.Unmarshal(line, &rec); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return Document{}, fmt.Errorf("got a JSON %s, want an object", ute.Value)
		}
		return Document{}, fmt.Errorf("invalid JSON: %v", err)
	}
	if *format == FormatAuto {
		switch {
		case rec[s.MessagesField] != nil:
			*format = FormatChat
		case rec[s.PromptField] != nil:
			*format = FormatCompletions
		case rec[s.TextField] != nil:
			*format = FormatText
		default:
			return Document{}, fmt.Errorf("cannot tell the format: no %q, %q or %q field (set the format)", s.TextField, s.PromptField, s.MessagesField)
		}
	}
	switch *format {
	case FormatText:
		text, err := stringField(rec, s.TextField)
		if err != nil {
			return Document{}, err
		}
		return TextDocument(text), nil
	case FormatCompletions:
		prompt, err := stringField(rec, s.PromptField)
		if err != nil {
			return Document{}, err
		}
		completion, err := stringField(rec, s.CompletionField)
		if err != nil {
			return Document{}, err
		}
		return CompletionDocument(prompt, completion), nil
	}
	v, ok := rec[s.MessagesField]
	if !ok {
		return Document{}, &FieldError{Field: s.MessagesField, Msg: "missing"}
	}
	if k := jsonKind(v); k == "null" {
		return Document{}, errSkip
	} else if k != "array" {
		return Document{}, &FieldError{Field: s.MessagesField, Msg: fmt.Sprintf("got %s, want an array of messages", k)}
	}
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal(v, &raw); err != nil {
		return Document{}, &FieldError{Field: s.MessagesField, Msg: "want an array of objects with role and content"}
	}
	msgs := make([]Message, len(raw))
	for i, m := range raw {
		for _, f := range []struct {
			name string
			dst  *string
		}{{"role", &msgs[i].Role}, {"content", &msgs[i].Content}} {
			str, err := stringField(m, f.name)
			if err == errSkip {
				err = &FieldError{Field: f.name, Msg: "null"}
			}
			var fe *FieldError
			if errors.As(err, &fe) {
				return Document{}, &FieldError{Field: fmt.Sprintf("%s[%d].%s", s.MessagesField, i, f.name), Msg: fe.Msg}
			}
			*f.dst = str
		}
	}
	doc, err := s.Chat.Render(msgs)
	var fe *FieldError
	if errors.As(err, &fe) && s.MessagesField != "messages" {
		fe.Field = s.MessagesField + strings.TrimPrefix(fe.Field, "messages")
	}
	return doc, err
}

// SplitSeeded divides items into train, validation and test parts with the given
// fractions, after a permutation fixed by seed: the same seed and items give the
// same parts on every machine. Each non-zero fraction gets at least one item.
func SplitSeeded[T any](items []T, validFrac, testFrac float64, seed uint64) (train, valid, test []T, err error) {
	if validFrac < 0 || testFrac < 0 || validFrac+testFrac >= 1 {
		return nil, nil, nil, fmt.Errorf("split: fractions valid %g and test %g must be >= 0 and sum below 1", validFrac, testFrac)
	}
	n := len(items)
	count := func(f float64) int {
		if f == 0 {
			return 0
		}
		return max(1, int(f*float64(n)+0.5))
	}
	nv, nt := count(validFrac), count(testFrac)
	if nv+nt >= n {
		return nil, nil, nil, fmt.Errorf("split: %d items are too few for valid %g and test %g with a training part left", n, validFrac, testFrac)
	}
	perm := newRNG(seed, stringSeed("split")).perm(n)
	pick := func(idx []int) []T {
		out := make([]T, len(idx))
		for i, j := range idx {
			out[i] = items[j]
		}
		return out
	}
	return pick(perm[nv+nt:]), pick(perm[:nv]), pick(perm[nv : nv+nt]), nil
}
