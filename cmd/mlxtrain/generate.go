package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/mlxtrain/mlxtrain/data"
	"github.com/mlxtrain/mlxtrain/generate"
	"github.com/mlxtrain/mlxtrain/metal"
	"github.com/mlxtrain/mlxtrain/models"
	"github.com/mlxtrain/mlxtrain/recipes"
)

// loadedModel is a model and tokenizer read from a checkpoint directory.
type loadedModel struct {
	dir   string
	model *models.Model
	tok   *data.BPE
}

func generateCommand() *cli.Command {
	return &cli.Command{
		Name:  "generate",
		Usage: "continue a prompt (or a file of prompts) with a trained checkpoint",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "checkpoint", Usage: "checkpoint directory, or a run directory (its latest checkpoint)", Required: true},
			&cli.StringFlag{Name: "prompt", Usage: "the prompt text; - reads standard input"},
			&cli.StringFlag{Name: "prompt-file", Usage: "read the prompt from a file"},
			&cli.StringFlag{Name: "prompts", Usage: "a file of prompts, one per line, decoded together as a batch; one completion per output line"},
			&cli.BoolFlag{Name: "chat", Usage: "wrap the prompt in the chat template as a user turn and stop at the end of the reply"},
			&cli.IntFlag{Name: "max-tokens", Value: 64, Usage: "the most tokens to generate"},
			&cli.Float64Flag{Name: "temp", Value: 0, Usage: "sampling temperature; 0 is greedy"},
			&cli.IntFlag{Name: "top-k", Usage: "sample from the k most likely tokens; 0 is off"},
			&cli.Float64Flag{Name: "top-p", Usage: "sample from the most likely tokens whose probabilities reach p; 0 or 1 is off"},
			&cli.Float64Flag{Name: "min-p", Usage: "drop tokens less likely than min-p times the most likely one; 0 is off"},
			&cli.Float64Flag{Name: "repetition-penalty", Usage: "divide the positive (multiply the negative) logits of recent tokens; 1 or 0 is off"},
			&cli.IntFlag{Name: "repetition-context-size", Value: generate.DefaultRepetitionContextSize, Usage: "how many recent tokens the penalties look at"},
			&cli.Float64Flag{Name: "presence-penalty", Usage: "subtract from the logits of recent tokens"},
			&cli.Float64Flag{Name: "frequency-penalty", Usage: "subtract this times each recent token's count from its logit"},
			&cli.Uint64Flag{Name: "seed", Usage: "random seed: the same seed gives the same output"},
			&cli.StringSliceFlag{Name: "stop", Usage: "stop when the output contains this text (repeatable; not printed)"},
			&cli.BoolFlag{Name: "truncate", Usage: "keep the last tokens of a prompt too long for the model's context (with a warning) instead of failing"},
			&cli.IntFlag{Name: "max-kv-size", Usage: "bound each attention layer's cache to this many positions (a rotating cache); 0 keeps all"},
			&cli.IntFlag{Name: "keep", Value: 4, Usage: "with --max-kv-size: the first tokens always kept (attention sinks)"},
			&cli.IntFlag{Name: "kv-block-size", Usage: "paged KV caches with blocks of this many positions; 0 is off"},
			&cli.StringFlag{Name: "kv-dtype", Value: "float32", Usage: "what the KV caches store: float32 (as computed) or float16 (half the memory)"},
			&cli.IntFlag{Name: "prefill-step-size", Value: generate.DefaultPrefillStepSize, Usage: "prompt tokens per prefill chunk"},
			&cli.StringFlag{Name: "draft", Usage: "a smaller checkpoint of the same tokenizer for speculative decoding"},
			&cli.IntFlag{Name: "num-draft-tokens", Value: 3, Usage: "with --draft: tokens the draft proposes per step"},
		},
		Action: runGenerate,
	}
}

func runGenerate(c *cli.Context) error {
	o := generate.Options{
		MaxTokens: c.Int("max-tokens"),
		Sampler: generate.SamplerOptions{
			Temp: c.Float64("temp"), TopK: c.Int("top-k"), TopP: c.Float64("top-p"), MinP: c.Float64("min-p"),
			RepetitionPenalty: c.Float64("repetition-penalty"), RepetitionContextSize: c.Int("repetition-context-size"),
			PresencePenalty: c.Float64("presence-penalty"), FrequencyPenalty: c.Float64("frequency-penalty"),
			Seed: c.Uint64("seed"),
		},
		PrefillStepSize: c.Int("prefill-step-size"),
		Truncate:        c.Bool("truncate"),
	}
	if c.Int("max-kv-size") > 0 {
		o.Cache.MaxKVSize, o.Cache.Keep = c.Int("max-kv-size"), min(c.Int("keep"), c.Int("max-kv-size")-1)
	}
	o.Cache.BlockSize = c.Int("kv-block-size")
	switch c.String("kv-dtype") {
	case "float32", "f32":
	case "float16", "f16":
		o.Cache.Float16 = true
	default:
		return fmt.Errorf("--kv-dtype %s: want float32 or float16", c.String("kv-dtype"))
	}
	if err := flagErrors(c, o); err != nil {
		return err
	}
	prompts, batch, err := readPrompts(c)
	if err != nil {
		return err
	}
	lm, err := loadModel(c.String("checkpoint"))
	if err != nil {
		return err
	}
	stops := c.StringSlice("stop")
	tmpl := data.DefaultChatTemplate()
	if c.Bool("chat") {
		for i, p := range prompts {
			prompts[i] = tmpl.Header["user"] + p + tmpl.EndOfTurn + tmpl.Header["assistant"]
		}
		stops = append(stops, strings.TrimSpace(tmpl.EndOfTurn))
	}
	eos := lm.tok.Special().EOS
	if eos >= 0 {
		o.EOS = []int32{eos}
	}
	ids := make([][]int32, len(prompts))
	for i, p := range prompts {
		ids[i] = lm.tok.Encode(p)
		if len(ids[i]) == 0 {
			if batch {
				return fmt.Errorf("--prompts: line %d is empty", i+1)
			}
			return fmt.Errorf("--prompt: empty prompt")
		}
	}
	newStream := func(w io.Writer) *generate.TextStream {
		return &generate.TextStream{W: w, Decode: lm.tok.Decode, Stops: stops, Skip: o.EOS}
	}
	metal.StoragePool().ResetPeak()
	var st generate.Stats
	switch {
	case batch:
		if c.IsSet("draft") {
			return fmt.Errorf("--draft works with one prompt, not --prompts")
		}
		outs := make([]strings.Builder, len(ids))
		streams := make([]*generate.TextStream, len(ids))
		for i := range streams {
			streams[i] = newStream(&outs[i])
		}
		st, err = generate.GenerateBatch(lm.model, ids, o, func(i int, tok int32) bool { return streams[i].Add(tok) })
		if err != nil {
			return contextHint(err)
		}
		for i, s := range streams {
			_ = s.Close()
			// One line per prompt: newlines inside a completion are escaped.
			text := strings.ReplaceAll(strings.ReplaceAll(outs[i].String(), `\`, `\\`), "\n", `\n`)
			fmt.Fprintln(c.App.Writer, text)
		}
	default:
		s := newStream(c.App.Writer)
		emit := s.Add
		if c.IsSet("draft") {
			draft, derr := recipes.LoadModel(c.String("draft"))
			if derr != nil {
				return fmt.Errorf("--draft: %w", derr)
			}
			st, err = generate.Speculative(lm.model, draft.Model, ids[0], o, c.Int("num-draft-tokens"), emit)
		} else {
			st, err = generate.Generate(lm.model, ids[0], o, emit)
		}
		if err != nil {
			return contextHint(err)
		}
		if err := s.Close(); err != nil {
			return err
		}
		fmt.Fprintln(c.App.Writer)
	}
	w := c.App.ErrWriter
	if st.Truncated > 0 {
		fmt.Fprintf(w, "warning: --truncate dropped the first %d prompt tokens to fit the model's context of %d\n", st.Truncated, generate.Context(lm.model))
	}
	line := fmt.Sprintf("prompt: %d tokens, %.1f tokens/s; generated: %d tokens, %.1f tokens/s; peak memory: %s tensors, %s RSS",
		st.PromptTokens, st.PromptTokensPerSecond(), st.Tokens, st.TokensPerSecond(),
		metal.HumanBytes(metal.StoragePool().Peak()), metal.HumanBytes(recipes.PeakRSS()))
	if st.SharedTokens > 0 {
		line += fmt.Sprintf("; prompt tokens shared between prompts: %d", st.SharedTokens)
	}
	if st.Drafted > 0 {
		line += fmt.Sprintf("; draft tokens accepted: %d of %d", st.Accepted, st.Drafted)
	}
	fmt.Fprintln(w, line)
	return nil
}

// flagErrors turns invalid options into an error naming the flag.
func flagErrors(c *cli.Context, o generate.Options) error {
	if err := o.Validate(); err != nil {
		return fmt.Errorf("--%w", err)
	}
	switch {
	case c.Int("max-kv-size") < 0:
		return fmt.Errorf("--max-kv-size %d: want ≥ 0", c.Int("max-kv-size"))
	case c.Int("kv-block-size") < 0:
		return fmt.Errorf("--kv-block-size %d: want ≥ 0", c.Int("kv-block-size"))
	case c.Int("max-kv-size") > 0 && c.Int("kv-block-size") > 0:
		return fmt.Errorf("--max-kv-size and --kv-block-size: choose one")
	case c.Int("num-draft-tokens") < 1:
		return fmt.Errorf("--num-draft-tokens %d: want at least 1", c.Int("num-draft-tokens"))
	case c.Int("prefill-step-size") < 1:
		return fmt.Errorf("--prefill-step-size %d: want at least 1", c.Int("prefill-step-size"))
	}
	return nil
}

// contextHint adds the flag that helps to a prompt that does not fit.
func contextHint(err error) error {
	var ce *generate.ContextError
	if errors.As(err, &ce) {
		return fmt.Errorf("--prompt: %w (--truncate keeps its last tokens)", err)
	}
	return err
}

// readPrompts returns the prompts and whether they came from --prompts.
func readPrompts(c *cli.Context) ([]string, bool, error) {
	given := 0
	for _, f := range []string{"prompt", "prompt-file", "prompts"} {
		if c.IsSet(f) {
			given++
		}
	}
	if given > 1 {
		return nil, false, fmt.Errorf("give one of --prompt, --prompt-file and --prompts")
	}
	if c.IsSet("prompts") {
		b, err := os.ReadFile(c.String("prompts"))
		if err != nil {
			return nil, false, fmt.Errorf("--prompts: %w", err)
		}
		lines := strings.Split(strings.TrimRight(string(b), "\r\n"), "\n")
		for i := range lines {
			lines[i] = strings.TrimRight(lines[i], "\r")
		}
		if len(lines) == 1 && lines[0] == "" {
			return nil, false, fmt.Errorf("--prompts %s: no prompts", c.String("prompts"))
		}
		return lines, true, nil
	}
	p, err := readPrompt(c)
	return []string{p}, false, err
}

func readPrompt(c *cli.Context) (string, error) {
	switch {
	case c.String("prompt-file") != "":
		b, err := os.ReadFile(c.String("prompt-file"))
		if err != nil {
			return "", fmt.Errorf("--prompt-file: %w", err)
		}
		return string(b), nil
	case c.String("prompt") == "-":
		in := c.App.Reader
		if in == nil {
			in = os.Stdin
		}
		b, err := io.ReadAll(bufio.NewReader(in))
		if err != nil {
			return "", fmt.Errorf("--prompt -: %w", err)
		}
		return string(b), nil
	case c.IsSet("prompt"):
		return c.String("prompt"), nil
	}
	return "", fmt.Errorf("give --prompt TEXT, --prompt - (standard input), --prompt-file FILE or --prompts FILE")
}
