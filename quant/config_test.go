package quant

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConfigJSON(t *testing.T) {
	var c Config
	require.NoError(t, json.Unmarshal([]byte(`{"mode": "affine", "model.embed_tokens": true}`), &c))
	assert.Equal(t, Params{GroupSize: 64, Bits: 4}, c.Params, "MLX's defaults")
	_, ok := c.For("model.embed_tokens")
	assert.True(t, ok)
	assert.ErrorContains(t, json.Unmarshal([]byte(`{"mode": "mxfp4"}`), &c), "affine")
	assert.ErrorContains(t, json.Unmarshal([]byte(`{"x": 3}`), &c), "x: want false")
	require.NoError(t, json.Unmarshal([]byte(`{"bits": 7}`), &c))
	assert.ErrorContains(t, c.Validate(), "bits 7")
	require.NoError(t, json.Unmarshal([]byte(`{"lm_head": {"bits": 3}}`), &c))
	assert.NoError(t, c.Validate())
	var nilc *Config
	_, ok = nilc.For("x")
	assert.False(t, ok)
}

// FuzzConfigJSON: any input either fails to parse or parses to a config that
// writes and reads back to itself.
func FuzzConfigJSON(f *testing.F) {
	for _, s := range []string{`{"group_size":64,"bits":4}`, `{"lm_head":false,"a":{"bits":8}}`, `{"mode":"affine"}`, `[]`, `{"bits":"4"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var c Config
		if json.Unmarshal([]byte(s), &c) != nil {
			return
		}
		out, err := json.Marshal(c)
		require.NoError(t, err)
		var back Config
		require.NoError(t, json.Unmarshal(out, &back), "%s", out)
		if len(c.Layers) == 0 {
			c.Layers = nil
		}
		if len(back.Layers) == 0 {
			back.Layers = nil
		}
		assert.Equal(t, c, back)
	})
}
