package recipes

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestExampleRecipesAreValid loads every recipe in examples/ and checks that it
// validates and that fit supports all of its settings. (cmd/mlxtrain's tests
// run each of them for a few steps.)
func TestExampleRecipesAreValid(t *testing.T) {
	files, err := filepath.Glob("examples/*.toml")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 9)
	names := map[string]bool{}
	for _, f := range files {
		names[filepath.Base(f)] = true
		r, err := Load(f)
		require.NoError(t, err, f)
		assert.NoError(t, r.Validate(), f)
		if r.Data.Task.Kind == "" {
			train, _, _ := r.Sources()
			files, err := train.Files()
			require.NoError(t, err, f)
			assert.NotEmpty(t, files, "%s: data.train matches no file", f)
		}
		if r.Data.Task.Kind == "" && r.Model.From == "" {
			d, err := r.loadData()
			require.NoError(t, err, f)
			assert.NotEmpty(t, d.train, f)
		}
	}
	for _, want := range []string{"text.toml", "text-jsonl.toml", "completions.toml", "chat.toml", "parquet.toml", "lora.toml", "hybrid.toml", "mamba.toml", "moe.toml"} {
		assert.True(t, names[want], "examples/%s", want)
	}
}
