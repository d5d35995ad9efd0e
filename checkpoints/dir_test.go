package checkpoints

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/autodiff"
)

// sample is a checkpoint whose tensors depend on seed, so two saves differ.
func sample(seed float32) *Checkpoint {
	return &Checkpoint{
		Model: map[string]*autodiff.Tensor{
			"embed.weight": autodiff.FromFloat32([]float32{seed, -0, 1, 2, 3, 4}, 3, 2),
			"norm.weight":  filled(autodiff.BFloat16, 2),
		},
		Optimizer: map[string]*autodiff.Tensor{
			"embed.weight.m": filled(autodiff.Float32, 3, 2),
			"step":           autodiff.FromInt32([]int32{int32(seed)}),
		},
		OptimizerMetadata: map[string]string{"optimizer": "adamw"},
		State: TrainerState{
			OptimizerStep: 7, DataPosition: []byte(`{"pos":3}`),
			RNG: RNGState{Seed: 42, Offset: 99}, Metrics: map[string]float64{"loss": float64(seed)},
		},
		Recipe:    []byte("[train]\niters = 10\n"),
		Config:    []byte(`{"model_type":"llama"}`),
		Tokenizer: []byte(`{"version":"1.0"}`),
	}
}

func assertSameTensors(t *testing.T, want, got map[string]*autodiff.Tensor) {
	t.Helper()
	require.Len(t, got, len(want))
	for name, w := range want {
		g := got[name]
		require.NotNil(t, g, name)
		assert.Equal(t, w.DType(), g.DType(), name)
		assert.Equal(t, w.Shape(), g.Shape(), name)
		assert.True(t, bytes.Equal(w.Bytes(), g.Bytes()), "%s differs", name)
	}
}

func TestSaveDirLoadDirRoundTrip(t *testing.T) {
	parent := t.TempDir()
	want := sample(5)
	dir, err := SaveDir(parent, 100, want)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(parent, "step-000100"), dir)

	names := func() []string {
		ents, err := os.ReadDir(dir)
		require.NoError(t, err)
		var out []string
		for _, e := range ents {
			out = append(out, e.Name())
		}
		return out
	}()
	assert.Equal(t, []string{ConfigFile, ModelFile, OptimizerFile, RecipeFile, TokenizerFile, StateFile}, names)

	got, err := LoadDir(dir)
	require.NoError(t, err)
	defer got.Release()
	assertSameTensors(t, want.Model, got.Model)
	assertSameTensors(t, want.Optimizer, got.Optimizer)
	assert.Equal(t, map[string]string{"format": "pt"}, got.ModelMetadata)
	assert.Equal(t, want.OptimizerMetadata, got.OptimizerMetadata)
	assert.Equal(t, want.Recipe, got.Recipe)
	assert.Equal(t, want.Config, got.Config)
	assert.Equal(t, want.Tokenizer, got.Tokenizer)
	assert.Equal(t, int64(100), got.State.Step)
	assert.Equal(t, want.State.RNG, got.State.RNG)
	assert.Equal(t, want.State.Metrics, got.State.Metrics)
	assert.JSONEq(t, `{"pos":3}`, string(got.State.DataPosition))
	for _, f := range []string{ModelFile, OptimizerFile, RecipeFile, ConfigFile, TokenizerFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err)
		assert.Equal(t, fi.Size(), got.State.Files[f], f)
	}
	assert.Zero(t, want.State.Step, "the caller's checkpoint is not modified")
	assert.Nil(t, want.State.Files)
}

func TestSaveDirMinimal(t *testing.T) {
	parent := t.TempDir()
	dir, err := SaveDir(parent, 0, &Checkpoint{Model: map[string]*autodiff.Tensor{}, ModelMetadata: map[string]string{"format": "mlx"}})
	require.NoError(t, err)
	got, err := LoadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, got.Model)
	assert.Nil(t, got.Optimizer)
	assert.Nil(t, got.Recipe)
	assert.Equal(t, map[string]string{"format": "mlx"}, got.ModelMetadata)
}

func TestSaveDirRefusesBadInput(t *testing.T) {
	parent := t.TempDir()
	for _, tc := range []struct {
		name string
		step int64
		c    *Checkpoint
		want string
	}{
		{"nil", 1, nil, "no model tensors"},
		{"no model", 1, &Checkpoint{}, "no model tensors"},
		{"negative step", -1, sample(1), "negative step"},
		{"bad config", 1, &Checkpoint{Model: map[string]*autodiff.Tensor{}, Config: []byte("{")}, "config.json is not valid JSON"},
		{"bad tokenizer", 1, &Checkpoint{Model: map[string]*autodiff.Tensor{}, Tokenizer: []byte("nope")}, "tokenizer.json is not valid JSON"},
		{"bad tensor", 1, &Checkpoint{Model: map[string]*autodiff.Tensor{"": autodiff.Zeros(autodiff.Float32, 1)}}, "model.safetensors: empty tensor name"},
		{"bad state", 1, &Checkpoint{Model: map[string]*autodiff.Tensor{}, State: TrainerState{DataPosition: []byte("{")}}, "trainer_state.json: data_position"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := SaveDir(parent, tc.step, tc.c)
			assert.ErrorContains(t, err, tc.want)
		})
	}
	ents, err := os.ReadDir(parent)
	require.NoError(t, err)
	assert.Empty(t, ents, "failed saves leave nothing behind")
}

func TestListAndLatest(t *testing.T) {
	parent := t.TempDir()
	_, err := Latest(parent)
	assert.ErrorIs(t, err, ErrNoCheckpoint)
	_, err = Latest(filepath.Join(parent, "absent"))
	assert.ErrorIs(t, err, ErrNoCheckpoint)

	for _, step := range []int64{30, 2000000, 100} {
		_, err := SaveDir(parent, step, sample(float32(step)))
		require.NoError(t, err)
	}
	// Things that are not checkpoints: stray files and directories, names that
	// only look like steps, a temporary directory, a directory without a state.
	for _, d := range []string{"step-5", "step-000007x", "notes", ".tmp-step-999999-123", "step-000200"} {
		require.NoError(t, os.Mkdir(filepath.Join(parent, d), 0o755))
	}
	require.NoError(t, os.WriteFile(filepath.Join(parent, "step-000300"), nil, 0o644))

	list, err := List(parent)
	require.NoError(t, err)
	var steps []int64
	for _, e := range list {
		steps = append(steps, e.Step)
	}
	assert.Equal(t, []int64{30, 100, 2000000}, steps)
	latest, err := Latest(parent)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(parent, "step-2000000"), latest)
}

func TestParseDirName(t *testing.T) {
	for name, want := range map[string]int64{"step-000000": 0, "step-000100": 100, "step-1234567": 1234567} {
		got, ok := parseDirName(name)
		assert.True(t, ok, name)
		assert.Equal(t, want, got, name)
	}
	for _, name := range []string{"step-100", "step-0000100", "step-", "step--00001", "step-+00001", "Step-000001", "step-000001 ", "step-99999999999999999999"} {
		_, ok := parseDirName(name)
		assert.False(t, ok, name)
	}
}

func TestRetained(t *testing.T) {
	e := func(step int64, loss ...float64) Entry {
		en := Entry{Dir: DirName(step), Step: step}
		if len(loss) > 0 {
			en.ValLoss = ptr(loss[0])
		}
		return en
	}
	steps := func(es []Entry) []int64 {
		var out []int64
		for _, x := range es {
			out = append(out, x.Step)
		}
		return out
	}
	for _, tc := range []struct {
		name          string
		entries       []Entry
		keep          int
		kept, dropped []int64
	}{
		{"keep all when keep is 0", []Entry{e(1), e(2), e(3)}, 0, []int64{1, 2, 3}, nil},
		{"keep all when negative", []Entry{e(1), e(2)}, -1, []int64{1, 2}, nil},
		{"fewer than keep", []Entry{e(1), e(2)}, 3, []int64{1, 2}, nil},
		{"last two, no losses", []Entry{e(1), e(2), e(3), e(4)}, 2, []int64{3, 4}, []int64{1, 2}},
		{"best is old", []Entry{e(1, 3), e(2, 1), e(3, 2), e(4, 5), e(5, 4)}, 2, []int64{2, 4, 5}, []int64{1, 3}},
		{"best among the last", []Entry{e(1, 3), e(2, 2), e(3, 1)}, 1, []int64{3}, []int64{1, 2}},
		{"ties favour the newer", []Entry{e(1, 1), e(2, 1), e(3, 5), e(4, 6)}, 1, []int64{2, 4}, []int64{1, 3}},
		{"NaN is never best", []Entry{e(1, math.NaN()), e(2, 7), e(3)}, 1, []int64{2, 3}, []int64{1}},
		{"-Inf is best", []Entry{e(1, math.Inf(-1)), e(2, 0), e(3)}, 1, []int64{1, 3}, []int64{2}},
		{"empty", nil, 2, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kept, dropped := Retained(tc.entries, tc.keep)
			assert.Equal(t, tc.kept, steps(kept), "kept")
			assert.Equal(t, tc.dropped, steps(dropped), "dropped")
		})
	}
}

func TestRetainOnDisk(t *testing.T) {
	parent := t.TempDir()
	losses := []float64{4, 1, 3, 5, 6}
	for i, l := range losses {
		c := sample(1)
		c.State.ValLoss = ptr(l)
		_, err := SaveDir(parent, int64(i+1)*10, c)
		require.NoError(t, err)
	}
	removed, err := Retain(parent, 2)
	require.NoError(t, err)
	assert.Equal(t, []string{filepath.Join(parent, "step-000010"), filepath.Join(parent, "step-000030")}, removed)
	ents, err := os.ReadDir(parent)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	assert.Equal(t, []string{"step-000020", "step-000040", "step-000050"}, names)
}

// hookAt returns a test hook that acts at one stage.
func hookAt(stage string, act func() error) func(string) error {
	return func(s string) error {
		if s == stage {
			return act()
		}
		return nil
	}
}

func withHook(t *testing.T, h func(string) error) {
	t.Helper()
	testHook = h
	t.Cleanup(func() { testHook = nil })
}

// checkpointDirs lists what is under a final checkpoint name in parent.
func checkpointDirs(t *testing.T, parent string) []string {
	t.Helper()
	ents, err := os.ReadDir(parent)
	require.NoError(t, err)
	var out []string
	for _, e := range ents {
		if _, ok := parseDirName(e.Name()); ok {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestFailedSaveBetweenFiles makes the save fail after each file in turn: the
// earlier checkpoint must stay loadable and nothing may appear under a final name.
func TestFailedSaveBetweenFiles(t *testing.T) {
	for _, stage := range []string{ModelFile, OptimizerFile, RecipeFile, ConfigFile, TokenizerFile, StateFile} {
		t.Run(stage, func(t *testing.T) {
			parent := t.TempDir()
			first := sample(1)
			_, err := SaveDir(parent, 10, first)
			require.NoError(t, err)

			withHook(t, hookAt(stage, func() error { return errors.New("disk full") }))
			_, err = SaveDir(parent, 20, sample(2))
			require.ErrorContains(t, err, "disk full")
			assert.ErrorContains(t, err, "step-000020")

			assert.Equal(t, []string{"step-000010"}, checkpointDirs(t, parent))
			ents, err := os.ReadDir(parent)
			require.NoError(t, err)
			assert.Len(t, ents, 1, "the temporary directory is gone")
			latest, err := Latest(parent)
			require.NoError(t, err)
			got, err := LoadDir(latest)
			require.NoError(t, err)
			assertSameTensors(t, first.Model, got.Model)
		})
	}
}

// TestCrashBetweenFiles stands a panic in for a crash after each file: the
// temporary directory stays behind (nothing cleans up after a crash), is ignored
// by List, Latest and Retain, and the next save removes it.
func TestCrashBetweenFiles(t *testing.T) {
	for _, stage := range []string{ModelFile, OptimizerFile, StateFile} {
		t.Run(stage, func(t *testing.T) {
			parent := t.TempDir()
			first := sample(1)
			_, err := SaveDir(parent, 10, first)
			require.NoError(t, err)

			withHook(t, hookAt(stage, func() error { panic("crash") }))
			require.PanicsWithValue(t, "crash", func() { _, _ = SaveDir(parent, 20, sample(2)) })
			testHook = nil

			ents, err := os.ReadDir(parent)
			require.NoError(t, err)
			require.Len(t, ents, 2)
			assert.True(t, slices.ContainsFunc(ents, func(e os.DirEntry) bool { return strings.HasPrefix(e.Name(), ".tmp-step-000020-") }))
			assert.Equal(t, []string{"step-000010"}, checkpointDirs(t, parent))

			list, err := List(parent)
			require.NoError(t, err)
			require.Len(t, list, 1)
			assert.Equal(t, int64(10), list[0].Step)
			removed, err := Retain(parent, 1)
			require.NoError(t, err)
			assert.Empty(t, removed)
			got, err := LoadDir(list[0].Dir)
			require.NoError(t, err)
			assertSameTensors(t, first.Model, got.Model)

			_, err = SaveDir(parent, 30, sample(3))
			require.NoError(t, err)
			assert.Equal(t, []string{"step-000010", "step-000030"}, checkpointDirs(t, parent))
			ents, err = os.ReadDir(parent)
			require.NoError(t, err)
			assert.Len(t, ents, 2, "the stale temporary directory was cleaned up")
		})
	}
}

func TestSaveSameStepTwiceReplacesOnlyWhenComplete(t *testing.T) {
	parent := t.TempDir()
	first, second := sample(1), sample(2)
	dir, err := SaveDir(parent, 10, first)
	require.NoError(t, err)

	// A failure while writing the second copy leaves the first untouched.
	withHook(t, hookAt(OptimizerFile, func() error { return errors.New("boom") }))
	_, err = SaveDir(parent, 10, second)
	require.Error(t, err)
	got, err := LoadDir(dir)
	require.NoError(t, err)
	assertSameTensors(t, first.Model, got.Model)

	// A failure between moving the first aside and renaming the second puts the
	// first back.
	withHook(t, hookAt("swap", func() error { return errors.New("boom") }))
	_, err = SaveDir(parent, 10, second)
	require.Error(t, err)
	got, err = LoadDir(dir)
	require.NoError(t, err)
	assertSameTensors(t, first.Model, got.Model)

	// Success replaces it.
	testHook = nil
	_, err = SaveDir(parent, 10, second)
	require.NoError(t, err)
	got, err = LoadDir(dir)
	require.NoError(t, err)
	assertSameTensors(t, second.Model, got.Model)
	ents, err := os.ReadDir(parent)
	require.NoError(t, err)
	assert.Len(t, ents, 1)
}

// TestCrashDuringSwap: a crash right after the old copy of a step was moved
// aside leaves it under a temporary name and nothing under the final one. Listing
// still finds it, and the next save puts it back before doing anything else.
func TestCrashDuringSwap(t *testing.T) {
	parent := t.TempDir()
	first := sample(1)
	dir, err := SaveDir(parent, 10, first)
	require.NoError(t, err)
	_, err = SaveDir(parent, 5, sample(5))
	require.NoError(t, err)

	withHook(t, hookAt("swap", func() error { panic("crash") }))
	require.Panics(t, func() { _, _ = SaveDir(parent, 10, sample(2)) })
	testHook = nil
	assert.Equal(t, []string{"step-000005"}, checkpointDirs(t, parent), "nothing under step-000010 now")

	latest, err := Latest(parent)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(filepath.Base(latest), ".old-step-000010-"), latest)
	got, err := LoadDir(latest)
	require.NoError(t, err, "the moved-aside copy loads")
	assertSameTensors(t, first.Model, got.Model)

	_, err = SaveDir(parent, 20, sample(3))
	require.NoError(t, err)
	assert.Equal(t, []string{"step-000005", "step-000010", "step-000020"}, checkpointDirs(t, parent))
	got, err = LoadDir(dir)
	require.NoError(t, err)
	assertSameTensors(t, first.Model, got.Model)
	ents, err := os.ReadDir(parent)
	require.NoError(t, err)
	assert.Len(t, ents, 3, "no temporary or moved-aside directory is left")
}

func TestTidyDropsAMovedAsideCopyOnceReplaced(t *testing.T) {
	parent := t.TempDir()
	_, err := SaveDir(parent, 10, sample(1))
	require.NoError(t, err)
	// A crash after the new copy took the name but before the old was removed.
	old := filepath.Join(parent, ".old-step-000010-1")
	require.NoError(t, os.Mkdir(old, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(old, ModelFile), []byte("half"), 0o644))
	list, err := List(parent)
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, filepath.Join(parent, "step-000010"), list[0].Dir)

	_, err = SaveDir(parent, 11, sample(2))
	require.NoError(t, err)
	assert.NoDirExists(t, old)
	got, err := LoadDir(filepath.Join(parent, "step-000010"))
	require.NoError(t, err)
	got.Release()
}

func TestLoadDirRejects(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(dir string) error
		want  string
	}{
		{"no state", func(dir string) error { return os.Remove(filepath.Join(dir, StateFile)) }, "trainer_state.json"},
		{"newer state", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, StateFile), []byte(`{"format_version":7}`), 0o644)
		}, "format_version 7 is newer"},
		{"state without files", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, StateFile), []byte(`{"format_version":1,"step":10}`), 0o644)
		}, "trainer_state.json lists no model.safetensors"},
		{"wrong step", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, StateFile), []byte(`{"format_version":1,"step":11,"files":{"model.safetensors":1}}`), 0o644)
		}, "trainer_state.json says step 11"},
		{"unknown file listed", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, StateFile), []byte(`{"format_version":1,"step":10,"files":{"model.safetensors":1,"../x":1}}`), 0o644)
		}, `lists an unknown file "../x"`},
		{"missing optimizer", func(dir string) error { return os.Remove(filepath.Join(dir, OptimizerFile)) }, "optimizer.safetensors"},
		{"truncated model", func(dir string) error { return truncateBy(filepath.Join(dir, ModelFile), 3) }, "model.safetensors is 201 bytes but trainer_state.json recorded 204"},
		{"corrupt model header", func(dir string) error {
			return flipByte(filepath.Join(dir, ModelFile), 8+2) // inside the JSON
		}, "model.safetensors"},
		{"corrupt optimizer length", func(dir string) error { return flipByte(filepath.Join(dir, OptimizerFile), 3) }, "optimizer.safetensors: header length"},
		{"truncated recipe", func(dir string) error { return truncateBy(filepath.Join(dir, RecipeFile), 1) }, "recipe.toml is"},
		{"invalid config", func(dir string) error { return flipByte(filepath.Join(dir, ConfigFile), 0) }, "config.json is not valid JSON"},
		{"invalid tokenizer", func(dir string) error { return flipByte(filepath.Join(dir, TokenizerFile), 0) }, "tokenizer.json is not valid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, err := SaveDir(t.TempDir(), 10, sample(1))
			require.NoError(t, err)
			require.NoError(t, tc.spoil(dir))
			_, err = LoadDir(dir)
			require.Error(t, err)
			assert.ErrorContains(t, err, "checkpoint "+dir+": ")
			assert.ErrorContains(t, err, tc.want)
		})
	}
}

func truncateBy(path string, n int64) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return os.Truncate(path, fi.Size()-n)
}

func flipByte(path string, at int) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	b[at] ^= 0xa5
	return os.WriteFile(path, b, 0o644)
}
