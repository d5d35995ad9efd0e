package recipes

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/checkpoints"
	"github.com/mlxtrain/mlxtrain/data"
	"github.com/mlxtrain/mlxtrain/layers"
	"github.com/mlxtrain/mlxtrain/models"
)

// Loaded is a model and its tokenizer read from a checkpoint directory.
type Loaded struct {
	// Dir is the checkpoint directory read (a run directory's latest).
	Dir       string
	Model     *models.Model
	Tokenizer *data.BPE
	// Adapter describes the LoRA adapters the model carries, nil for a full
	// checkpoint. The adapters stay separate from the base weights: see Fuse.
	Adapter *AdapterConfig
	// Recipe is the checkpoint's recipe.toml, nil when it has none.
	Recipe []byte
}

// AdapterConfig is a LoRA checkpoint's adapter_config.json: how to rebuild the
// adapted model from its base. Its fields follow mlx-lm's adapter_config.json
// (fine_tune_type, num_layers, lora_parameters) and add which base checkpoint
// the adapters belong to.
type AdapterConfig struct {
	FineTuneType string `json:"fine_tune_type"` // "lora"
	NumLayers    int    `json:"num_layers"`     // the last N blocks were eligible; -1 all
	LoRA         struct {
		Rank    int      `json:"rank"`
		Scale   float64  `json:"scale"`
		Dropout float64  `json:"dropout"`
		Keys    []string `json:"keys"`
	} `json:"lora_parameters"`
	// Modules lists the adapted linear layers by module path; each has
	// "<module>.lora_a" (in, rank) and "<module>.lora_b" (rank, out) in
	// adapters.safetensors.
	Modules []string `json:"modules"`
	// BaseModel is the base checkpoint directory (absolute), and BaseSHA256 the
	// SHA-256 of its weights file, so that adapters are never applied to other
	// weights than those they were trained on.
	BaseModel  string `json:"base_model"`
	BaseSHA256 string `json:"base_sha256"`
}

// maxAdapterChain bounds how many LoRA checkpoints may stand on one another.
const maxAdapterChain = 8

// ResolveCheckpoint returns the checkpoint directory path names: path itself
// when it holds a trainer_state.json, else the latest checkpoint of the run
// directory path (in path/checkpoints, or in path).
func ResolveCheckpoint(path string) (string, error) {
	if path == "" {
		return "", errors.New("no checkpoint directory given")
	}
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%s: no such directory", path)
		}
		return "", err
	}
	if !st.IsDir() {
		return "", fmt.Errorf("%s is not a directory", path)
	}
	if _, err := os.Stat(filepath.Join(path, checkpoints.StateFile)); err == nil {
		return path, nil
	}
	if latest, err := checkpoints.Latest(filepath.Join(path, "checkpoints")); err == nil {
		return latest, nil
	}
	if latest, err := checkpoints.Latest(path); err == nil {
		return latest, nil
	}
	return "", fmt.Errorf("%s: not a checkpoint (no %s) and no checkpoints in it or in its checkpoints/", path, checkpoints.StateFile)
}

// LoadModel reads the model and tokenizer of a checkpoint directory, or of a
// run directory's latest checkpoint. A LoRA checkpoint loads its base model
// (named in adapter_config.json) and attaches its adapters; a fused or full
// checkpoint loads as it is.
func LoadModel(path string) (*Loaded, error) {
	return loadModel(path, 0)
}

func loadModel(path string, depth int) (*Loaded, error) {
	dir, err := ResolveCheckpoint(path)
	if err != nil {
		return nil, err
	}
	ck, err := checkpoints.LoadDir(dir)
	if err != nil {
		return nil, err
	}
	defer ck.Release()
	file := func(name string) string { return filepath.Join(dir, name) }
	var tok *data.BPE
	if len(ck.Tokenizer) > 0 {
		if tok, err = data.ParseTokenizerJSON(ck.Tokenizer); err != nil {
			return nil, fmt.Errorf("%s: %w", file(checkpoints.TokenizerFile), err)
		}
	}
	if ck.Adapters != nil {
		if depth >= maxAdapterChain {
			return nil, fmt.Errorf("%s: more than %d LoRA checkpoints stacked on one another", dir, maxAdapterChain)
		}
		var ac AdapterConfig
		if err := json.Unmarshal(ck.AdapterConfig, &ac); err != nil || len(ck.AdapterConfig) == 0 {
			if err == nil {
				err = errors.New("missing")
			}
			return nil, fmt.Errorf("%s: %w", file(checkpoints.AdapterConfigFile), err)
		}
		if ac.FineTuneType != "lora" {
			return nil, fmt.Errorf("%s: fine_tune_type %q: only \"lora\" adapters are known", file(checkpoints.AdapterConfigFile), ac.FineTuneType)
		}
		base, err := loadModel(ac.BaseModel, depth+1)
		if err != nil {
			return nil, fmt.Errorf("%s: base model: %w", file(checkpoints.AdapterConfigFile), err)
		}
		if sum, err := weightsSHA256(base.Dir); err != nil {
			return nil, err
		} else if ac.BaseSHA256 != "" && sum != ac.BaseSHA256 {
			return nil, fmt.Errorf("%s: the base model %s has changed since these adapters were trained (SHA-256 %s, recorded %s)",
				file(checkpoints.AdapterConfigFile), base.Dir, sum, ac.BaseSHA256)
		}
		mergeAdapters(base.Model) // a base that is itself a LoRA checkpoint
		if err := attachSaved(base.Model, &ac, ck.Adapters, file(checkpoints.AdaptersFile)); err != nil {
			return nil, err
		}
		if tok == nil {
			tok = base.Tokenizer
		}
		return &Loaded{Dir: dir, Model: base.Model, Tokenizer: tok, Adapter: &ac, Recipe: ck.Recipe}, nil
	}
	if len(ck.Config) == 0 {
		return nil, fmt.Errorf("%s: no %s", dir, checkpoints.ConfigFile)
	}
	if tok == nil {
		return nil, fmt.Errorf("%s: no %s", dir, checkpoints.TokenizerFile)
	}
	cfg, err := models.ParseConfig(ck.Config)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file(checkpoints.ConfigFile), err)
	}
	m, err := models.New(cfg, autodiff.NewRNG(0))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file(checkpoints.ConfigFile), err)
	}
	if err := m.LoadStateDict(ck.Model); err != nil {
		return nil, fmt.Errorf("%s: %w", file(checkpoints.ModelFile), err)
	}
	return &Loaded{Dir: dir, Model: m, Tokenizer: tok, Recipe: ck.Recipe}, nil
}

// weightsSHA256 hashes a checkpoint's weights file: model.safetensors, or
// adapters.safetensors for a LoRA checkpoint (whose base is checked in turn
// when it loads).
func weightsSHA256(dir string) (string, error) {
	name := filepath.Join(dir, checkpoints.ModelFile)
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		name = filepath.Join(dir, checkpoints.AdaptersFile)
		f, err = os.Open(name)
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// attachSaved gives the modules ac lists their adapters, with the matrices of
// adapters (read from file).
func attachSaved(m *models.Model, ac *AdapterConfig, adapters map[string]*autodiff.Tensor, file string) error {
	byName := map[string]*layers.Linear{}
	for _, nl := range m.Linears() {
		byName[nl.Name] = nl.Linear
	}
	want := map[string]bool{}
	for _, name := range ac.Modules {
		l, ok := byName[name]
		if !ok {
			return fmt.Errorf("%s: adapter for %s, which the base model does not have", file, name)
		}
		l.LoRA = &layers.LoRA{Scale: ac.LoRA.Scale, Dropout: layers.Dropout{P: ac.LoRA.Dropout}}
		for _, part := range []struct {
			suffix string
			dst    **autodiff.Tensor
			shape  []int
		}{{".lora_a", &l.LoRA.A, []int{l.In(), ac.LoRA.Rank}}, {".lora_b", &l.LoRA.B, []int{ac.LoRA.Rank, l.Out()}}} {
			t, ok := adapters[name+part.suffix]
			if !ok {
				return fmt.Errorf("%s: no tensor %s", file, name+part.suffix)
			}
			if t.DType() != l.DType() || !equalInts(t.Shape(), part.shape) {
				return fmt.Errorf("%s: %s is %s %v, want %s %v", file, name+part.suffix, t.DType(), t.Shape(), l.DType(), part.shape)
			}
			*part.dst = t.Clone()
			want[name+part.suffix] = true
		}
	}
	for name := range adapters {
		if !want[name] {
			return fmt.Errorf("%s: tensor %s belongs to no module of adapter_config.json", file, name)
		}
	}
	return nil
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// mergeAdapters folds every adapter of m into its base weight.
func mergeAdapters(m *models.Model) int {
	n := 0
	for _, nl := range m.Linears() {
		if nl.Linear.LoRA != nil {
			nl.Linear.Merge()
			n++
		}
	}
	return n
}

// adapterTensors returns the adapter matrices of m by name, <module>.lora_a
// and <module>.lora_b, and the adapted modules in order.
func adapterTensors(m *models.Model) (map[string]*autodiff.Tensor, []string) {
	out := map[string]*autodiff.Tensor{}
	var modules []string
	for _, nl := range m.Linears() {
		if a := nl.Linear.LoRA; a != nil {
			out[nl.Name+".lora_a"], out[nl.Name+".lora_b"] = a.A, a.B
			modules = append(modules, nl.Name)
		}
	}
	return out, modules
}

// Fuse merges the adapters of the LoRA checkpoint at src (a checkpoint or run
// directory) into its base weights and writes a full checkpoint directory at
// out (which must not exist yet), with config.json, tokenizer.json and the
// recipe, that LoadModel, mlxtrain generate and model.from read like any other.
// It returns the directory read.
func Fuse(src, out string) (string, error) {
	if _, err := os.Stat(out); err == nil {
		return "", fmt.Errorf("%s already exists: give a new directory", out)
	}
	lm, err := LoadModel(src)
	if err != nil {
		return "", err
	}
	if lm.Adapter == nil {
		return "", fmt.Errorf("%s is not a LoRA checkpoint (it has no %s): there is nothing to fuse", lm.Dir, checkpoints.AdaptersFile)
	}
	mergeAdapters(lm.Model)
	st, err := checkpoints.LoadState(filepath.Join(lm.Dir, checkpoints.StateFile))
	if err != nil {
		return "", err
	}
	cfgJSON, err := json.MarshalIndent(lm.Model.Config, "", "  ")
	if err != nil {
		return "", err
	}
	tokJSON, err := lm.Tokenizer.MarshalJSON()
	if err != nil {
		return "", err
	}
	parent := filepath.Dir(filepath.Clean(out))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(parent, ".fuse-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	fused := checkpoints.TrainerState{Step: st.Step, OptimizerStep: st.OptimizerStep, ScheduleStep: st.ScheduleStep,
		TokensSeen: st.TokensSeen, Metrics: st.Metrics, ValLoss: st.ValLoss}
	dir, err := checkpoints.SaveDir(tmp, st.Step, &checkpoints.Checkpoint{
		Model: lm.Model.StateDict(), State: fused, Recipe: lm.Recipe, Config: cfgJSON, Tokenizer: tokJSON,
	})
	if err != nil {
		return "", err
	}
	if err := os.Rename(dir, out); err != nil {
		return "", err
	}
	return lm.Dir, nil
}
