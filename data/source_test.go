package data

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	return p
}

func readAll(t *testing.T, s Source) ([]Document, Stats, error) {
	t.Helper()
	var docs []Document
	st, err := s.Each(func(d Document) error { docs = append(docs, d); return nil })
	return docs, st, err
}

func TestJSONLFormats(t *testing.T) {
	dir := t.TempDir()
	text := writeFile(t, dir, "text.jsonl", `{"text": "hello"}`+"\n\n"+`{"text": null}`+"\n"+`{"text": "world", "extra": 1}`)
	comp := writeFile(t, dir, "comp.jsonl", `{"prompt": "2+2=", "completion": "4"}`+"\n")
	chat := writeFile(t, dir, "chat.jsonl", `{"messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}`+"\n")
	custom := writeFile(t, dir, "custom.jsonl", `{"q": "a", "a": "b"}`+"\n")

	docs, st, err := readAll(t, Source{Paths: []string{text}})
	require.NoError(t, err)
	assert.Equal(t, []Document{TextDocument("hello"), TextDocument("world")}, docs)
	assert.Equal(t, Stats{Files: 1, Documents: 2, Nulls: 1}, st)

	docs, _, err = readAll(t, Source{Paths: []string{comp}})
	require.NoError(t, err)
	assert.Equal(t, []Document{CompletionDocument("2+2=", "4")}, docs)

	docs, _, err = readAll(t, Source{Paths: []string{chat}})
	require.NoError(t, err)
	require.Len(t, docs, 1)
	assert.Equal(t, "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n", docs[0].String())
	var trained []string
	for _, s := range docs[0].Segments {
		if s.Loss {
			trained = append(trained, s.Text)
		}
	}
	assert.Equal(t, []string{"Hello.<|im_end|>\n"}, trained)

	docs, _, err = readAll(t, Source{Paths: []string{custom}, Format: FormatCompletions, PromptField: "q", CompletionField: "a"})
	require.NoError(t, err)
	assert.Equal(t, []Document{CompletionDocument("a", "b")}, docs)

	// Globs expand in sorted order; plain text files are one document each.
	writeFile(t, dir, "b.txt", "second")
	writeFile(t, dir, "a.txt", "first\n")
	docs, st, err = readAll(t, Source{Paths: []string{filepath.Join(dir, "*.txt"), comp}})
	require.NoError(t, err)
	assert.Equal(t, []Document{TextDocument("first\n"), TextDocument("second"), CompletionDocument("2+2=", "4")}, docs)
	assert.Equal(t, 3, st.Files)

	// A line longer than any buffer.
	long := strings.Repeat("x", 1<<20)
	big := writeFile(t, dir, "big.jsonl", `{"text": "`+long+`"}`)
	docs, _, err = readAll(t, Source{Paths: []string{big}})
	require.NoError(t, err)
	assert.Equal(t, long, docs[0].String())
}

func TestTokenizeMasks(t *testing.T) {
	tok := NewByteTokenizer()
	ex := Tokenize(tok, CompletionDocument("ab", "c"))
	assert.Equal(t, []int32{'a', 'b', 'c', ByteEOS}, ex.Tokens)
	assert.Equal(t, []bool{false, false, true, true}, ex.Mask)

	src := Source{Paths: []string{writeFile(t, t.TempDir(), "c.jsonl", `{"prompt":"x","completion":"yz"}`)}}
	exs, st, err := src.Load(tok)
	require.NoError(t, err)
	assert.Equal(t, 1, st.Documents)
	assert.Equal(t, []Example{{Tokens: []int32{'x', 'y', 'z', ByteEOS}, Mask: []bool{false, true, true, true}}}, exs)
}

func TestSourceErrors(t *testing.T) {
	dir := t.TempDir()
	f := func(name, content string) string { return writeFile(t, dir, name, content) }
	good := `{"prompt": "p", "completion": "c"}` + "\n"
	cases := []struct {
		name string
		src  Source
		want string // %s is the file's path
	}{
		{"missing file", Source{Paths: []string{filepath.Join(dir, "nope.jsonl")}}, "open %s: no such file or directory"},
		{"no glob match", Source{Paths: []string{filepath.Join(dir, "*.none")}}, "%s: no files match"},
		{"no paths", Source{}, "data source: no paths"},
		{"bad json", Source{Paths: []string{f("bad.jsonl", good+good+"{\"prompt\": \n")}}, "%s:3: invalid JSON: unexpected end of JSON input"},
		{"missing field", Source{Paths: []string{f("missing.jsonl", strings.Repeat(good, 16)+`{"prompt": "p"}`+"\n")}}, `%s:17: field "completion": missing`},
		{"missing prompt", Source{Paths: []string{f("missingp.jsonl", `{"completion": "c"}`)}, Format: FormatCompletions}, `%s:1: field "prompt": missing`},
		{"wrong type", Source{Paths: []string{f("type.jsonl", `{"text": 12}`)}}, `%s:1: field "text": got number, want string`},
		{"not an object", Source{Paths: []string{f("array.jsonl", `["text"]`)}}, `%s:1: got a JSON array, want an object`},
		{"empty file", Source{Paths: []string{f("empty.jsonl", "")}}, "%s: empty file (no records)"},
		{"blank file", Source{Paths: []string{f("blank.jsonl", "\n  \n")}}, "%s: empty file (no records)"},
		{"empty text file", Source{Paths: []string{f("empty.txt", "")}}, "%s: empty file"},
		{"only nulls", Source{Paths: []string{f("nulls.jsonl", `{"text": null}`)}}, "data source %s: no documents"},
		{"unknown fields", Source{Paths: []string{f("unknown.jsonl", `{"body": "x"}`)}}, `%s:1: cannot tell the format: no "text", "prompt" or "messages" field (set the format)`},
		{"unknown format", Source{Paths: []string{f("x.jsonl", good)}, Format: "qa"}, `data source: unknown format "qa" (want text, completions or chat)`},
		{"text file as completions", Source{Paths: []string{f("t.txt", "x")}, Format: FormatCompletions}, `%s: format "completions" needs a .jsonl or .parquet file; a plain text file is format text`},
		{"chat role", Source{Paths: []string{f("role.jsonl", `{"messages": [{"role": "user", "content": "a"}, {"role": "asistant", "content": "b"}]}`)}}, `%s:1: field "messages[1].role": unknown role "asistant" (want one of system, user, assistant)`},
		{"chat content type", Source{Paths: []string{f("content.jsonl", `{"messages": [{"role": "assistant", "content": 3}]}`)}}, `%s:1: field "messages[0].content": got number, want string`},
		{"chat content missing", Source{Paths: []string{f("nocontent.jsonl", `{"messages": [{"role": "assistant"}]}`)}}, `%s:1: field "messages[0].content": missing`},
		{"chat not array", Source{Paths: []string{f("notarray.jsonl", `{"messages": "hi"}`)}}, `%s:1: field "messages": got string, want an array of messages`},
		{"chat array of numbers", Source{Paths: []string{f("nums.jsonl", `{"messages": [1]}`)}}, `%s:1: field "messages": want an array of objects with role and content`},
		{"chat no assistant", Source{Paths: []string{f("noasst.jsonl", `{"messages": [{"role": "user", "content": "a"}]}`)}}, `%s:1: field "messages": no turn to train on (no assistant message)`},
		{"chat empty", Source{Paths: []string{f("nomsg.jsonl", `{"messages": []}`)}}, `%s:1: field "messages": empty`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := readAll(t, c.src)
			require.Error(t, err)
			want := c.want
			if strings.Contains(want, "%s") {
				want = fmt.Sprintf(want, strings.Join(c.src.Paths, ", "))
			}
			assert.Equal(t, want, err.Error())
		})
	}
	// The error is a SourceError with its parts.
	_, _, err := readAll(t, Source{Paths: []string{f("parts.jsonl", good+`{"prompt": 1, "completion": "c"}`)}})
	var se *SourceError
	require.True(t, errors.As(err, &se))
	assert.Equal(t, 2, se.Line)
	assert.Equal(t, "prompt", se.Field)
	assert.Equal(t, "got number, want string", se.Err.Error())
}

func TestChatTemplateCustom(t *testing.T) {
	tmpl := ChatTemplate{
		Header:    map[string]string{"human": "H: ", "bot": "B: "},
		EndOfTurn: "\n",
		Trained:   map[string]bool{"bot": true},
	}
	d, err := tmpl.Render([]Message{{"human", "hi"}, {"bot", "yo"}})
	require.NoError(t, err)
	assert.Equal(t, "H: hi\nB: yo\n", d.String())
	_, err = tmpl.Render([]Message{{"user", "x"}})
	assert.EqualError(t, err, `field "messages[0].role": unknown role "user" (want one of bot, human)`)

	p := writeFile(t, t.TempDir(), "c.jsonl", `{"turns": [{"role": "human", "content": "a"}, {"role": "robot", "content": "b"}]}`)
	_, _, err = readAll(t, Source{Paths: []string{p}, Format: FormatChat, MessagesField: "turns", Chat: &tmpl})
	assert.EqualError(t, err, p+`:1: field "turns[1].role": unknown role "robot" (want one of bot, human)`)
}

type textRow struct {
	Text *string `parquet:"text,optional"`
	N    int64   `parquet:"n"`
}

type qaRow struct {
	Q *string `parquet:"question,optional"`
	A *string `parquet:"answer,optional"`
}

func writeParquet[T any](t *testing.T, path string, rows []T, codec compress.Codec, perGroup int64) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	w := parquet.NewGenericWriter[T](f, parquet.Compression(codec), parquet.MaxRowsPerRowGroup(perGroup))
	_, err = w.Write(rows)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.NoError(t, f.Close())
}

func strp(s string) *string { return &s }

func TestParquetRowGroupsAndNulls(t *testing.T) {
	dir := t.TempDir()
	var rows []textRow
	var want []Document
	nulls := 0
	for i := 0; i < 23; i++ {
		if i%5 == 3 {
			rows = append(rows, textRow{N: int64(i)})
			nulls++
			continue
		}
		s := fmt.Sprintf("row %d: %s", i, strings.Repeat("é", i))
		rows = append(rows, textRow{Text: &s, N: int64(i)})
		want = append(want, TextDocument(s))
	}
	for name, codec := range map[string]compress.Codec{"zstd": &parquet.Zstd, "snappy": &parquet.Snappy} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name+".parquet")
			writeParquet(t, path, rows, codec, 4)
			// The file really has several row groups.
			f, err := os.Open(path)
			require.NoError(t, err)
			info, _ := f.Stat()
			pf, err := parquet.OpenFile(f, info.Size())
			require.NoError(t, err)
			assert.Len(t, pf.RowGroups(), 6)
			f.Close()

			docs, st, err := readAll(t, Source{Paths: []string{path}})
			require.NoError(t, err)
			assert.Equal(t, want, docs)
			assert.Equal(t, Stats{Files: 1, Documents: len(want), Nulls: nulls}, st)
		})
	}

	qa := []qaRow{{strp("1+1="), strp("2")}, {strp("no answer"), nil}, {nil, strp("no question")}, {strp("2+2="), strp("4")}}
	path := filepath.Join(dir, "qa.parquet")
	writeParquet(t, path, qa, &parquet.Snappy, 1)
	docs, st, err := readAll(t, Source{Paths: []string{path}, PromptField: "question", CompletionField: "answer", Format: FormatCompletions})
	require.NoError(t, err)
	assert.Equal(t, []Document{CompletionDocument("1+1=", "2"), CompletionDocument("2+2=", "4")}, docs)
	assert.Equal(t, 2, st.Nulls)
}

func TestParquetErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.parquet")
	writeParquet(t, good, []textRow{{Text: strp("a")}, {Text: strp("b")}}, &parquet.Zstd, 1)
	raw, err := os.ReadFile(good)
	require.NoError(t, err)
	truncated := writeFile(t, dir, "truncated.parquet", string(raw[:len(raw)/2]))
	garbage := writeFile(t, dir, "garbage.parquet", "PAR1 this is not parquet at all PAR1")
	// Damage the page data but keep the footer: decompression must fail cleanly.
	damaged := []byte(string(raw))
	for i := 8; i < len(damaged)/2; i++ {
		damaged[i] ^= 0x5a
	}
	dmg := writeFile(t, dir, "damaged.parquet", string(damaged))
	empty := filepath.Join(dir, "empty.parquet")
	writeParquet(t, empty, []textRow{}, &parquet.Zstd, 1)

	cases := []struct {
		name string
		src  Source
		want string
	}{
		{"truncated", Source{Paths: []string{truncated}}, truncated + ": not a readable Parquet file"},
		{"garbage", Source{Paths: []string{garbage}}, garbage + ": not a readable Parquet file"},
		{"damaged", Source{Paths: []string{dmg}}, dmg + `: row 0: field "text": corrupt Parquet`},
		{"missing column", Source{Paths: []string{good}, Format: FormatText, TextField: "body"}, good + `: field "body": no such column (columns: text, n)`},
		{"wrong type", Source{Paths: []string{good}, Format: FormatText, TextField: "n"}, good + `: field "n": column type INT64, want a string (BYTE_ARRAY)`},
		{"cannot tell", Source{Paths: []string{good}, TextField: "body"}, good + `: cannot tell the format: no "body" or "prompt" column (columns: text, n)`},
		{"chat", Source{Paths: []string{good}, Format: FormatChat}, good + `: format "chat" is not supported for Parquet (use text or completions)`},
		{"missing completion", Source{Paths: []string{good}, Format: FormatCompletions, PromptField: "text"}, good + `: field "completion": no such column (columns: text, n)`},
		{"empty", Source{Paths: []string{empty}}, empty + ": empty file (no rows)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := readAll(t, c.src)
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), c.want), "got %q\nwant prefix %q", err, c.want)
		})
	}
}

// Whatever the damage, reading gives documents or an error naming the file;
// it never panics.
func TestParquetCorruptionNeverPanics(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.parquet")
	var rows []qaRow
	for i := 0; i < 20; i++ {
		rows = append(rows, qaRow{strp(fmt.Sprint("q", i)), strp(fmt.Sprint("a", i))})
	}
	writeParquet(t, good, rows, &parquet.Snappy, 3)
	raw, err := os.ReadFile(good)
	require.NoError(t, err)
	r := newRNG(1)
	for i := 0; i < 300; i++ {
		b := []byte(string(raw))
		for k := 0; k < 1+r.intn(3); k++ {
			b[r.intn(len(b))] = byte(r.intn(256))
		}
		p := writeFile(t, dir, "bad.parquet", string(b))
		_, _, err := readAll(t, Source{Paths: []string{p}, PromptField: "question", CompletionField: "answer"})
		if err != nil {
			require.Contains(t, err.Error(), p)
		}
	}
}

func TestSplitSeeded(t *testing.T) {
	items := make([]int, 100)
	for i := range items {
		items[i] = i
	}
	tr, va, te, err := SplitSeeded(items, 0.1, 0.05, 42)
	require.NoError(t, err)
	assert.Len(t, tr, 85)
	assert.Len(t, va, 10)
	assert.Len(t, te, 5)
	all := slices.Concat(tr, va, te)
	slices.Sort(all)
	assert.Equal(t, items, all, "the parts cover the items once")

	tr2, va2, te2, err := SplitSeeded(items, 0.1, 0.05, 42)
	require.NoError(t, err)
	assert.Equal(t, [][]int{tr, va, te}, [][]int{tr2, va2, te2}, "same seed, same split")
	_, va3, _, err := SplitSeeded(items, 0.1, 0.05, 43)
	require.NoError(t, err)
	assert.NotEqual(t, va, va3)
	// Fixed for all time (our generator, not math/rand's).
	assert.Equal(t, []int{65, 5, 13, 22, 32}, te)

	_, va, _, err = SplitSeeded(items[:3], 0.01, 0, 1)
	require.NoError(t, err)
	assert.Len(t, va, 1, "a non-zero fraction gets at least one item")

	for _, c := range []struct {
		n      int
		va, te float64
		want   string
	}{
		{10, -0.1, 0, "must be >= 0"},
		{10, 0.5, 0.5, "sum below 1"},
		{2, 0.3, 0.3, "too few"},
	} {
		_, _, _, err := SplitSeeded(items[:c.n], c.va, c.te, 1)
		assert.ErrorContains(t, err, c.want)
	}
}

// testdata/duckdb_completions.parquet was written by DuckDB 1.5.6 (another
// writer than parquet-go): 5000 rows in 3 row groups, zstd, nulls in both
// columns. Row i holds prompt "q<i> " + "é"*(i%5) (null when i%4 == 3) and
// completion "a<i*i>" (null when i%7 == 5).
func TestParquetWrittenByDuckDB(t *testing.T) {
	var want []Document
	nulls := 0
	for i := 0; i < 5000; i++ {
		if i%4 == 3 || i%7 == 5 {
			nulls++
			continue
		}
		want = append(want, CompletionDocument(fmt.Sprintf("q%d %s", i, strings.Repeat("é", i%5)), fmt.Sprintf("a%d", i*i)))
	}
	docs, st, err := readAll(t, Source{Paths: []string{"testdata/duckdb_completions.parquet"}})
	require.NoError(t, err)
	assert.Equal(t, nulls, st.Nulls)
	assert.Equal(t, want, docs)
}
