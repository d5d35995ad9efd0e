package checkpoints

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/mlxtrain/mlxtrain/autodiff"
)

// The files of a checkpoint directory.
const (
	ModelFile     = "model.safetensors"
	OptimizerFile = "optimizer.safetensors"
	StateFile     = "trainer_state.json"
	RecipeFile    = "recipe.toml"
	ConfigFile    = "config.json"
	TokenizerFile = "tokenizer.json"
	// A LoRA fine-tune's checkpoint holds its adapters instead of model.safetensors:
	// the base weights stay in the base checkpoint that adapter_config.json names.
	AdaptersFile      = "adapters.safetensors"
	AdapterConfigFile = "adapter_config.json"
)

// Names in a parent directory that are not checkpoints: a save in progress (or cut
// short by a crash), and a checkpoint moved aside while a new save of the same
// step takes its name.
const (
	tmpPrefix = ".tmp-"
	oldPrefix = ".old-"
)

// ErrNoCheckpoint is returned by [Latest] when a directory holds no checkpoint.
var ErrNoCheckpoint = errors.New("no checkpoint")

// Checkpoint is the contents of a checkpoint directory. SaveDir writes the parts
// that are set (Model or Adapters is required); LoadDir fills the parts the
// directory has.
type Checkpoint struct {
	// Model holds the parameters by name; ModelMetadata goes in the file's
	// "__metadata__" (SaveDir adds "format": "pt", which Hugging Face loaders
	// expect, unless a format is given).
	Model         map[string]*autodiff.Tensor
	ModelMetadata map[string]string
	// Optimizer holds the optimizer's state tensors by name (moments and such).
	Optimizer         map[string]*autodiff.Tensor
	OptimizerMetadata map[string]string
	// State is trainer_state.json.
	State TrainerState
	// Recipe (recipe.toml), Config (config.json) and Tokenizer (tokenizer.json) are
	// stored as given; Config and Tokenizer must be valid JSON.
	Recipe, Config, Tokenizer []byte
	// Adapters (adapters.safetensors) holds a LoRA fine-tune's adapter matrices
	// by name, and AdapterConfig (adapter_config.json, valid JSON) says how to
	// attach them to which base model. A LoRA checkpoint has these and no Model.
	Adapters      map[string]*autodiff.Tensor
	AdapterConfig []byte
}

// Release gives the storage of every model and optimizer tensor back to the pool.
func (c *Checkpoint) Release() {
	for _, t := range c.Model {
		t.Release()
	}
	for _, t := range c.Optimizer {
		t.Release()
	}
	for _, t := range c.Adapters {
		t.Release()
	}
}

// DirName is the name of the checkpoint directory of a step: step-000100.
func DirName(step int64) string { return fmt.Sprintf("step-%06d", step) }

// parseDirName is the inverse of DirName; only the exact names DirName makes count.
func parseDirName(name string) (int64, bool) {
	digits, ok := strings.CutPrefix(name, "step-")
	if !ok || digits == "" || strings.TrimLeft(digits, "0123456789") != "" {
		return 0, false
	}
	step, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || DirName(step) != name {
		return 0, false
	}
	return step, true
}

// oldTarget returns the checkpoint name a moved-aside directory came from.
func oldTarget(name string) (string, int64, bool) {
	rest, ok := strings.CutPrefix(name, oldPrefix)
	if !ok {
		return "", 0, false
	}
	i := strings.LastIndexByte(rest, '-')
	if i < 0 {
		return "", 0, false
	}
	step, ok := parseDirName(rest[:i])
	return rest[:i], step, ok
}

// testHook, when set by a test, runs after each file SaveDir writes (stage is the
// file name) and between moving an existing checkpoint of the same step aside and
// renaming the new one into place (stage "swap"). An error fails the save there;
// a panic stands in for a crash.
var testHook func(stage string) error

func hook(stage string) error {
	if testHook == nil {
		return nil
	}
	return testHook(stage)
}

// SaveDir writes c as the checkpoint of step in parent/step-NNNNNN and returns that
// directory. The state's Step is set to step and its Files to the files written.
//
// The files go into a temporary directory in parent; each is synced, then the
// directory, and only then is it renamed to its final name. So a directory under a
// final name is always complete: a crash leaves a temporary directory, which
// listing ignores and the next SaveDir removes. Saving a step that already exists
// replaces it only once the new one is complete (the old one is moved aside for
// the instant between two renames, and put back by the next SaveDir if a crash
// falls there). One process at a time may save into a parent.
func SaveDir(parent string, step int64, c *Checkpoint) (string, error) {
	dir := filepath.Join(parent, DirName(step))
	fail := func(err error) (string, error) { return "", fmt.Errorf("checkpoint %s: %w", dir, err) }
	switch {
	case step < 0:
		return fail(fmt.Errorf("negative step %d", step))
	case c == nil || c.Model == nil && c.Adapters == nil:
		return fail(errors.New("no model tensors"))
	case c.AdapterConfig != nil && !json.Valid(c.AdapterConfig):
		return fail(fmt.Errorf("%s is not valid JSON", AdapterConfigFile))
	case c.Config != nil && !json.Valid(c.Config):
		return fail(fmt.Errorf("%s is not valid JSON", ConfigFile))
	case c.Tokenizer != nil && !json.Valid(c.Tokenizer):
		return fail(fmt.Errorf("%s is not valid JSON", TokenizerFile))
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fail(err)
	}
	if err := tidy(parent); err != nil {
		return fail(err)
	}
	tmp, err := os.MkdirTemp(parent, tmpPrefix+DirName(step)+"-")
	if err != nil {
		return fail(err)
	}
	if err := writeParts(tmp, step, c); err != nil {
		os.RemoveAll(tmp)
		return fail(err)
	}
	var old string
	if _, err := os.Lstat(dir); err == nil {
		old = filepath.Join(parent, oldPrefix+strings.TrimPrefix(filepath.Base(tmp), tmpPrefix))
		if err := os.Rename(dir, old); err != nil {
			os.RemoveAll(tmp)
			return fail(err)
		}
		if err := hook("swap"); err != nil {
			os.Rename(old, dir)
			os.RemoveAll(tmp)
			return fail(err)
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		if old != "" {
			os.Rename(old, dir)
		}
		os.RemoveAll(tmp)
		return fail(err)
	}
	if err := syncDir(parent); err != nil {
		return fail(err)
	}
	if old != "" {
		os.RemoveAll(old) // if this is cut short, tidy finishes it
	}
	return dir, nil
}

// writeParts writes every part of c into dir, trainer_state.json last.
func writeParts(dir string, step int64, c *Checkpoint) error {
	files := map[string]int64{}
	put := func(name string, fill func(io.Writer) error) error {
		n, err := writeFile(filepath.Join(dir, name), fill)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		files[name] = n
		return hook(name)
	}
	putBytes := func(name string, b []byte) error {
		if b == nil {
			return nil
		}
		return put(name, func(w io.Writer) error { _, err := w.Write(b); return err })
	}
	meta := c.ModelMetadata
	if _, ok := meta["format"]; !ok {
		meta = mapsWith(meta, "format", "pt")
	}
	if c.Model != nil {
		if err := put(ModelFile, func(w io.Writer) error { return write(w, c.Model, meta) }); err != nil {
			return err
		}
	}
	if c.Adapters != nil {
		if err := put(AdaptersFile, func(w io.Writer) error { return write(w, c.Adapters, nil) }); err != nil {
			return err
		}
	}
	if c.Optimizer != nil {
		if err := put(OptimizerFile, func(w io.Writer) error { return write(w, c.Optimizer, c.OptimizerMetadata) }); err != nil {
			return err
		}
	}
	for _, p := range []struct {
		name string
		b    []byte
	}{{RecipeFile, c.Recipe}, {ConfigFile, c.Config}, {TokenizerFile, c.Tokenizer}, {AdapterConfigFile, c.AdapterConfig}} {
		if err := putBytes(p.name, p.b); err != nil {
			return err
		}
	}
	st := c.State
	st.Step = step
	st.Files = files
	b, err := st.MarshalJSON()
	if err != nil {
		return fmt.Errorf("%s: %w", StateFile, err)
	}
	if err := putBytes(StateFile, b); err != nil {
		return err
	}
	return syncDir(dir)
}

func mapsWith(m map[string]string, k, v string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for a, b := range m {
		out[a] = b
	}
	out[k] = v
	return out
}

// tidy clears what crashed saves left in parent: temporary directories go, and a
// checkpoint moved aside returns to its name unless a newer save of its step
// completed.
func tidy(parent string) error {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return err
	}
	changed := false
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(parent, name)
		switch {
		case strings.HasPrefix(name, tmpPrefix):
			if err := os.RemoveAll(path); err != nil {
				return err
			}
			changed = true
		case strings.HasPrefix(name, oldPrefix):
			target, _, ok := oldTarget(name)
			if !ok {
				continue
			}
			final := filepath.Join(parent, target)
			if _, err := os.Lstat(final); err == nil {
				err = os.RemoveAll(path)
			} else {
				err = os.Rename(path, final)
			}
			if err != nil {
				return err
			}
			changed = true
		}
	}
	if changed {
		return syncDir(parent)
	}
	return nil
}

// Entry is one complete checkpoint of a parent directory.
type Entry struct {
	Dir     string   // the checkpoint directory
	Step    int64    // its step
	ValLoss *float64 // its validation loss, nil when not measured
}

// List returns the complete checkpoints in parent, by increasing step: the
// directories named step-NNNNNN whose trainer state reads, plus a checkpoint moved
// aside by a save that a crash cut short (until the next SaveDir puts it back).
// Temporary directories are ignored. A missing parent holds no checkpoints.
func List(parent string) ([]Entry, error) {
	dirents, err := os.ReadDir(parent)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoints %s: %w", parent, err)
	}
	byStep := map[int64]Entry{}
	names := map[string]bool{}
	for _, d := range dirents {
		names[d.Name()] = true
	}
	for _, d := range dirents {
		if !d.IsDir() {
			continue
		}
		name := d.Name()
		step, ok := parseDirName(name)
		if !ok {
			var target string
			target, step, ok = oldTarget(name)
			if !ok || names[target] {
				continue
			}
			if _, dup := byStep[step]; dup {
				continue
			}
		}
		dir := filepath.Join(parent, name)
		st, err := LoadState(filepath.Join(dir, StateFile))
		if err != nil {
			continue
		}
		byStep[step] = Entry{Dir: dir, Step: step, ValLoss: st.ValLoss}
	}
	out := make([]Entry, 0, len(byStep))
	for _, e := range byStep {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int { return cmpI64(a.Step, b.Step) })
	return out, nil
}

func cmpI64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Latest returns the directory of the newest complete checkpoint in parent, or an
// error wrapping [ErrNoCheckpoint].
func Latest(parent string) (string, error) {
	list, err := List(parent)
	if err != nil {
		return "", err
	}
	if len(list) == 0 {
		return "", fmt.Errorf("checkpoints %s: %w", parent, ErrNoCheckpoint)
	}
	return list[len(list)-1].Dir, nil
}

// Retained splits checkpoints (sorted by step, as [List] returns them) into those
// to keep, the keep newest plus the one with the lowest validation loss, and those
// to drop. Equal losses favour the newer checkpoint; keep <= 0 keeps everything.
func Retained(entries []Entry, keep int) (kept, dropped []Entry) {
	if keep <= 0 || len(entries) <= keep {
		return entries, nil
	}
	best := -1
	for i, e := range entries {
		if e.ValLoss == nil || math.IsNaN(*e.ValLoss) {
			continue
		}
		if best < 0 || *e.ValLoss <= *entries[best].ValLoss {
			best = i
		}
	}
	for i, e := range entries {
		if i >= len(entries)-keep || i == best {
			kept = append(kept, e)
		} else {
			dropped = append(dropped, e)
		}
	}
	return kept, dropped
}

// Retain deletes the checkpoints of parent that [Retained] drops and returns their
// directories. Each is first renamed to a temporary name, so a crash mid-delete
// never leaves part of a checkpoint under a checkpoint's name.
func Retain(parent string, keep int) ([]string, error) {
	list, err := List(parent)
	if err != nil {
		return nil, err
	}
	_, dropped := Retained(list, keep)
	var removed []string
	for _, e := range dropped {
		trash := filepath.Join(parent, tmpPrefix+"delete-"+filepath.Base(e.Dir))
		if err := os.RemoveAll(trash); err != nil {
			return removed, fmt.Errorf("checkpoints %s: %w", parent, err)
		}
		if err := os.Rename(e.Dir, trash); err != nil {
			return removed, fmt.Errorf("checkpoints %s: %w", parent, err)
		}
		if err := syncDir(parent); err != nil {
			return removed, fmt.Errorf("checkpoints %s: %w", parent, err)
		}
		if err := os.RemoveAll(trash); err != nil {
			return removed, fmt.Errorf("checkpoints %s: %w", parent, err)
		}
		removed = append(removed, e.Dir)
	}
	return removed, nil
}

// knownFiles are the files LoadDir reads, in the order it reads them.
var knownFiles = []string{ModelFile, AdaptersFile, OptimizerFile, RecipeFile, ConfigFile, TokenizerFile, AdapterConfigFile}

// LoadDir reads the checkpoint in dir and checks every part: the trainer state's
// version, each file it lists against its recorded size, each safetensors header
// against its file, and the JSON files' syntax. Errors name the file at fault.
func LoadDir(dir string) (*Checkpoint, error) {
	fail := func(err error) (*Checkpoint, error) { return nil, fmt.Errorf("checkpoint %s: %w", dir, err) }
	st, err := LoadState(filepath.Join(dir, StateFile))
	if err != nil {
		return fail(err)
	}
	_, hasModel := st.Files[ModelFile]
	_, hasAdapters := st.Files[AdaptersFile]
	if !hasModel && !hasAdapters {
		return fail(fmt.Errorf("%s lists no %s", StateFile, ModelFile))
	}
	if step, ok := parseDirName(filepath.Base(dir)); ok && step != st.Step {
		return fail(fmt.Errorf("%s says step %d", StateFile, st.Step))
	}
	for name := range st.Files {
		if !slices.Contains(knownFiles, name) {
			return fail(fmt.Errorf("%s lists an unknown file %q", StateFile, name))
		}
	}
	for _, name := range knownFiles {
		size, ok := st.Files[name]
		if !ok {
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return fail(fmt.Errorf("%s: %w", name, err))
		}
		if fi.Size() != size {
			return fail(fmt.Errorf("%s is %d bytes but %s recorded %d: the file is truncated or was replaced", name, fi.Size(), StateFile, size))
		}
	}
	c := &Checkpoint{State: st}
	load := func(name string) (map[string]*autodiff.Tensor, map[string]string, error) {
		if _, ok := st.Files[name]; !ok {
			return nil, nil, nil
		}
		f, err := Load(filepath.Join(dir, name))
		if err != nil {
			return nil, nil, err
		}
		return f.Tensors, f.Metadata, nil
	}
	if c.Model, c.ModelMetadata, err = load(ModelFile); err != nil {
		return fail(err)
	}
	if c.Adapters, _, err = load(AdaptersFile); err != nil {
		c.Release()
		return fail(err)
	}
	if c.Optimizer, c.OptimizerMetadata, err = load(OptimizerFile); err != nil {
		c.Release()
		return fail(err)
	}
	for _, p := range []struct {
		name string
		dst  *[]byte
		json bool
	}{{RecipeFile, &c.Recipe, false}, {ConfigFile, &c.Config, true}, {TokenizerFile, &c.Tokenizer, true}, {AdapterConfigFile, &c.AdapterConfig, true}} {
		if _, ok := st.Files[p.name]; !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, p.name))
		if err == nil && int64(len(b)) != st.Files[p.name] {
			err = fmt.Errorf("%s changed while reading", p.name)
		}
		if err == nil && p.json && !json.Valid(b) {
			err = fmt.Errorf("%s is not valid JSON", p.name)
		}
		if err != nil {
			c.Release()
			return fail(err)
		}
		*p.dst = b
	}
	return c, nil
}
