package data

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/parquet-go/parquet-go"
)

// readParquet reads the text (or prompt and completion) columns one row group at
// a time: only that row group's values of those columns are in memory at once.
// A row with a null in any column read is skipped and counted.
func (s Source) readParquet(path string, fn func(Document) error, st *Stats) (err error) {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	fail := func(row int64, field string, e error) error {
		return &SourceError{File: path, Row: row, Field: field, Err: e}
	}
	// parquet-go trusts the file's metadata in places; a corrupt file must give
	// an error, not bring the program down.
	defer func() {
		if r := recover(); r != nil {
			err = fail(-1, "", fmt.Errorf("corrupt Parquet file: %v", r))
		}
	}()
	pf, err := parquet.OpenFile(f, info.Size(), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return fail(-1, "", fmt.Errorf("not a readable Parquet file: %w", err))
	}
	schema := pf.Schema()
	has := func(name string) bool { _, ok := schema.Lookup(name); return ok }
	format := s.Format
	if format == FormatAuto {
		switch {
		case has(s.PromptField):
			format = FormatCompletions
		case has(s.TextField):
			format = FormatText
		default:
			return fail(-1, "", fmt.Errorf("cannot tell the format: no %q or %q column (columns: %s)", s.TextField, s.PromptField, columnList(schema)))
		}
	}
	var names []string
	switch format {
	case FormatText:
		names = []string{s.TextField}
	case FormatCompletions:
		names = []string{s.PromptField, s.CompletionField}
	default:
		return fail(-1, "", fmt.Errorf("format %q is not supported for Parquet (use text or completions)", format))
	}
	cols := make([]int, len(names))
	for i, name := range names {
		leaf, ok := schema.Lookup(name)
		if !ok {
			return fail(-1, name, fmt.Errorf("no such column (columns: %s)", columnList(schema)))
		}
		if k := leaf.Node.Type().Kind(); k != parquet.ByteArray || leaf.MaxRepetitionLevel > 0 {
			what := k.String()
			if leaf.MaxRepetitionLevel > 0 {
				what = "repeated " + what
			}
			return fail(-1, name, fmt.Errorf("column type %s, want a string (BYTE_ARRAY)", what))
		}
		cols[i] = leaf.ColumnIndex
	}
	if pf.NumRows() == 0 {
		return fail(-1, "", errors.New("empty file (no rows)"))
	}

	var base int64
	values := make([][]*string, len(cols))
	for _, rg := range pf.RowGroups() {
		chunks := rg.ColumnChunks()
		n := rg.NumRows()
		for i, c := range cols {
			if c >= len(chunks) {
				return fail(base, names[i], errors.New("corrupt Parquet file: column chunk missing"))
			}
			vals, err := readStrings(chunks[c], values[i][:0])
			if err != nil {
				return fail(base, names[i], fmt.Errorf("corrupt Parquet data: %w", err))
			}
			if int64(len(vals)) != n {
				return fail(base, names[i], fmt.Errorf("corrupt Parquet file: row group has %d rows but the column %d values", n, len(vals)))
			}
			values[i] = vals
		}
		for r := int64(0); r < n; r++ {
			null := false
			for i := range cols {
				null = null || values[i][r] == nil
			}
			if null {
				st.Nulls++
				continue
			}
			var doc Document
			if format == FormatText {
				doc = TextDocument(*values[0][r])
			} else {
				doc = CompletionDocument(*values[0][r], *values[1][r])
			}
			if err := fn(doc); err != nil {
				return err
			}
		}
		base += n
	}
	return nil
}

// readStrings appends a column chunk's values to dst, nil for a null.
func readStrings(chunk parquet.ColumnChunk, dst []*string) ([]*string, error) {
	pages := chunk.Pages()
	defer pages.Close()
	buf := make([]parquet.Value, 256)
	for {
		p, err := pages.ReadPage()
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
		r := p.Values()
		for {
			n, err := r.ReadValues(buf)
			for _, v := range buf[:n] {
				if v.IsNull() {
					dst = append(dst, nil)
					continue
				}
				s := string(v.ByteArray())
				dst = append(dst, &s)
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				parquet.Release(p)
				return dst, err
			}
			if n == 0 {
				break
			}
		}
		parquet.Release(p)
	}
}

func columnList(s *parquet.Schema) string {
	var names []string
	for _, c := range s.Columns() {
		names = append(names, strings.Join(c, "."))
	}
	return strings.Join(names, ", ")
}
