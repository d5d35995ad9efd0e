package data

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"
)

func benchText(b *testing.B) string {
	return strings.Repeat(corpus(b), 40) // about 46 KB
}

func BenchmarkEncodeBPE(b *testing.B) {
	tok, err := LoadTokenizer("testdata/tokenizer_gpt2.json")
	require.NoError(b, err)
	text := benchText(b)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		tok.Encode(text)
	}
}

func BenchmarkEncodeBytes(b *testing.B) {
	tok := NewByteTokenizer()
	text := benchText(b)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		tok.Encode(text)
	}
}

func BenchmarkTrainBPE(b *testing.B) {
	text := benchText(b)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		_, err := TrainBPE([]string{text}, 1000, BPEOptions{})
		require.NoError(b, err)
	}
}

func BenchmarkReadParquet(b *testing.B) {
	path := filepath.Join(b.TempDir(), "bench.parquet")
	f, err := os.Create(path)
	require.NoError(b, err)
	w := parquet.NewGenericWriter[qaRow](f, parquet.Compression(&parquet.Zstd), parquet.MaxRowsPerRowGroup(1000))
	rows := make([]qaRow, 10000)
	for i := range rows {
		rows[i] = qaRow{strp(strings.Repeat("question ", 10)), strp(strings.Repeat("answer ", 20))}
	}
	_, err = w.Write(rows)
	require.NoError(b, err)
	require.NoError(b, w.Close())
	require.NoError(b, f.Close())
	src := Source{Paths: []string{path}, PromptField: "question", CompletionField: "answer"}
	b.SetBytes(int64(len(rows)) * 230)
	for b.Loop() {
		_, err := src.Each(func(Document) error { return nil })
		require.NoError(b, err)
	}
}
