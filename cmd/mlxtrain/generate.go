package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/checkpoints"
	"github.com/mlxtrain/mlxtrain/data"
	"github.com/mlxtrain/mlxtrain/generate"
	"github.com/mlxtrain/mlxtrain/models"
)

// loadedModel is a model and tokenizer read from a checkpoint directory.
type loadedModel struct {
	dir   string
	model *models.Model
	tok   *data.BPE
}

// loadCheckpoint reads config.json, model.safetensors and tokenizer.json from dir,
// which may also be a run directory (its latest checkpoint is taken).
func loadCheckpoint(dir string) (*loadedModel, error) {
	if _, err := os.Stat(filepath.Join(dir, checkpoints.ConfigFile)); err != nil {
		latest, lerr := checkpoints.Latest(filepath.Join(dir, "checkpoints"))
		if lerr != nil {
			return nil, fmt.Errorf("--checkpoint %s: no %s there and no checkpoints/ with one", dir, checkpoints.ConfigFile)
		}
		dir = latest
	}
	ck, err := checkpoints.LoadDir(dir)
	if err != nil {
		return nil, err
	}
	if len(ck.Config) == 0 {
		ck.Release()
		return nil, fmt.Errorf("%s: no %s", dir, checkpoints.ConfigFile)
	}
	cfg, err := models.ParseConfig(ck.Config)
	if err != nil {
		ck.Release()
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, checkpoints.ConfigFile), err)
	}
	m, err := models.New(cfg, autodiff.NewRNG(0))
	if err != nil {
		ck.Release()
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, checkpoints.ConfigFile), err)
	}
	if err := m.LoadStateDict(ck.Model); err != nil {
		ck.Release()
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, checkpoints.ModelFile), err)
	}
	ck.Release()
	if len(ck.Tokenizer) == 0 {
		return nil, fmt.Errorf("%s: no %s", dir, checkpoints.TokenizerFile)
	}
	tok, err := data.ParseTokenizerJSON(ck.Tokenizer)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, checkpoints.TokenizerFile), err)
	}
	return &loadedModel{dir: dir, model: m, tok: tok}, nil
}

func generateCommand() *cli.Command {
	return &cli.Command{
		Name:  "generate",
		Usage: "continue a prompt with a trained checkpoint (greedy decoding)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "checkpoint", Usage: "checkpoint directory, or a run directory (its latest checkpoint)", Required: true},
			&cli.StringFlag{Name: "prompt", Usage: "the prompt text; - reads standard input"},
			&cli.StringFlag{Name: "prompt-file", Usage: "read the prompt from a file"},
			&cli.IntFlag{Name: "max-tokens", Value: 64, Usage: "the most tokens to generate"},
			&cli.Float64Flag{Name: "temp", Value: 0, Usage: "sampling temperature; 0 is greedy (the only mode so far)"},
		},
		Action: func(c *cli.Context) error {
			if c.Float64("temp") != 0 {
				return fmt.Errorf("--temp %g: only greedy decoding (--temp 0) is available so far", c.Float64("temp"))
			}
			if c.Int("max-tokens") < 1 {
				return fmt.Errorf("--max-tokens %d: want at least 1", c.Int("max-tokens"))
			}
			prompt, err := readPrompt(c)
			if err != nil {
				return err
			}
			lm, err := loadModel(c.String("checkpoint"))
			if err != nil {
				return err
			}
			ids := lm.tok.Encode(prompt)
			if len(ids) == 0 {
				return fmt.Errorf("--prompt: empty prompt")
			}
			eos := lm.tok.Special().EOS
			start := time.Now()
			out, err := generate.Greedy(lm.model, ids, c.Int("max-tokens"), eos)
			if err != nil {
				return fmt.Errorf("--prompt: %w", err)
			}
			el := time.Since(start)
			text := out
			if len(text) > 0 && text[len(text)-1] == eos {
				text = text[:len(text)-1]
			}
			fmt.Fprintln(c.App.Writer, lm.tok.Decode(text))
			fmt.Fprintf(c.App.ErrWriter, "prompt: %d tokens; generated: %d tokens in %s (%.1f tokens/s)\n",
				len(ids), len(out), el.Round(time.Millisecond), float64(len(out))/el.Seconds())
			return nil
		},
	}
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
		b, err := io.ReadAll(bufio.NewReader(os.Stdin))
		if err != nil {
			return "", fmt.Errorf("--prompt -: %w", err)
		}
		return string(b), nil
	case c.IsSet("prompt"):
		return c.String("prompt"), nil
	}
	return "", fmt.Errorf("give --prompt TEXT, --prompt - (standard input) or --prompt-file FILE")
}
