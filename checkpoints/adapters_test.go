package checkpoints

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/autodiff"
)

// A LoRA checkpoint: adapters and their config instead of the model's weights.
func TestAdapterCheckpointRoundTrip(t *testing.T) {
	c := sample(3)
	c.Model = nil
	c.Adapters = map[string]*autodiff.Tensor{
		"model.layers.0.self_attn.q_proj.lora_a": autodiff.FromFloat32([]float32{1, 2, 3, 4, 5, 6}, 3, 2),
		"model.layers.0.self_attn.q_proj.lora_b": autodiff.FromFloat32([]float32{-1, 0.5}, 2, 1),
	}
	c.AdapterConfig = []byte(`{"fine_tune_type":"lora"}`)
	parent := t.TempDir()
	dir, err := SaveDir(parent, 4, c)
	require.NoError(t, err)
	assert.NoFileExists(t, filepath.Join(dir, ModelFile))
	got, err := LoadDir(dir)
	require.NoError(t, err)
	defer got.Release()
	assert.Nil(t, got.Model)
	assertSameTensors(t, c.Adapters, got.Adapters)
	assert.Equal(t, c.AdapterConfig, got.AdapterConfig)
	assertSameTensors(t, c.Optimizer, got.Optimizer)
	assert.Contains(t, got.State.Files, AdaptersFile)

	// A truncated adapters file, and bad adapter_config.json, name the file.
	require.NoError(t, truncateBy(filepath.Join(dir, AdaptersFile), 3))
	_, err = LoadDir(dir)
	assert.ErrorContains(t, err, AdaptersFile)
	dir, err = SaveDir(parent, 5, c)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, AdapterConfigFile), []byte(`{"fine_tune_type":"lora"]`), 0o644))
	_, err = LoadDir(dir)
	assert.ErrorContains(t, err, AdapterConfigFile)

	c.AdapterConfig = []byte("{")
	_, err = SaveDir(parent, 6, c)
	assert.ErrorContains(t, err, AdapterConfigFile)
	c.Adapters = nil
	_, err = SaveDir(parent, 6, c)
	assert.ErrorContains(t, err, "no model tensors")
}
