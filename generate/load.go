package generate

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/checkpoints"
	"github.com/mlxtrain/mlxtrain/data"
	"github.com/mlxtrain/mlxtrain/models"
)

// Checkpoint is a model and its tokenizer read from a checkpoint directory.
type Checkpoint struct {
	Dir       string // the checkpoint directory read (the latest one of a run)
	Model     *models.Model
	Tokenizer *data.BPE
}

// Load reads config.json, model.safetensors and tokenizer.json from dir, which
// may also be a run directory (its latest checkpoint is taken). It is the one
// path by which every command gets a model from disk, whatever its family (new
// checkpoint kinds, quantized ones, load here).
func Load(dir string) (*Checkpoint, error) {
	if _, err := os.Stat(filepath.Join(dir, checkpoints.ConfigFile)); err != nil {
		latest, lerr := checkpoints.Latest(filepath.Join(dir, "checkpoints"))
		if lerr != nil {
			return nil, fmt.Errorf("%s: no %s there and no checkpoints/ with one", dir, checkpoints.ConfigFile)
		}
		dir = latest
	}
	ck, err := checkpoints.LoadDir(dir)
	if err != nil {
		return nil, err
	}
	defer ck.Release()
	if len(ck.Config) == 0 {
		return nil, fmt.Errorf("%s: no %s", dir, checkpoints.ConfigFile)
	}
	cfg, err := models.ParseConfig(ck.Config)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, checkpoints.ConfigFile), err)
	}
	m, err := models.New(cfg, autodiff.NewRNG(0))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, checkpoints.ConfigFile), err)
	}
	if err := m.LoadStateDict(ck.Model); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, checkpoints.ModelFile), err)
	}
	if len(ck.Tokenizer) == 0 {
		return nil, fmt.Errorf("%s: no %s", dir, checkpoints.TokenizerFile)
	}
	tok, err := data.ParseTokenizerJSON(ck.Tokenizer)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, checkpoints.TokenizerFile), err)
	}
	return &Checkpoint{Dir: dir, Model: m, Tokenizer: tok}, nil
}
