package generate

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// byteTokens decodes token i as the byte i: a multi-byte character arrives in
// pieces.
func byteTokens(ids []int32) string {
	b := make([]byte, len(ids))
	for i, id := range ids {
		b[i] = byte(id)
	}
	return string(b)
}

func tokensOf(s string) []int32 {
	var out []int32
	for _, c := range []byte(s) {
		out = append(out, int32(c))
	}
	return out
}

func TestTextStreamUTF8AndStops(t *testing.T) {
	var w strings.Builder
	var seen []string
	s := &TextStream{W: &w, Decode: byteTokens, Stops: []string{"<|end|>", "STOP"}, Skip: []int32{0}}
	text := "héllo → 世界 <|en no <|end|> after"
	for _, tok := range tokensOf(text) {
		if !s.Add(tok) {
			break
		}
		assert.True(t, strings.ToValidUTF8(w.String(), "?") == w.String(), "only whole characters are written: %q", w.String())
		seen = append(seen, w.String())
	}
	assert.NoError(t, s.Close())
	assert.True(t, s.Stopped())
	assert.Equal(t, "héllo → 世界 <|en no ", w.String())
	assert.Contains(t, seen, "héllo → 世", "text streams before the end")

	w.Reset()
	s = &TextStream{W: &w, Decode: byteTokens, Stops: []string{"STOP"}, Skip: []int32{0}}
	for _, tok := range append(tokensOf("ab ST"), 0) {
		assert.True(t, s.Add(tok))
	}
	assert.Equal(t, "ab ", w.String(), "ST may begin STOP: held back")
	assert.NoError(t, s.Close())
	assert.Equal(t, "ab ST", w.String(), "Close writes what was held; the skipped token writes nothing")
}
