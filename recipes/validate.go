package recipes

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/mlxtrain/mlxtrain/data"
)

// Choices of the enumerated keys.
var (
	ffnKinds       = []string{"gelu", "gelu_tanh", "relu", "swiglu"}
	normKinds      = []string{"layernorm", "rmsnorm"}
	positionKinds  = []string{"learned", "rope", "none"}
	dtypes         = []string{"float32"}
	mixerKinds     = []string{"attention", "ssm"}
	ffnLayerKinds  = []string{"dense", "moe"}
	routerKinds    = []string{"softmax", "sigmoid"}
	formats        = []string{"auto", "text", "completions", "chat"}
	precisions     = []string{"f32", "bf16", "f16", "auto"}
	fineTuneTypes  = []string{"full", "lora"}
	optimizerNames = []string{"adamw", "adam", "sgd", "lion"}
	scheduleNames  = []string{"constant", "cosine", "linear", "step"}
)

// Limits that keep a recipe from asking for absurd allocations.
const (
	maxWidth   = 1 << 16 // d_model, head_dim, ffn_width, ...
	maxCount   = 1 << 12 // layers, heads, experts
	maxVocab   = 1 << 22
	maxSeqLen  = 1 << 20
	maxBatch   = 1 << 20
	maxTaskLen = 1024
	maxHeldOut = 1 << 16
	// taskCheckBudget bounds the bytes of held-out problems Validate lets
	// data.NewTask draw to check a task (a few milliseconds); a larger task is
	// checked when the run builds it.
	taskCheckBudget = 1 << 22
)

// Validate checks every range and consistency rule of the recipe and returns
// all the problems as Errors (nil if none). A recipe read from TOML cites
// file:line for keys the file gave and "--set key=value" for keys Set gave.
func (r *Recipe) Validate() error {
	v := &validator{r: r}
	v.generic()
	v.model()
	v.data()
	v.train()
	v.optimizer()
	v.schedule()
	v.lora()
	v.eval()
	return v.errs.orNil()
}

type validator struct {
	r    *Recipe
	errs Errors
}

// fail records a problem with keys[0], placed where the value to fix most
// likely is: the first of keys that Set gave (the user's latest word), else
// the first that the file gave, else the file.
func (v *validator) fail(keys []string, format string, args ...any) {
	e := &Error{Key: keys[0], Source: v.r.file, Msg: fmt.Sprintf(format, args...)}
	found := false
	for _, override := range []bool{true, false} {
		for _, k := range keys {
			if o, ok := v.r.origin[k]; ok && o.override == override && !found {
				e.Source, e.Line, found = o.source, o.line, true
			}
		}
	}
	v.errs = append(v.errs, e)
}

func (v *validator) atLeast(key string, got, lo int) bool {
	if got < lo {
		v.fail([]string{key}, "%s must be at least %d, got %d", key, lo, got)
		return false
	}
	return true
}

func (v *validator) between(key string, got, lo, hi int) bool {
	if got < lo || got > hi {
		v.fail([]string{key}, "%s must be %d to %d, got %d", key, lo, hi, got)
		return false
	}
	return true
}

// finite reports whether x is a number; generic reports those that are not,
// so the range checks below skip them rather than report them twice.
func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// fraction checks 0 <= got < 1 (or <= 1 with closed).
func (v *validator) fraction(key string, got float64, closed bool) {
	if finite(got) && (got < 0 || got > 1 || got == 1 && !closed) {
		hi := "below 1"
		if closed {
			hi = "at most 1"
		}
		v.fail([]string{key}, "%s must be at least 0 and %s, got %s", key, hi, formatFloat(got))
	}
}

func (v *validator) positive(key string, got float64) {
	if finite(got) && got <= 0 {
		v.fail([]string{key}, "%s must be above 0, got %s", key, formatFloat(got))
	}
}

func (v *validator) nonNegative(key string, got float64) {
	if finite(got) && got < 0 {
		v.fail([]string{key}, "%s must be at least 0, got %s", key, formatFloat(got))
	}
}

func (v *validator) choice(key, got string, choices []string) bool {
	for _, c := range choices {
		if got == c {
			return true
		}
	}
	v.fail([]string{key}, "%s: %s", key, choiceMsg(got, choices))
	return false
}

// generic checks what holds for every key: numbers are finite, text is
// UTF-8 (TOML can hold nothing else, so WriteTOML could not write it).
func (v *validator) generic() {
	rv := reflect.ValueOf(v.r).Elem()
	schema.walk(func(n *node) {
		f := rv.FieldByIndex(n.index)
		switch f.Kind() {
		case reflect.Float64:
			if x := f.Float(); math.IsNaN(x) || math.IsInf(x, 0) {
				v.fail([]string{n.key()}, "%s must be a finite number, got %s", n.key(), formatFloat(x))
			}
		case reflect.Array:
			for i := 0; i < f.Len(); i++ {
				if x := f.Index(i).Float(); math.IsNaN(x) || math.IsInf(x, 0) {
					v.fail([]string{n.key()}, "%s[%d] must be a finite number, got %s", n.key(), i, formatFloat(x))
				}
			}
		case reflect.String:
			if !utf8.ValidString(f.String()) {
				v.fail([]string{n.key()}, "%s is not valid UTF-8", n.key())
			}
		case reflect.Slice:
			for i := 0; i < f.Len(); i++ {
				if !utf8.ValidString(f.Index(i).String()) {
					v.fail([]string{n.key()}, "%s[%d] is not valid UTF-8", n.key(), i)
				}
			}
		case reflect.Uint64:
			if f.Uint() > math.MaxInt64 {
				v.fail([]string{n.key()}, "%s must be below 2^63, got %d", n.key(), f.Uint())
			}
		}
	})
}

func (v *validator) model() {
	m := &v.r.Model
	if _, ok := families[m.Family]; !ok {
		v.fail([]string{"model.family"}, "model.family: %s", choiceMsg(m.Family, Families()))
	}
	v.between("model.vocab_size", m.VocabSize, 0, maxVocab)
	if m.VocabSize > 0 {
		if need, name := v.r.Data.tokenizerSize(); need > 0 && m.VocabSize < need {
			v.fail([]string{"model.vocab_size", "data.tokenizer", "data.bpe_vocab_size"},
				"model.vocab_size = %d is smaller than the %s tokenizer's %d ids (0 takes the tokenizer's size)",
				m.VocabSize, name, need)
		}
	}
	dOK := v.between("model.d_model", m.DModel, 1, maxWidth)
	v.between("model.layers", m.Layers, 1, maxCount)
	hOK := v.between("model.heads", m.Heads, 1, maxCount)
	kvOK := v.between("model.kv_heads", m.KVHeads, 0, maxCount)
	hdOK := v.between("model.head_dim", m.HeadDim, 0, maxWidth)
	if hOK && kvOK && m.KVHeads > 0 && m.Heads%m.KVHeads != 0 {
		v.fail([]string{"model.kv_heads", "model.heads"},
			"model.kv_heads = %d does not divide model.heads = %d", m.KVHeads, m.Heads)
	}
	if dOK && hOK && hdOK && m.HeadDim == 0 && m.DModel%m.Heads != 0 {
		v.fail([]string{"model.heads", "model.d_model"},
			"model.heads = %d does not divide model.d_model = %d (or set model.head_dim)", m.Heads, m.DModel)
	}
	v.choice("model.ffn", m.FFN, ffnKinds)
	v.between("model.ffn_width", m.FFNWidth, 0, maxWidth)
	if m.FFNWidth == 0 && finite(m.FFNMult) {
		v.positive("model.ffn_mult", m.FFNMult)
		if m.FFNMult > 0 && dOK && m.FFNMult*float64(m.DModel) > maxWidth {
			v.fail([]string{"model.ffn_mult", "model.d_model"}, "model.ffn_mult = %s gives a feed-forward width above %d",
				formatFloat(m.FFNMult), maxWidth)
		}
	}
	v.choice("model.norm", m.Norm, normKinds)
	if finite(m.NormEps) && !(m.NormEps > 0 && m.NormEps < 1) {
		v.fail([]string{"model.norm_eps"}, "model.norm_eps must be above 0 and below 1, got %s", formatFloat(m.NormEps))
	}
	if v.choice("model.positions", m.Positions, positionKinds) && m.Positions == "rope" && dOK && hOK && hdOK {
		if hd := m.EffectiveHeadDim(); hd%2 != 0 {
			v.fail([]string{"model.head_dim", "model.d_model", "model.heads", "model.positions"},
				"model.positions = \"rope\" needs an even head dimension, got %d", hd)
		}
	}
	v.positive("model.rope_theta", m.RopeTheta)
	v.between("model.max_positions", m.MaxPositions, 0, maxSeqLen)
	if m.MaxPositions > 0 && m.MaxPositions < v.r.Train.MaxSeqLength {
		v.fail([]string{"model.max_positions", "train.max_seq_length"},
			"model.max_positions = %d is below train.max_seq_length = %d", m.MaxPositions, v.r.Train.MaxSeqLength)
	}
	v.between("model.window", m.Window, 0, maxSeqLen)
	v.fraction("model.dropout", m.Dropout, false)
	if finite(m.InitStd) && !(m.InitStd > 0 && m.InitStd <= 1) {
		v.fail([]string{"model.init_std"}, "model.init_std must be above 0 and at most 1, got %s", formatFloat(m.InitStd))
	}
	v.choice("model.init", m.Init, []string{"normal", "pytorch"})
	v.choice("model.dtype", m.DType, dtypes)
	v.layerPattern()
	v.ssm()
	v.moe()
}

// layerPattern checks model.layer_pattern (see ModelConfig).
func (v *validator) layerPattern() {
	m := &v.r.Model
	const key = "model.layer_pattern"
	if len(m.LayerPattern) == 0 {
		v.fail([]string{key}, "%s is empty; [\"attention\"] is a plain transformer", key)
		return
	}
	for i, e := range m.LayerPattern {
		if _, err := parseLayerKind(e); err != nil {
			v.fail([]string{key}, "%s[%d]: %v", key, i, err)
		}
	}
	if m.Layers > 0 && m.Layers%len(m.LayerPattern) != 0 {
		v.fail([]string{key, "model.layers"}, "%s has %d entries, which do not divide model.layers = %d",
			key, len(m.LayerPattern), m.Layers)
	}
}

func (v *validator) ssm() {
	s := &v.r.Model.SSM
	v.between("model.ssm.d_state", s.DState, 1, 1024)
	v.between("model.ssm.d_conv", s.DConv, 1, 64)
	v.between("model.ssm.expand", s.Expand, 1, 64)
	v.between("model.ssm.dt_rank", s.DTRank, 0, maxWidth)
}

func (v *validator) moe() {
	e := &v.r.Model.MoE
	ok := v.between("model.moe.experts", e.Experts, 1, maxCount)
	if v.atLeast("model.moe.top_k", e.TopK, 1) && ok && e.TopK > e.Experts {
		v.fail([]string{"model.moe.top_k", "model.moe.experts"},
			"model.moe.top_k = %d is more than model.moe.experts = %d", e.TopK, e.Experts)
	}
	v.between("model.moe.shared_experts", e.SharedExperts, 0, maxCount)
	v.nonNegative("model.moe.capacity_factor", e.CapacityFactor)
	v.choice("model.moe.router", e.Router, routerKinds)
	v.nonNegative("model.moe.aux_loss_coef", e.AuxLossCoef)
	v.nonNegative("model.moe.z_loss_coef", e.ZLossCoef)
}

func (v *validator) data() {
	d := &v.r.Data
	task := d.Task.Kind != ""
	switch {
	case task && len(d.Train) > 0:
		v.fail([]string{"data.train", "data.task.kind"},
			"data.task.kind = %q and data.train are both set: train on a task or on files, not both", d.Task.Kind)
	case !task && len(d.Train) == 0:
		v.fail([]string{"data.train", "data.task.kind"},
			"no training data: set data.task.kind (one of %s) or data.train (files or globs)",
			strings.Join(data.TaskKinds, ", "))
	}
	for _, list := range []struct {
		key   string
		paths []string
	}{{"data.train", d.Train}, {"data.valid", d.Valid}, {"data.test", d.Test}} {
		for i, p := range list.paths {
			if strings.TrimSpace(p) == "" {
				v.fail([]string{list.key}, "%s[%d] is an empty path", list.key, i)
			}
		}
	}
	if task {
		for _, k := range []struct {
			key string
			set bool
		}{{"data.valid", len(d.Valid) > 0}, {"data.test", len(d.Test) > 0},
			{"data.valid_split", d.ValidSplit != 0}, {"data.test_split", d.TestSplit != 0}} {
			if k.set {
				v.fail([]string{k.key, "data.task.kind"},
					"%s does not apply to a synthetic task (data.task.kind = %q), which holds out its own problems",
					k.key, d.Task.Kind)
			}
		}
	}
	v.task()
	v.choice("data.format", d.Format, formats)
	for _, f := range []struct{ key, val string }{{"data.text_field", d.TextField},
		{"data.prompt_field", d.PromptField}, {"data.completion_field", d.CompletionField},
		{"data.messages_field", d.MessagesField}} {
		if f.val == "" {
			v.fail([]string{f.key}, "%s is empty", f.key)
		}
	}
	v.fraction("data.valid_split", d.ValidSplit, false)
	v.fraction("data.test_split", d.TestSplit, false)
	if len(d.Valid) > 0 && d.ValidSplit != 0 {
		v.fail([]string{"data.valid_split", "data.valid"},
			"data.valid_split and data.valid are both set: split the training files or give validation files, not both")
	}
	if len(d.Test) > 0 && d.TestSplit != 0 {
		v.fail([]string{"data.test_split", "data.test"},
			"data.test_split and data.test are both set: split the training files or give test files, not both")
	}
	if d.ValidSplit >= 0 && d.TestSplit >= 0 && d.ValidSplit+d.TestSplit >= 1 {
		v.fail([]string{"data.valid_split", "data.test_split"},
			"data.valid_split + data.test_split = %s leaves no training data", formatFloat(d.ValidSplit+d.TestSplit))
	}
	switch {
	case d.Tokenizer == "byte", d.Tokenizer == "bpe":
	case strings.HasSuffix(d.Tokenizer, ".json"):
	default:
		msg := fmt.Sprintf("data.tokenizer: want \"byte\", \"bpe\" or the path of a tokenizer.json, got %q", d.Tokenizer)
		if s := nearest(d.Tokenizer, []string{"byte", "bpe"}); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		v.fail([]string{"data.tokenizer"}, "%s", msg)
	}
	v.between("data.bpe_vocab_size", d.BPEVocabSize, 259, maxVocab)
	if task && d.Tokenizer != "byte" {
		v.fail([]string{"data.tokenizer", "data.task.kind"},
			"data.tokenizer = %q: synthetic tasks are written in bytes; use \"byte\"", d.Tokenizer)
	}
}

// task checks [data.task]: our own ranges first (each names its key), then
// data.NewTask for what depends on them together (how many problems can be
// held out).
func (v *validator) task() {
	t := &v.r.Data.Task
	if t.Kind != "" && !v.choice("data.task.kind", t.Kind, data.TaskKinds) {
		return
	}
	n := len(v.errs)
	v.between("data.task.max_digits", t.MaxDigits, 1, 18)
	v.between("data.task.min_len", t.MinLen, 1, maxTaskLen)
	if v.between("data.task.max_len", t.MaxLen, 1, maxTaskLen) && t.MaxLen < t.MinLen {
		v.fail([]string{"data.task.max_len", "data.task.min_len"},
			"data.task.max_len = %d is below data.task.min_len = %d", t.MaxLen, t.MinLen)
	}
	symbols := func(key, s string) bool {
		seen := map[rune]bool{}
		for _, c := range s {
			if c >= 0x80 || c < 0x20 || strings.ContainsRune("=|+", c) || seen[c] {
				v.fail([]string{key}, "%s = %q: symbols must be distinct printable ASCII other than = | +", key, s)
				return false
			}
			seen[c] = true
		}
		return true
	}
	aOK := symbols("data.task.alphabet", t.Alphabet)
	vOK := symbols("data.task.values", t.Values)
	if v.between("data.task.pairs", t.Pairs, 1, 256) && t.Kind == "mqar" && aOK {
		keys := len(t.Alphabet)
		if keys == 0 {
			keys = 26
		}
		if t.Pairs > keys {
			v.fail([]string{"data.task.pairs", "data.task.alphabet"},
				"data.task.pairs = %d is more than the %d keys of data.task.alphabet", t.Pairs, keys)
		}
	}
	if v.between("data.task.queries", t.Queries, 1, 256) && t.Queries > t.Pairs {
		v.fail([]string{"data.task.queries", "data.task.pairs"},
			"data.task.queries = %d is more than data.task.pairs = %d", t.Queries, t.Pairs)
	}
	if t.Kind == "mqar" && aOK && vOK {
		a, vals := t.Alphabet, t.Values
		if a == "" {
			a = "abcdefghijklmnopqrstuvwxyz"
		}
		if vals == "" {
			vals = "0123456789"
		}
		if strings.ContainsAny(a, vals) {
			v.fail([]string{"data.task.values", "data.task.alphabet"},
				"data.task.values = %q and data.task.alphabet = %q share symbols", vals, a)
		}
	}
	v.between("data.task.held_out", t.HeldOut, 1, maxHeldOut)
	v.atLeast("data.task.examples", t.Examples, 0)
	if t.Kind == "" || len(v.errs) > n {
		return
	}
	itemLen := map[string]int{"addition": 4*t.MaxDigits + 4, "mqar": 4*t.Pairs + 2}[t.Kind]
	if itemLen == 0 {
		itemLen = 2*t.MaxLen + 2
	}
	if t.HeldOut*itemLen > taskCheckBudget {
		return
	}
	if _, err := data.NewTask(v.r.TaskSpec()); err != nil {
		v.fail([]string{"data.task.held_out", "data.task.kind"}, "data.task: %v", err)
	}
}

func (v *validator) train() {
	t := &v.r.Train
	iOK := v.atLeast("train.iters", t.Iters, 0)
	eOK := v.atLeast("train.epochs", t.Epochs, 0)
	if iOK && eOK && t.Iters == 0 && t.Epochs == 0 {
		v.fail([]string{"train.iters", "train.epochs"}, "train.iters and train.epochs are both 0: set one")
	}
	if t.Epochs > 0 && v.r.Data.Task.Kind != "" && v.r.Data.Task.Examples == 0 {
		v.fail([]string{"train.epochs", "data.task.examples"},
			"train.epochs needs a finite training set: a synthetic task draws new examples forever unless data.task.examples is set")
	}
	v.between("train.batch_size", t.BatchSize, 1, maxBatch)
	v.between("train.max_seq_length", t.MaxSeqLength, 1, maxSeqLen)
	v.between("train.grad_accumulation_steps", t.GradAccumulationSteps, 1, maxBatch)
	v.atLeast("train.steps_per_report", t.StepsPerReport, 1)
	v.atLeast("train.steps_per_eval", t.StepsPerEval, 0)
	if t.ValBatches == 0 || t.ValBatches < -1 {
		v.fail([]string{"train.val_batches"}, "train.val_batches must be -1 (the whole validation set) or at least 1, got %d", t.ValBatches)
	}
	v.atLeast("train.save_every", t.SaveEvery, 0)
	v.atLeast("train.keep", t.Keep, 0)
	v.choice("train.precision", t.Precision, precisions)
	v.nonNegative("train.max_grad_norm", t.MaxGradNorm)
	if strings.TrimSpace(t.Out) == "" {
		v.fail([]string{"train.out"}, "train.out (the run directory) is empty")
	}
	if v.choice("train.fine_tune_type", t.FineTuneType, fineTuneTypes) && t.FineTuneType == "lora" && v.r.Model.From == "" {
		v.fail([]string{"train.fine_tune_type", "model.from"},
			"train.fine_tune_type = \"lora\" adapts a trained model: set model.from to its checkpoint directory")
	}
}

func (v *validator) optimizer() {
	o := &v.r.Optimizer
	v.choice("optimizer.name", o.Name, optimizerNames)
	v.positive("optimizer.learning_rate", o.LearningRate)
	for i, b := range o.Betas {
		// optim reads a zero beta as "the default", so 0 cannot be passed on.
		if finite(b) && !(b > 0 && b < 1) {
			v.fail([]string{"optimizer.betas"}, "optimizer.betas[%d] must be above 0 and below 1, got %s", i, formatFloat(b))
		}
	}
	v.positive("optimizer.eps", o.Eps)
	v.nonNegative("optimizer.weight_decay", o.WeightDecay)
	v.fraction("optimizer.momentum", o.Momentum, false)
	v.fraction("optimizer.dampening", o.Dampening, true)
	if o.Name != "sgd" {
		for _, k := range []struct {
			key string
			set bool
		}{{"optimizer.momentum", o.Momentum != 0}, {"optimizer.dampening", o.Dampening != 0}, {"optimizer.nesterov", o.Nesterov}} {
			if k.set {
				v.fail([]string{k.key, "optimizer.name"}, "%s applies to sgd only, not %q", k.key, o.Name)
			}
		}
	} else if o.Nesterov && (o.Momentum == 0 || o.Dampening != 0) {
		v.fail([]string{"optimizer.nesterov", "optimizer.momentum", "optimizer.dampening"},
			"optimizer.nesterov needs optimizer.momentum above 0 and optimizer.dampening 0")
	}
}

func (v *validator) schedule() {
	s := &v.r.LRSchedule
	v.choice("lr_schedule.name", s.Name, scheduleNames)
	if v.atLeast("lr_schedule.warmup", s.Warmup, 0) && v.r.Train.Epochs == 0 && v.r.Train.Iters > 0 && s.Warmup >= v.r.Train.Iters {
		v.fail([]string{"lr_schedule.warmup", "train.iters"},
			"lr_schedule.warmup = %d is not below train.iters = %d", s.Warmup, v.r.Train.Iters)
	}
	v.nonNegative("lr_schedule.warmup_init", s.WarmupInit)
	v.nonNegative("lr_schedule.final_lr", s.FinalLR)
	v.atLeast("lr_schedule.decay_steps", s.DecaySteps, 0)
	v.positive("lr_schedule.gamma", s.Gamma)
	v.atLeast("lr_schedule.step_size", s.StepSize, 1)
}

func (v *validator) lora() {
	l := &v.r.LoRA
	v.between("lora.rank", l.Rank, 1, maxWidth)
	v.positive("lora.scale", l.Scale)
	v.fraction("lora.dropout", l.Dropout, false)
	if len(l.Keys) == 0 {
		v.fail([]string{"lora.keys"}, "lora.keys is empty: name the linear layers to adapt, such as \"self_attn.q_proj\"")
	}
	seen := map[string]bool{}
	for i, k := range l.Keys {
		switch {
		case strings.TrimSpace(k) == "":
			v.fail([]string{"lora.keys"}, "lora.keys[%d] is empty", i)
		case seen[k]:
			v.fail([]string{"lora.keys"}, "lora.keys[%d] = %q appears twice", i, k)
		}
		seen[k] = true
	}
	if l.NumLayers != -1 && (l.NumLayers < 1 || l.NumLayers > v.r.Model.Layers) {
		v.fail([]string{"lora.num_layers", "model.layers"},
			"lora.num_layers must be -1 (all) or 1 to model.layers = %d, got %d", v.r.Model.Layers, l.NumLayers)
	}
}

func (v *validator) eval() {
	e := &v.r.Eval
	v.atLeast("eval.problems", e.Problems, 0)
	v.between("eval.sample_tokens", e.SampleTokens, 0, maxSeqLen)
}
