package recipes

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/data"
	"github.com/mlxtrain/mlxtrain/optim"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// value is the recipe without where its keys came from: what round trips
// must preserve.
func value(r *Recipe) Recipe {
	v := *r
	v.file, v.origin = "", nil
	return v
}

// roundTrip checks that the effective TOML reads back to the same recipe,
// and that writing that recipe gives the same text. A valid recipe must
// also Parse (which validates) to the same recipe.
func roundTrip(t *testing.T, r *Recipe) {
	t.Helper()
	text := r.Effective()
	back := Defaults()
	require.NoError(t, back.decode("effective.toml", []byte(text)), text)
	assert.Equal(t, value(r), value(back))
	assert.Equal(t, text, back.Effective())
	if r.Validate() == nil {
		parsed, err := Parse("effective.toml", []byte(text))
		require.NoError(t, err, text)
		assert.Equal(t, value(r), value(parsed))
	}
}

func TestDefaults(t *testing.T) {
	r := Defaults()
	err := r.Validate()
	require.Error(t, err)
	assert.Equal(t, "no training data: set data.task.kind (one of addition, copy, reverse, sort, mqar) or data.train (files or globs)", err.Error())

	// Each call is a fresh value.
	r.Model.LayerPattern[0] = "ssm"
	r.LoRA.Keys[0] = "x"
	assert.Equal(t, []string{"attention:dense"}, Defaults().Model.LayerPattern)
	assert.Equal(t, "self_attn.q_proj", Defaults().LoRA.Keys[0])

	// Parsing nothing but a task gives the defaults with that task.
	got, err := Parse("recipe.toml", []byte(task))
	require.NoError(t, err)
	want := Defaults()
	want.Data.Task.Kind = "addition"
	assert.Equal(t, value(want), value(got))

	// The gpt family's preset is in the defaults.
	m := Defaults().Model
	assert.Equal(t, []any{"gpt", "gelu", 4.0, "layernorm", "learned", true, true},
		[]any{m.Family, m.FFN, m.FFNMult, m.Norm, m.Positions, m.Bias, m.TieEmbeddings})
}

func TestDefaultRecipe(t *testing.T) {
	r := Default()
	require.NoError(t, r.Validate())
	assert.Equal(t, "addition", r.Data.Task.Kind)
	assert.Equal(t, 3, r.Data.Task.MaxDigits)
	assert.False(t, r.Data.Pack)
	// The longest problem, "999+999=1998" and EOS, is 13 tokens: it must fit
	// a row of max_seq_length+1 whole.
	assert.GreaterOrEqual(t, r.Train.MaxSeqLength+1, len("999+999=1998")+1)
	assert.Equal(t, DefaultTOML(), defaultTOML)
	roundTrip(t, r)

	// Overrides apply to it like to any recipe.
	require.NoError(t, r.Apply("train.iters=10", "lr_schedule.warmup=2"))
	assert.Equal(t, 10, r.Train.Iters)
	assert.NotEqual(t, 10, Default().Train.Iters, "Default returns a fresh recipe")
}

func TestFamilies(t *testing.T) {
	assert.Equal(t, []string{"gpt", "llama"}, Families())

	// The preset goes first: keys beside it win wherever they are.
	for _, text := range []string{
		"[model]\nfamily = \"llama\"\nffn = \"gelu\"\n",
		"[model]\nffn = \"gelu\"\nfamily = \"llama\"\n",
	} {
		r, err := Parse("recipe.toml", []byte(task+text))
		require.NoError(t, err)
		m := r.Model
		assert.Equal(t, []any{"llama", "gelu", "rmsnorm", "rope", false, false},
			[]any{m.Family, m.FFN, m.Norm, m.Positions, m.Bias, m.TieEmbeddings})
		roundTrip(t, r)
	}

	// Set assigns the preset over what the file said; later keys win.
	r, err := Parse("recipe.toml", []byte(task+"[model]\nnorm = \"rmsnorm\"\nbias = false\n"))
	require.NoError(t, err)
	require.NoError(t, r.Set("model.family", "llama"))
	assert.Equal(t, "swiglu", r.Model.FFN)
	require.NoError(t, r.Set("model.family", "gpt"))
	assert.Equal(t, "layernorm", r.Model.Norm, "the preset replaced the file's norm")
	assert.True(t, r.Model.Bias)
	require.NoError(t, r.Set("model.norm", "rmsnorm"))
	assert.Equal(t, "rmsnorm", r.Model.Norm)

	// From Go.
	var m ModelConfig
	require.NoError(t, m.SetFamily("llama"))
	assert.Equal(t, 8.0/3, m.FFNMult)
	err = m.SetFamily("bert")
	require.Error(t, err)
	assert.Equal(t, `model.family: "bert" is not one of "gpt", "llama"`, err.Error())
	assert.Equal(t, "llama", m.Family, "a failed SetFamily changes nothing")

	// An unknown family from a file or Set is reported by Validate.
	r = Default()
	require.NoError(t, r.Set("model.family", "lama"))
	err = r.Validate()
	require.Error(t, err)
	assert.Equal(t, `--set model.family=lama: model.family: "lama" is not one of "gpt", "llama" (did you mean "llama"?)`, err.Error())
}

func TestSet(t *testing.T) {
	r := Default()
	sets := []struct{ key, value string }{
		{"train.iters", "500"},
		{"train.seed", "18446744"},
		{"train.batch_size", "1e2"},
		{"optimizer.learning_rate", "3e-4"},
		{"model.dropout", "0"},
		{"model.bias", "false"},
		{"train.out", "runs/x y"},
		{"eval.sample_prompt", `"a \"quoted\"\tprompt"`},
		{"eval.sample_prompt", "12+3="},
		{"optimizer.betas", "0.9, 0.95"},
		{"model.layer_pattern", `["ssm", "attention:moe"]`},
		{"lora.keys", "q_proj, 'v_proj'"},
		{"data.task.alphabet", "abc"},
		{"train.max_seq_length", "+32"},
	}
	for _, s := range sets {
		require.NoError(t, r.Set(s.key, s.value), "%s=%s", s.key, s.value)
	}
	assert.Equal(t, 500, r.Train.Iters)
	assert.Equal(t, uint64(18446744), r.Train.Seed)
	assert.Equal(t, 100, r.Train.BatchSize)
	assert.Equal(t, 3e-4, r.Optimizer.LearningRate)
	assert.Equal(t, 0.0, r.Model.Dropout)
	assert.False(t, r.Model.Bias)
	assert.Equal(t, "runs/x y", r.Train.Out)
	assert.Equal(t, "12+3=", r.Eval.SamplePrompt)
	assert.Equal(t, [2]float64{0.9, 0.95}, r.Optimizer.Betas)
	assert.Equal(t, []string{"ssm", "attention:moe"}, r.Model.LayerPattern)
	assert.Equal(t, []string{"q_proj", "v_proj"}, r.LoRA.Keys)
	assert.Equal(t, "abc", r.Data.Task.Alphabet)
	assert.Equal(t, 32, r.Train.MaxSeqLength)
	require.NoError(t, r.Validate())
	roundTrip(t, r)

	require.NoError(t, r.Set("eval.sample_prompt", `"a \"quoted\"\tprompt"`))
	assert.Equal(t, "a \"quoted\"\tprompt", r.Eval.SamplePrompt)
	require.NoError(t, r.Set("data.train", ""))
	assert.Equal(t, []string{}, r.Data.Train)
	require.NoError(t, r.Set("data.train", "/d/a.txt,/d/b/*.jsonl"))
	assert.Equal(t, []string{"/d/a.txt", "/d/b/*.jsonl"}, r.Data.Train)

	// Every key can be set to the text WriteTOML gives for it.
	r = Default()
	for _, k := range Keys() {
		n := schema.lookup(strings.Split(k, "."))
		require.NotNil(t, n, k)
		text := tomlText(reflect.ValueOf(r).Elem().FieldByIndex(n.index))
		before := value(r)
		require.NoError(t, r.Set(k, text), "%s=%s", k, text)
		assert.Equal(t, before, value(r), k)
	}

	// Set on a copy does not move the original's origins.
	a := Default()
	b := *a
	require.NoError(t, b.Set("train.keep", "0"))
	require.NoError(t, b.Set("train.batch_size", "2"))
	assert.NotContains(t, a.origin, "train.keep")
	line := 1 + strings.Count(string(defaultTOML[:bytes.Index(defaultTOML, []byte("\nbatch_size ="))+1]), "\n")
	assert.Equal(t, origin{source: "default.toml", line: line}, a.origin["train.batch_size"])
	assert.Equal(t, origin{source: "--set train.batch_size=2", override: true}, b.origin["train.batch_size"])
}

func TestRoundTrip(t *testing.T) {
	r := Default()
	r.Eval.SamplePrompt = "quote \" backslash \\ newline \n tab \t bell \x07 del \x7f unicode é 😀"
	r.Train.Out = `C:\runs\x`
	r.Optimizer.LearningRate = 1.0 / 3
	r.Optimizer.Eps = 1e-300
	r.LRSchedule.WarmupInit = 5e-324
	r.Model.NormEps = 0.1
	r.Model.FFNMult = 2
	r.Train.Seed = math.MaxInt64
	r.Train.Iters = math.MaxInt32
	r.LRSchedule.FinalLR = math.Copysign(0, -1)
	r.Data.Task.Alphabet = "xyz"
	r.LoRA.Keys = []string{"a.b", "'single'", "x y"}
	r.Model.LayerPattern = []string{"attention", "attention:dense"}
	require.NoError(t, r.Validate())
	roundTrip(t, r)
	assert.True(t, math.Signbit(r.LRSchedule.FinalLR))

	// Invalid recipes write and read back too (Validate then reports them).
	r = Defaults()
	r.Model.LayerPattern = []string{}
	r.LoRA.Keys = []string{""}
	r.Model.Family = "nope"
	r.Optimizer.LearningRate = math.Inf(-1)
	r.Model.Dropout = math.NaN()
	text := r.Effective()
	back := Defaults()
	require.NoError(t, back.decode("effective.toml", []byte(text)), text)
	assert.Equal(t, text, back.Effective())
	assert.True(t, math.IsNaN(back.Model.Dropout))
	back.Model.Dropout, r.Model.Dropout = 0, 0 // NaN != NaN
	assert.Equal(t, value(r), value(back))
	roundTrip(t, Defaults())

	// WriteTOML and Effective agree; every key is written once.
	var b bytes.Buffer
	require.NoError(t, Default().WriteTOML(&b))
	assert.Equal(t, Default().Effective(), b.String())
	keyLine := regexp.MustCompile(`(?m)^([a-z_0-9]+) +=`)
	assert.Len(t, keyLine.FindAllString(b.String(), -1), len(Keys()))
}

func TestKeys(t *testing.T) {
	keys := Keys()
	assert.Contains(t, keys, "train.iters")
	assert.Contains(t, keys, "model.moe.top_k")
	assert.Contains(t, keys, "data.task.kind")
	assert.NotContains(t, keys, "model.moe")
	assert.Equal(t, "model.family", keys[0])
	seen := map[string]bool{}
	for _, k := range keys {
		assert.False(t, seen[k], "duplicate %s", k)
		seen[k] = true
	}
}

// TestKeysDocumented checks that the schema table in the package doc names
// every key, in order, with its default as WriteTOML writes it.
func TestKeysDocumented(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	require.NoError(t, err)
	row := regexp.MustCompile("(?m)^//\\s+\\| `([a-z_.0-9]+)` \\| `([^`]*)` \\|")
	var keys, defaults []string
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		keys = append(keys, m[1])
		defaults = append(defaults, m[2])
	}
	require.Equal(t, Keys(), keys)
	r := Defaults()
	for i, k := range keys {
		n := schema.lookup(strings.Split(k, "."))
		assert.Equal(t, tomlText(reflect.ValueOf(r).Elem().FieldByIndex(n.index)), defaults[i], k)
	}
}

func TestRelativePaths(t *testing.T) {
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		require.NoError(t, err)
		return a
	}
	dir := filepath.Join("some", "dir")
	text := `
[model]
from = "runs/base"
[data]
train = ["a.txt", "/abs/b.txt", "c/*.jsonl"]
valid = "v.jsonl"
tokenizer = "tok/tokenizer.json"
[train]
out = "runs/x"
`
	r, err := Parse(filepath.Join(dir, "recipe.toml"), []byte(text))
	require.NoError(t, err)
	assert.Equal(t, []string{abs(filepath.Join(dir, "a.txt")), "/abs/b.txt", abs(filepath.Join(dir, "c/*.jsonl"))}, r.Data.Train)
	assert.Equal(t, []string{abs(filepath.Join(dir, "v.jsonl"))}, r.Data.Valid)
	assert.Equal(t, abs(filepath.Join(dir, "tok/tokenizer.json")), r.Data.Tokenizer)
	assert.Equal(t, "runs/base", r.Model.From, "run directories are relative to the working directory")
	assert.Equal(t, "runs/x", r.Train.Out)
	// The effective recipe names the same files from anywhere.
	moved, err := Parse(filepath.Join("elsewhere", "recipe.toml"), []byte(r.Effective()))
	require.NoError(t, err)
	assert.Equal(t, value(r), value(moved))

	// A recipe in the working directory; keywords are not paths; Set's paths
	// are relative to the working directory; empty ones are left to Validate.
	r, err = Parse("recipe.toml", []byte("[data]\ntrain = \"a.txt\"\ntokenizer = \"bpe\"\n"), "data.valid=v.txt,/x/w.txt")
	require.NoError(t, err)
	assert.Equal(t, []string{abs("a.txt")}, r.Data.Train)
	assert.Equal(t, "bpe", r.Data.Tokenizer)
	assert.Equal(t, []string{abs("v.txt"), "/x/w.txt"}, r.Data.Valid)
	_, err = Parse(filepath.Join(dir, "recipe.toml"), []byte("[data]\ntrain = [\" \"]\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "data.train[0] is an empty path")

	// Paths filled in from Go are the caller's.
	g := Defaults()
	g.Data.Train = []string{"rel.txt"}
	require.NoError(t, g.Validate())
	assert.Equal(t, []string{"rel.txt"}, g.Data.Train)
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "r.toml")
	require.NoError(t, os.WriteFile(path, []byte(task+"[train]\niters = 7\nitres = 1\n"), 0o644))
	_, err := Load(path)
	require.Error(t, err)
	assert.Equal(t, path+":5: unknown key train.itres (did you mean train.iters?)", err.Error())

	require.NoError(t, os.WriteFile(path, []byte(task+"[train]\niters = 7\n"), 0o644))
	r, err := Load(path, "train.batch_size=3")
	require.NoError(t, err)
	assert.Equal(t, 7, r.Train.Iters)
	assert.Equal(t, 3, r.Train.BatchSize)

	_, err = Load(filepath.Join(dir, "missing.toml"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "missing.toml")
}

// TestExamples loads every example recipe, checks it, and reads its data
// with the data package, so the paths and formats are real.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("examples", "*.toml"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 6)
	formats := map[string]bool{}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r, err := Load(f)
			require.NoError(t, err)
			roundTrip(t, r)
			if r.Data.Task.Kind != "" {
				_, err := data.NewTask(r.TaskSpec())
				require.NoError(t, err)
				formats["task"] = true
				return
			}
			train, valid, test := r.Sources()
			assert.Empty(t, valid.Paths)
			assert.Empty(t, test.Paths)
			files, err := train.Files()
			require.NoError(t, err)
			for _, p := range files {
				formats[filepath.Ext(p)+" "+r.Data.Format] = true
			}
			docs := 0
			_, err = train.Each(func(d data.Document) error {
				docs++
				assert.NotEmpty(t, d.String())
				return nil
			})
			require.NoError(t, err)
			assert.Greater(t, docs, 0)
		})
	}
	for _, want := range []string{".txt auto", ".jsonl text", ".jsonl completions", ".jsonl chat", ".parquet completions", "task"} {
		assert.True(t, formats[want], "an example reads %s", want)
	}
}

func TestLayerKinds(t *testing.T) {
	m := Defaults().Model
	m.Layers = 4
	m.LayerPattern = []string{"ssm", "attention:moe"}
	kinds, err := m.LayerKinds()
	require.NoError(t, err)
	assert.Equal(t, []LayerKind{{"ssm", "dense"}, {"attention", "moe"}, {"ssm", "dense"}, {"attention", "moe"}}, kinds)
	assert.Equal(t, "attention:moe", kinds[1].String())

	m.Layers = 3
	_, err = m.LayerKinds()
	require.Error(t, err)
	m.LayerPattern = []string{"ssm:dense:x"}
	_, err = m.LayerKinds()
	require.Error(t, err)
}

func TestEffectiveValues(t *testing.T) {
	m := Defaults().Model
	m.DModel, m.Heads = 128, 4
	assert.Equal(t, 32, m.EffectiveHeadDim())
	assert.Equal(t, 4, m.EffectiveKVHeads())
	assert.Equal(t, 512, m.EffectiveFFNWidth())
	assert.Equal(t, 8, m.EffectiveDTRank())
	m.HeadDim, m.KVHeads, m.FFNWidth, m.SSM.DTRank = 48, 2, 300, 5
	assert.Equal(t, 48, m.EffectiveHeadDim())
	assert.Equal(t, 2, m.EffectiveKVHeads())
	assert.Equal(t, 300, m.EffectiveFFNWidth())
	assert.Equal(t, 5, m.EffectiveDTRank())

	require.NoError(t, m.SetFamily("llama"))
	m.FFNWidth = 0
	assert.Equal(t, 344, m.EffectiveFFNWidth(), "8/3·128 = 341.3, rounded up to a multiple of 8")
	m.DModel, m.SSM.DTRank = 100, 0
	assert.Equal(t, 7, m.EffectiveDTRank())

	r := Default()
	assert.Equal(t, r.Train.MaxSeqLength, r.MaxPositions())
	r.Model.MaxPositions = 64
	assert.Equal(t, 64, r.MaxPositions())
}

func TestDataTranslations(t *testing.T) {
	r := Default()
	r.Train.Seed = 9
	spec := r.TaskSpec()
	assert.Equal(t, data.TaskSpec{Kind: "addition", MaxDigits: 3, MinLen: 1, MaxLen: 8, Pairs: 8, Queries: 4,
		HeldOut: 500, Seed: 9}, spec)

	bc := r.BatchConfig(data.NewByteTokenizer())
	assert.Equal(t, data.BatchConfig{Packing: data.Packing{SeqLen: r.Train.MaxSeqLength, EOS: data.ByteEOS,
		PAD: data.BytePAD, PadEach: true}, BatchSize: r.Train.BatchSize, Seed: 9}, bc)

	r = Defaults()
	r.Data.Train = []string{"a.jsonl"}
	r.Data.Test = []string{"t.jsonl"}
	r.Data.Format = "chat"
	r.Data.MessagesField = "conversation"
	train, valid, test := r.Sources()
	assert.Equal(t, data.Source{Paths: []string{"a.jsonl"}, Format: data.FormatChat, TextField: "text",
		PromptField: "prompt", CompletionField: "completion", MessagesField: "conversation"}, train)
	assert.Empty(t, valid.Paths)
	assert.Equal(t, []string{"t.jsonl"}, test.Paths)
	r.Data.Format = "auto"
	train, _, _ = r.Sources()
	assert.Equal(t, data.FormatAuto, train.Format)
}

// TestSchedule compares the built schedules with the formulas written out.
func TestSchedule(t *testing.T) {
	const lr, init, final = 1e-3, 1e-5, 1e-4
	cases := []struct {
		name   string
		set    []string
		steps  int
		expect func(step int) float64
	}{
		{"constant", []string{"lr_schedule.name=constant"}, 100, func(int) float64 { return lr }},
		{"warmup then constant", []string{"lr_schedule.name=constant", "lr_schedule.warmup=10",
			"lr_schedule.warmup_init=1e-5"}, 100, func(s int) float64 {
			if s < 10 {
				return init + (lr-init)*float64(s)/10
			}
			return lr
		}},
		{"warmup then cosine over the rest", []string{"lr_schedule.name=cosine", "lr_schedule.warmup=10",
			"lr_schedule.final_lr=1e-4"}, 100, func(s int) float64 {
			if s < 10 {
				return lr * float64(s) / 10
			}
			p := math.Min(float64(s-10)/90, 1)
			return final + (lr-final)*0.5*(1+math.Cos(math.Pi*p))
		}},
		{"cosine over decay_steps", []string{"lr_schedule.name=cosine", "lr_schedule.decay_steps=40"}, 100,
			func(s int) float64 {
				p := math.Min(float64(s)/40, 1)
				return lr * 0.5 * (1 + math.Cos(math.Pi*p))
			}},
		{"linear", []string{"lr_schedule.name=linear", "lr_schedule.final_lr=1e-4", "lr_schedule.warmup=5"}, 55,
			func(s int) float64 {
				if s < 5 {
					return lr * float64(s) / 5
				}
				return lr + (final-lr)*math.Min(float64(s-5)/50, 1)
			}},
		{"step", []string{"lr_schedule.name=step", "lr_schedule.gamma=0.5", "lr_schedule.step_size=7"}, 100,
			func(s int) float64 { return lr * math.Pow(0.5, float64(s/7)) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Default()
			r.LRSchedule = Defaults().LRSchedule
			require.NoError(t, r.Apply(append(c.set, "optimizer.learning_rate=1e-3")...))
			s, err := r.Schedule(c.steps)
			require.NoError(t, err)
			for step := 0; step <= c.steps+10; step++ {
				assert.InDelta(t, c.expect(step), s.LR(step), 1e-12, "step %d", step)
			}
		})
	}
	r := Default()
	r.LRSchedule.Name = "bogus"
	_, err := r.Schedule(10)
	require.Error(t, err)
}

func TestNewOptimizer(t *testing.T) {
	w := autodiff.Zeros(autodiff.Float32, 2, 3)
	defer w.Release()
	params := []optim.Param{{Name: "w", Value: w}}
	for _, name := range optimizerNames {
		r := Default()
		set := []string{"optimizer.name=" + name}
		if name == "sgd" {
			set = append(set, "optimizer.momentum=0.9", "optimizer.nesterov=true")
		}
		require.NoError(t, r.Apply(set...))
		o, err := r.NewOptimizer(params, r.Train.Iters)
		require.NoError(t, err, name)
		assert.Equal(t, name, o.Kind())
		assert.Equal(t, 0.0, o.LearningRate(), "warmup starts at warmup_init")
		o.Release()
	}
	r := Default()
	r.Optimizer.Name = "rmsprop"
	_, err := r.NewOptimizer(params, 10)
	require.Error(t, err)
}
