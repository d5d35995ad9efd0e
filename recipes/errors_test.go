package recipes

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// task is the smallest data section that validates.
const task = "[data.task]\nkind = \"addition\"\n"

// TestParseErrors covers every way Parse rejects a recipe. Each case lists
// the errors expected, in order: each string must be a prefix of its error's
// text (so the file:line part is checked exactly).
func TestParseErrors(t *testing.T) {
	cases := []struct {
		name string
		toml string
		want []string
	}{
		// TOML syntax.
		{"syntax", "[train]\niters = = 1\n", []string{"recipe.toml:2: toml: "}},
		{"unclosed table", "[train\niters = 1\n", []string{"recipe.toml:2: toml: "}},
		{"duplicate key", task + "[train]\niters = 1\niters = 2\n", []string{"recipe.toml:5: toml: "}},
		{"duplicate table", task + "[train]\n[train]\n", []string{"recipe.toml:4: toml: "}},

		// Unknown keys, with the line and the nearest valid key.
		{"unknown top-level key", "iters = 5\n" + task, []string{
			"recipe.toml:1: unknown key iters (did you mean train.iters?)"}},
		{"unknown table", task + "[trian]\niters = 5\n", []string{
			"recipe.toml:3: unknown key trian (did you mean train?)"}},
		{"unknown key in a table", task + "[train]\nbatch_size = 8\niter = 5\n", []string{
			"recipe.toml:5: unknown key train.iter (did you mean train.iters?)"}},
		{"unknown nested table key", task + "[model.moe]\nexperts = 4\n\ntopk = 2\n", []string{
			"recipe.toml:6: unknown key model.moe.topk (did you mean model.moe.top_k?)"}},
		{"unknown nested table", task + "[model.ssmm]\nd_state = 4\n", []string{
			"recipe.toml:3: unknown key model.ssmm (did you mean model.ssm?)"}},
		{"unknown dotted key", "train.itres = 5\n" + task, []string{
			"recipe.toml:1: unknown key train.itres (did you mean train.iters?)"}},
		{"unknown key in an inline table", "model = { d_model = 64,\n  hedas = 4 }\n" + task, []string{
			"recipe.toml:2: unknown key model.hedas (did you mean model.heads?)"}},
		{"key in the wrong table", task + "[train]\nlearning_rate = 1e-3\n", []string{
			"recipe.toml:4: unknown key train.learning_rate (did you mean optimizer.learning_rate?)"}},
		{"another tool's name", task + "[optimizer]\nlr = 1e-3\n", []string{
			"recipe.toml:4: unknown key optimizer.lr (did you mean optimizer.learning_rate?)"}},
		{"Hugging Face name", task + "[model]\nnum_attention_heads = 4\n", []string{
			"recipe.toml:4: unknown key model.num_attention_heads (did you mean model.heads?)"}},
		{"nothing near", task + "[train]\nzzzzzzzz = 1\n", []string{
			"recipe.toml:4: unknown key train.zzzzzzzz"}},
		{"quoted unknown key", task + "[train]\n\"bad key\" = 1\n", []string{
			"recipe.toml:4: unknown key train.\"bad key\""}},
		{"after a multi-line string", task + "[eval]\nsample_prompt = \"\"\"\nfoo = 1\n\"\"\"\nsample_tokes = 3\n", []string{
			"recipe.toml:7: unknown key eval.sample_tokes (did you mean eval.sample_tokens?)"}},
		{"several unknown keys, in line order", task + "[train]\nitres = 1\n[model]\nlayer = 2\n", []string{
			"recipe.toml:4: unknown key train.itres",
			"recipe.toml:6: unknown key model.layer (did you mean model.layers?)"}},

		// Wrong types, with the line.
		{"string for an integer", task + "[train]\niters = \"100\"\n", []string{
			"recipe.toml:4: train.iters: want an integer, got string \"100\""}},
		{"fraction for an integer", task + "[train]\niters = 1.5\n", []string{
			"recipe.toml:4: train.iters: want an integer, got float 1.5"}},
		{"integer for a boolean", task + "[model]\nbias = 1\n", []string{
			"recipe.toml:4: model.bias: want true or false, got integer 1"}},
		{"string for a number", task + "[optimizer]\nlearning_rate = \"fast\"\n", []string{
			"recipe.toml:4: optimizer.learning_rate: want a number, got string \"fast\""}},
		{"too few betas", task + "[optimizer]\nbetas = [0.9]\n", []string{
			"recipe.toml:4: optimizer.betas: want a list of 2 numbers, got an array"}},
		{"string among betas", task + "[optimizer]\nbetas = [0.9, \"x\"]\n", []string{
			"recipe.toml:4: optimizer.betas[1]: want a number, got string \"x\""}},
		{"number in a string list", task + "[model]\nlayer_pattern = [\"attention\", 2]\n", []string{
			"recipe.toml:4: model.layer_pattern[1]: want a string, got integer 2"}},
		{"number for a path list", "[data]\ntrain = 5\n", []string{
			"recipe.toml:2: data.train: want a list of strings, got integer 5"}},
		{"value for a table", "model = 5\n" + task, []string{
			"recipe.toml:1: model: want a table, got integer 5"}},
		{"table for a value", task + "[train.iters]\nx = 1\n", []string{
			"recipe.toml:3: train.iters: want an integer, got a table"}},
		{"negative seed", task + "[train]\nseed = -1\n", []string{
			"recipe.toml:4: train.seed: want an integer at least 0, got integer -1"}},
		{"datetime", task + "[train]\nout = 1979-05-27\n", []string{
			"recipe.toml:4: train.out: want a string, got a datetime"}},
		{"type errors and unknown keys together", task + "[train]\niters = true\nbogus = 1\n", []string{
			"recipe.toml:4: train.iters: want an integer, got boolean true",
			"recipe.toml:5: unknown key train.bogus"}},

		// Out-of-range values, at their line.
		{"negative iters", task + "[train]\niters = -1\n", []string{
			"recipe.toml:4: train.iters must be at least 0, got -1"}},
		{"no steps", task + "[train]\niters = 0\n", []string{
			"recipe.toml:4: train.iters and train.epochs are both 0: set one"}},
		{"zero batch", task + "[train]\nbatch_size = 0\n", []string{
			"recipe.toml:4: train.batch_size must be 1 to 1048576, got 0"}},
		{"dropout of 1", task + "[model]\ndropout = 1.0\n", []string{
			"recipe.toml:4: model.dropout must be at least 0 and below 1, got 1.0"}},
		{"zero norm epsilon", task + "[model]\nnorm_eps = 0\n", []string{
			"recipe.toml:4: model.norm_eps must be above 0 and below 1, got 0.0"}},
		{"zero learning rate", task + "[optimizer]\nlearning_rate = 0\n", []string{
			"recipe.toml:4: optimizer.learning_rate must be above 0, got 0.0"}},
		{"nan learning rate", task + "[optimizer]\nlearning_rate = nan\n", []string{
			"recipe.toml:4: optimizer.learning_rate must be a finite number, got nan"}},
		{"infinite beta", task + "[optimizer]\nbetas = [-inf, 0.9]\n", []string{
			"recipe.toml:4: optimizer.betas[0] must be a finite number, got -inf"}},
		{"infinite ffn_mult", task + "[model]\nffn_mult = inf\n", []string{
			"recipe.toml:4: model.ffn_mult must be a finite number, got inf"}},
		{"beta of 1", task + "[optimizer]\nbetas = [0.9, 1.0]\n", []string{
			"recipe.toml:4: optimizer.betas[1] must be above 0 and below 1, got 1.0"}},
		{"zero val_batches", task + "[train]\nval_batches = 0\n", []string{
			"recipe.toml:4: train.val_batches must be -1 (the whole validation set) or at least 1, got 0"}},
		{"negative clip", task + "[train]\nmax_grad_norm = -1\n", []string{
			"recipe.toml:4: train.max_grad_norm must be at least 0, got -1.0"}},
		{"split above 1", "[data]\ntrain = \"a.txt\"\nvalid_split = 1.5\n", []string{
			"recipe.toml:3: data.valid_split must be at least 0 and below 1, got 1.5",
			"recipe.toml:3: data.valid_split + data.test_split = 1.5 leaves no training data"}},
		{"splits leave nothing", "[data]\ntrain = \"a.txt\"\nvalid_split = 0.5\ntest_split = 0.5\n", []string{
			"recipe.toml:3: data.valid_split + data.test_split = 1.0 leaves no training data"}},
		{"zero lora rank", task + "[lora]\nrank = 0\n", []string{
			"recipe.toml:4: lora.rank must be 1 to 65536, got 0"}},
		{"duplicate lora key", task + "[lora]\nkeys = [\"q\", \"q\"]\n", []string{
			"recipe.toml:4: lora.keys[1] = \"q\" appears twice"}},
		{"no lora keys", task + "[lora]\nkeys = []\n", []string{
			"recipe.toml:4: lora.keys is empty"}},
		{"lora layers beyond the model", task + "[lora]\nnum_layers = 9\n", []string{
			"recipe.toml:4: lora.num_layers must be -1 (all) or 1 to model.layers = 4, got 9"}},
		{"too many digits", "[data.task]\nkind = \"addition\"\nmax_digits = 19\n", []string{
			"recipe.toml:3: data.task.max_digits must be 1 to 18, got 19"}},
		{"moe top_k above experts", task + "[model.moe]\nexperts = 2\ntop_k = 3\n", []string{
			"recipe.toml:5: model.moe.top_k = 3 is more than model.moe.experts = 2"}},
		{"bad ssm state", task + "[model.ssm]\nd_state = 0\n", []string{
			"recipe.toml:4: model.ssm.d_state must be 1 to 1024, got 0"}},

		// Choices, with the nearest one.
		{"unknown family", task + "[model]\nfamily = \"gtp\"\n", []string{
			"recipe.toml:4: model.family: \"gtp\" is not one of \"gpt\", \"llama\" (did you mean \"gpt\"?)"}},
		{"unknown ffn", task + "[model]\nffn = \"swiglue\"\n", []string{
			"recipe.toml:4: model.ffn: \"swiglue\" is not one of \"gelu\", \"gelu_tanh\", \"relu\", \"swiglu\" (did you mean \"swiglu\"?)"}},
		{"unknown optimizer", task + "[optimizer]\nname = \"adamx\"\n", []string{
			"recipe.toml:4: optimizer.name: \"adamx\" is not one of \"adamw\", \"adam\", \"sgd\", \"lion\" (did you mean \"adamw\"?)"}},
		{"unknown schedule", task + "[lr_schedule]\nname = \"cosine_decay\"\n", []string{
			"recipe.toml:4: lr_schedule.name: \"cosine_decay\" is not one of \"constant\", \"cosine\", \"linear\", \"step\""}},
		{"unknown precision", task + "[train]\nprecision = \"fp16\"\n", []string{
			"recipe.toml:4: train.precision: \"fp16\" is not one of \"f32\", \"bf16\", \"f16\", \"auto\" (did you mean \"f16\"?)"}},
		{"unknown format", "[data]\ntrain = \"a.jsonl\"\nformat = \"chats\"\n", []string{
			"recipe.toml:3: data.format: \"chats\" is not one of \"auto\", \"text\", \"completions\", \"chat\" (did you mean \"chat\"?)"}},
		{"unknown tokenizer", "[data]\ntrain = \"a.txt\"\ntokenizer = \"bytes\"\n", []string{
			"recipe.toml:3: data.tokenizer: want \"byte\", \"bpe\" or the path of a tokenizer.json, got \"bytes\" (did you mean \"byte\"?)"}},
		{"unknown router", task + "[model.moe]\nrouter = \"topk\"\n", []string{
			"recipe.toml:4: model.moe.router: \"topk\" is not one of \"softmax\", \"sigmoid\""}},
		{"unknown dtype", task + "[model]\ndtype = \"float16\"\n", []string{
			"recipe.toml:4: model.dtype: \"float16\" is not one of \"float32\""}},

		// Unknown task, missing data.
		{"unknown task", "[data.task]\nkind = \"additon\"\n", []string{
			"recipe.toml:2: data.task.kind: \"additon\" is not one of \"addition\", \"copy\", \"reverse\", \"sort\", \"mqar\" (did you mean \"addition\"?)"}},
		{"missing data", "[train]\niters = 10\n", []string{
			"recipe.toml: no training data: set data.task.kind (one of addition, copy, reverse, sort, mqar) or data.train (files or globs)"}},
		{"empty file", "", []string{"recipe.toml: no training data"}},
		{"empty path", "[data]\ntrain = [\"a.txt\", \" \"]\n", []string{
			"recipe.toml:2: data.train[1] is an empty path"}},

		// Inconsistent model dimensions.
		{"heads do not divide d_model", task + "[model]\nd_model = 100\nheads = 3\n", []string{
			"recipe.toml:5: model.heads = 3 does not divide model.d_model = 100 (or set model.head_dim)"}},
		{"heads vs default d_model", task + "[model]\nheads = 3\n", []string{
			"recipe.toml:4: model.heads = 3 does not divide model.d_model = 256"}},
		{"head_dim frees d_model", task + "[model]\nheads = 3\nhead_dim = 64\n", nil},
		{"kv_heads do not divide heads", task + "[model]\nheads = 8\nkv_heads = 3\n", []string{
			"recipe.toml:5: model.kv_heads = 3 does not divide model.heads = 8"}},
		{"rope with an odd head", task + "[model]\npositions = \"rope\"\nhead_dim = 7\n", []string{
			"recipe.toml:5: model.positions = \"rope\" needs an even head dimension, got 7"}},
		{"pattern does not divide layers", task + "[model]\nlayers = 3\nlayer_pattern = [\"ssm\", \"attention\"]\n", []string{
			"recipe.toml:5: model.layer_pattern has 2 entries, which do not divide model.layers = 3"}},
		{"bad pattern entries", task + "[model]\nlayer_pattern = [\"atention\", \"ssm:mo\"]\nlayers = 2\n", []string{
			"recipe.toml:4: model.layer_pattern[0]: \"atention\": mixer \"atention\" is not one of \"attention\", \"ssm\" (did you mean \"attention\"?)",
			"recipe.toml:4: model.layer_pattern[1]: \"ssm:mo\": feed-forward \"mo\" is not one of \"dense\", \"moe\" (did you mean \"moe\"?)"}},
		{"empty pattern", task + "[model]\nlayer_pattern = []\n", []string{
			"recipe.toml:4: model.layer_pattern is empty"}},
		{"table too small for the context", task + "[model]\nmax_positions = 64\n[train]\nmax_seq_length = 128\n", []string{
			"recipe.toml:4: model.max_positions = 64 is below train.max_seq_length = 128"}},
		{"vocabulary smaller than bytes", task + "[model]\nvocab_size = 100\n", []string{
			"recipe.toml:4: model.vocab_size = 100 is smaller than the byte tokenizer's 259 ids"}},
		{"vocabulary smaller than the bpe", "[data]\ntrain = \"a.txt\"\ntokenizer = \"bpe\"\nbpe_vocab_size = 500\n[model]\nvocab_size = 400\n", []string{
			"recipe.toml:6: model.vocab_size = 400 is smaller than the bpe tokenizer's 500 ids"}},

		// Other inconsistencies.
		{"task and files", task + "[data]\ntrain = \"a.txt\"\n", []string{
			"recipe.toml:4: data.task.kind = \"addition\" and data.train are both set"}},
		{"task and a split", task + "[data]\nvalid_split = 0.1\n", []string{
			"recipe.toml:4: data.valid_split does not apply to a synthetic task"}},
		{"task and valid files", task + "[data]\nvalid = \"v.txt\"\n", []string{
			"recipe.toml:4: data.valid does not apply to a synthetic task"}},
		{"task with bpe", task + "[data]\ntokenizer = \"bpe\"\n", []string{
			"recipe.toml:4: data.tokenizer = \"bpe\": synthetic tasks are written in bytes"}},
		{"valid files and a split", "[data]\ntrain = \"a.txt\"\nvalid = \"b.txt\"\nvalid_split = 0.1\n", []string{
			"recipe.toml:4: data.valid_split and data.valid are both set"}},
		{"held out more than exists", "[data.task]\nkind = \"addition\"\nmax_digits = 1\n", []string{
			"recipe.toml:2: data.task: task addition: held_out 500, want 0 to 5"}},
		{"queries above pairs", "[data.task]\nkind = \"mqar\"\npairs = 4\nqueries = 5\n", []string{
			"recipe.toml:4: data.task.queries = 5 is more than data.task.pairs = 4"}},
		{"mqar symbols shared", "[data.task]\nkind = \"mqar\"\nalphabet = \"abcdefgh1\"\n", []string{
			"recipe.toml:3: data.task.values = \"0123456789\" and data.task.alphabet = \"abcdefgh1\" share symbols"}},
		{"bad symbols", "[data.task]\nkind = \"copy\"\nalphabet = \"aa\"\n", []string{
			"recipe.toml:3: data.task.alphabet = \"aa\": symbols must be distinct printable ASCII other than = | +"}},
		{"max_len below min_len", "[data.task]\nkind = \"copy\"\nmin_len = 5\nmax_len = 4\n", []string{
			"recipe.toml:4: data.task.max_len = 4 is below data.task.min_len = 5"}},
		{"epochs of an endless task", task + "[train]\nepochs = 2\n", []string{
			"recipe.toml:4: train.epochs needs a finite training set"}},
		{"warmup as long as the run", task + "[train]\niters = 100\n[lr_schedule]\nwarmup = 100\n", []string{
			"recipe.toml:6: lr_schedule.warmup = 100 is not below train.iters = 100"}},
		{"momentum with adamw", task + "[optimizer]\nmomentum = 0.9\n", []string{
			"recipe.toml:4: optimizer.momentum applies to sgd only, not \"adamw\""}},
		{"nesterov without momentum", task + "[optimizer]\nname = \"sgd\"\nnesterov = true\n", []string{
			"recipe.toml:5: optimizer.nesterov needs optimizer.momentum above 0 and optimizer.dampening 0"}},
		{"lora without a base", task + "[train]\nfine_tune_type = \"lora\"\n", []string{
			"recipe.toml:4: train.fine_tune_type = \"lora\" adapts a trained model: set model.from"}},
		{"empty run directory", task + "[train]\nout = \"\"\n", []string{
			"recipe.toml:4: train.out (the run directory) is empty"}},
		{"all problems at once", "[model]\nheads = 0\n[train]\nbatch_size = 0\n", []string{
			"recipe.toml:2: model.heads must be 1 to 4096, got 0",
			"recipe.toml: no training data",
			"recipe.toml:4: train.batch_size must be 1 to 1048576, got 0"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := Parse("recipe.toml", []byte(c.toml))
			if c.want == nil {
				require.NoError(t, err)
				require.NotNil(t, r)
				return
			}
			require.Error(t, err)
			assert.Nil(t, r)
			var es Errors
			require.True(t, errors.As(err, &es), "%T", err)
			var got []string
			for _, e := range es {
				got = append(got, e.Error())
			}
			require.Len(t, got, len(c.want), strings.Join(got, "\n"))
			for i, w := range c.want {
				assert.True(t, strings.HasPrefix(got[i], w), "error %d:\n got %s\nwant %s...", i, got[i], w)
				assert.Equal(t, "recipe.toml", es[i].Source)
			}
		})
	}
}

// TestErrorsCarryKeys checks the structured fields behind the text.
func TestErrorsCarryKeys(t *testing.T) {
	_, err := Parse("r.toml", []byte(task+"[train]\niter = 1\nbatch_size = \"x\"\n"))
	var es Errors
	require.True(t, errors.As(err, &es))
	require.Len(t, es, 2)
	assert.Equal(t, Error{Source: "r.toml", Line: 4, Key: "train.iter",
		Msg: "unknown key train.iter (did you mean train.iters?)"}, *es[0])
	assert.Equal(t, "train.batch_size", es[1].Key)
	assert.Equal(t, 5, es[1].Line)

	var e *Error
	require.True(t, errors.As(err, &e), "errors.As finds each *Error")
	assert.Equal(t, "train.iter", e.Key)
}

// TestSetErrors covers --set: unknown keys, tables, values of the wrong type.
func TestSetErrors(t *testing.T) {
	cases := []struct {
		key, value string
		want       string
	}{
		{"train.iter", "5", "--set train.iter=5: unknown key train.iter (did you mean train.iters?)"},
		{"iters", "5", "--set iters=5: unknown key iters (did you mean train.iters?)"},
		{"train.lr", "5", "--set train.lr=5: unknown key train.lr (did you mean optimizer.learning_rate?)"},
		{"", "5", "--set =5: unknown key "},
		{"train.iters.x", "5", "--set train.iters.x=5: unknown key train.iters.x"},
		{"model.ssm", "4", "--set model.ssm=4: model.ssm is a table: set one of its keys (model.ssm.d_state, model.ssm.d_conv, model.ssm.expand, model.ssm.dt_rank)"},
		{"train.iters", "abc", "--set train.iters=abc: train.iters: cannot read \"abc\" as a TOML value"},
		{"train.iters", "", "--set train.iters=: train.iters: cannot read \"\" as a TOML value"},
		{"train.iters", "1.5", "--set train.iters=1.5: train.iters: want an integer, got float 1.5"},
		{"train.iters", "1\nx = 2", "--set train.iters=1\nx = 2: train.iters: cannot read \"1\\nx = 2\": a value is one line"},
		{"train.iters", "1, x = 2", "--set train.iters=1, x = 2: train.iters: cannot read"},
		{"train.seed", "-1", "--set train.seed=-1: train.seed: want an integer at least 0, got integer -1"},
		{"model.bias", "yes", "--set model.bias=yes: model.bias: cannot read \"yes\" as a TOML value"},
		{"model.bias", "1", "--set model.bias=1: model.bias: want true or false, got integer 1"},
		{"optimizer.betas", "0.9", "--set optimizer.betas=0.9: optimizer.betas: want a list of 2 numbers, got an array"},
		{"optimizer.betas", "0.9,x", "--set optimizer.betas=0.9,x: optimizer.betas: cannot read"},
		{"optimizer.learning_rate", "\"1e-3\"", "--set optimizer.learning_rate=\"1e-3\": optimizer.learning_rate: want a number, got string \"1e-3\""},
		{"train.out", "\"unterminated", "--set train.out=\"unterminated: train.out: cannot read"},
		{"model.layer_pattern", "[1, 2]", "--set model.layer_pattern=[1, 2]: model.layer_pattern[0]: want a string, got integer 1"},
	}
	for _, c := range cases {
		t.Run(c.key+"="+c.value, func(t *testing.T) {
			r := Default()
			before := r.Effective()
			err := r.Set(c.key, c.value)
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), c.want), "got  %s\nwant %s...", err, c.want)
			assert.Equal(t, before, r.Effective(), "a failed Set changes nothing")
		})
	}
}

// TestApplyErrors checks that Apply cites --set for what Validate finds in
// overridden values, and the file for the rest.
func TestApplyErrors(t *testing.T) {
	cases := []struct {
		name      string
		overrides []string
		want      []string
	}{
		{"no equals sign", []string{"train.iters"}, []string{`--set train.iters: want key=value, got "train.iters"`}},
		{"range", []string{"train.batch_size=0"}, []string{
			"--set train.batch_size=0: train.batch_size must be 1 to 1048576, got 0"}},
		{"choice", []string{"data.task.kind=additon"}, []string{
			`--set data.task.kind=additon: data.task.kind: "additon" is not one of`}},
		{"consistency cites the key set", []string{"model.heads=3"}, []string{
			"--set model.heads=3: model.heads = 3 does not divide model.d_model = 64"}},
		{"consistency cites the other key when only it was set", []string{"model.d_model=102"}, []string{
			"--set model.d_model=102: model.heads = 4 does not divide model.d_model = 102"}},
		{"file key beside a set key", []string{"train.iters=50"}, []string{
			"--set train.iters=50: lr_schedule.warmup = "}},
		{"every bad override", []string{"train.iter=1", "model.bias=2"}, []string{
			"--set train.iter=1: unknown key train.iter",
			"--set model.bias=2: model.bias: want true or false"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Default()
			err := r.Apply(c.overrides...)
			require.Error(t, err)
			var es Errors
			require.True(t, errors.As(err, &es))
			require.Len(t, es, len(c.want), err.Error())
			for i, w := range c.want {
				assert.True(t, strings.HasPrefix(es[i].Error(), w), "got  %s\nwant %s...", es[i], w)
			}
		})
	}

	// An override is cited before the file; the file's lines show otherwise.
	_, err := Parse("recipe.toml", []byte(task+"[train]\niters = 50\n"), "lr_schedule.warmup=60")
	require.Error(t, err)
	assert.Equal(t, "--set lr_schedule.warmup=60: lr_schedule.warmup = 60 is not below train.iters = 50", err.Error())
	_, err = Parse("recipe.toml", []byte(task+"[lr_schedule]\nwarmup = 60\n"), "train.iters=50")
	require.Error(t, err)
	assert.Equal(t, "--set train.iters=50: lr_schedule.warmup = 60 is not below train.iters = 50", err.Error())
	_, err = Parse("recipe.toml", []byte(task+"[lr_schedule]\nwarmup = 60\n[train]\niters = 50\n"))
	require.Error(t, err)
	assert.Equal(t, "recipe.toml:4: lr_schedule.warmup = 60 is not below train.iters = 50", err.Error())
}

// TestValidateFromGo checks that a recipe filled in Go gets the same checks,
// with keys but no file.
func TestValidateFromGo(t *testing.T) {
	r := Defaults()
	r.Data.Task.Kind = "addition"
	require.NoError(t, r.Validate())

	r.Model.Heads = 3
	r.Model.KVHeads = 2
	r.Train.BatchSize = 0
	err := r.Validate()
	require.Error(t, err)
	assert.Equal(t, "model.kv_heads = 2 does not divide model.heads = 3\n"+
		"model.heads = 3 does not divide model.d_model = 256 (or set model.head_dim)\n"+
		"train.batch_size must be 1 to 1048576, got 0", err.Error())

	r = Defaults()
	r.Data.Task.Kind = "addition"
	r.Eval.SamplePrompt = "bad \xff"
	r.Train.Seed = 1 << 63
	err = r.Validate()
	require.Error(t, err)
	assert.Equal(t, "train.seed must be below 2^63, got 9223372036854775808\neval.sample_prompt is not valid UTF-8", err.Error())
}

func TestSuggestions(t *testing.T) {
	known := knownPaths()
	cases := map[string]string{
		"train.iter":               "train.iters",
		"train.batchsize":          "train.batch_size",
		"train.learning_rate":      "optimizer.learning_rate",
		"model.n_layer":            "model.layers",
		"model.hidden_size":        "model.d_model",
		"optimizer.beta":           "optimizer.betas",
		"lr_schedule.warmup_steps": "lr_schedule.warmup",
		"model.moe.num_experts":    "model.moe.experts",
		"data.task.max_digit":      "data.task.max_digits",
		"trainn":                   "train",
		"train.xyzzy":              "",
		"x":                        "",
	}
	for in, want := range cases {
		assert.Equal(t, want, suggestKey(strings.Split(in, "."), known), in)
	}
}

func TestEditDistance(t *testing.T) {
	cases := []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"a", "", 1}, {"", "abc", 3}, {"iter", "iters", 1}, {"kitten", "sitting", 3},
		{"flaw", "lawn", 2}, {"same", "same", 0}, {"ab", "ba", 1}, {"trian", "train", 1},
		{"ca", "abc", 3}, {"gtp", "gpt", 1}}
	for _, c := range cases {
		assert.Equal(t, c.d, editDistance(c.a, c.b), "%q %q", c.a, c.b)
		assert.Equal(t, c.d, editDistance(c.b, c.a), "%q %q", c.b, c.a)
	}
}
