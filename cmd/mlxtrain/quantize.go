package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/checkpoints"
	"github.com/mlxtrain/mlxtrain/layers"
	"github.com/mlxtrain/mlxtrain/metal"
	"github.com/mlxtrain/mlxtrain/models"
	"github.com/mlxtrain/mlxtrain/quant"
)

func quantizeCommand() *cli.Command {
	return &cli.Command{
		Name:  "quantize",
		Usage: "write a checkpoint with MLX's affine group-wise quantization (or, with --dequantize, back to float32)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "checkpoint", Usage: "checkpoint directory, or a run directory (its latest checkpoint)", Required: true},
			&cli.StringFlag{Name: "out", Usage: "directory to write (must not exist yet)", Required: true},
			&cli.IntFlag{Name: "bits", Value: quant.DefaultBits, Usage: "bits per weight: 2, 3, 4, 5, 6 or 8"},
			&cli.IntFlag{Name: "group-size", Value: quant.DefaultGroupSize, Usage: "weights per scale and bias: 32, 64 or 128"},
			&cli.StringSliceFlag{Name: "keep", Usage: "keep modules matching `PATTERN` in float (a module path, a glob, or a suffix such as embed_tokens or lm_head); repeatable"},
			&cli.StringSliceFlag{Name: "layer", Usage: "quantize modules matching `PATTERN=BITS[:GROUP]` with their own bits (and group size), e.g. lm_head=8 or down_proj=6:32; repeatable, the first match wins"},
			&cli.BoolFlag{Name: "dequantize", Usage: "turn a quantized checkpoint back into float32"},
		},
		Action: func(c *cli.Context) error {
			return quantizeCheckpoint(c.App.Writer, c.String("checkpoint"), c.String("out"),
				quant.Params{GroupSize: c.Int("group-size"), Bits: c.Int("bits")}, c.StringSlice("keep"), c.StringSlice("layer"), c.Bool("dequantize"))
		},
	}
}

// layerOverride is one --layer PATTERN=BITS[:GROUP].
type layerOverride struct {
	pattern string
	params  quant.Params
}

func parseLayerOverrides(flags []string, def quant.Params) ([]layerOverride, error) {
	var out []layerOverride
	for _, f := range flags {
		pattern, spec, ok := strings.Cut(f, "=")
		if !ok || pattern == "" {
			return nil, fmt.Errorf("--layer %s: want PATTERN=BITS or PATTERN=BITS:GROUP", f)
		}
		p := quant.Params{GroupSize: def.GroupSize}
		bits, group, hasGroup := strings.Cut(spec, ":")
		var err error
		if p.Bits, err = strconv.Atoi(bits); err == nil && hasGroup {
			p.GroupSize, err = strconv.Atoi(group)
		}
		if err != nil {
			return nil, fmt.Errorf("--layer %s: want PATTERN=BITS or PATTERN=BITS:GROUP", f)
		}
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("--layer %s: %w", f, err)
		}
		out = append(out, layerOverride{pattern, p})
	}
	return out, nil
}

func quantizeCheckpoint(w io.Writer, src, out string, p quant.Params, keep, layerFlags []string, dequantize bool) error {
	var overrides []layerOverride
	if !dequantize {
		if err := p.Validate(); err != nil {
			return fmt.Errorf("--bits %d --group-size %d: %w", p.Bits, p.GroupSize, err)
		}
		var err error
		if overrides, err = parseLayerOverrides(layerFlags, p); err != nil {
			return err
		}
	}
	if _, err := os.Stat(out); err == nil {
		return fmt.Errorf("--out %s already exists", out)
	}
	if _, err := os.Stat(filepath.Join(src, checkpoints.ConfigFile)); err != nil {
		latest, lerr := checkpoints.Latest(filepath.Join(src, "checkpoints"))
		if lerr != nil {
			return fmt.Errorf("--checkpoint %s: no %s there and no checkpoints/ with one", src, checkpoints.ConfigFile)
		}
		src = latest
	}
	ck, err := checkpoints.LoadDir(src)
	if err != nil {
		return err
	}
	defer ck.Release()
	if len(ck.Config) == 0 {
		return fmt.Errorf("%s: no %s", src, checkpoints.ConfigFile)
	}
	cfg, err := models.ParseConfig(ck.Config)
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(src, checkpoints.ConfigFile), err)
	}
	m, err := models.New(cfg, autodiff.NewRNG(0))
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(src, checkpoints.ConfigFile), err)
	}
	if err := m.LoadStateDict(ck.Model); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(src, checkpoints.ModelFile), err)
	}
	before := stateBytes(m)
	if dequantize {
		q, _ := m.Config.Quantization()
		if q == nil {
			return fmt.Errorf("--checkpoint %s is not quantized (its %s has no \"quantization\")", src, checkpoints.ConfigFile)
		}
		m.Dequantize()
	} else {
		var names []string
		for _, t := range m.QuantTargets() {
			names = append(names, t.Name)
		}
		for _, k := range keep {
			if !slices.ContainsFunc(names, func(n string) bool { return layers.MatchesLoRAKey(n, []string{k}) }) {
				return fmt.Errorf("--keep %s matches no module (they are %s … %s)", k, names[0], names[len(names)-1])
			}
		}
		qc := quant.Config{Params: p, Layers: map[string]*quant.Params{}}
		for _, o := range overrides {
			matched := false
			for _, n := range names {
				if layers.MatchesLoRAKey(n, []string{o.pattern}) {
					matched = true
					if _, done := qc.Layers[n]; !done && o.params != p {
						op := o.params
						qc.Layers[n] = &op
					}
				}
			}
			if !matched {
				return fmt.Errorf("--layer %s matches no module (they are %s … %s)", o.pattern, names[0], names[len(names)-1])
			}
		}
		reports, err := m.Quantize(qc, func(name string) bool { return layers.MatchesLoRAKey(name, keep) })
		if err != nil {
			return fmt.Errorf("--checkpoint %s: %w", src, err)
		}
		fmt.Fprintf(w, "%-50s %-10s %11s %11s %21s\n", "tensor", "format", "rmse", "max abs", "bytes")
		for _, r := range reports {
			format := "float32"
			if r.Quantized {
				format = fmt.Sprintf("q%d g%d", r.Params.Bits, r.Params.GroupSize)
			}
			fmt.Fprintf(w, "%-50s %-10s %11.3e %11.3e %10s → %-8s\n", r.Name+".weight", format, r.RMSE, r.MaxAbs,
				metal.HumanBytes(r.BytesBefore), metal.HumanBytes(r.BytesAfter))
		}
	}
	after := stateBytes(m)
	config, err := m.Config.JSON()
	if err != nil {
		return err
	}
	saved := &checkpoints.Checkpoint{
		Model: m.StateDict(), ModelMetadata: ck.ModelMetadata,
		State: ck.State, Recipe: ck.Recipe, Config: config, Tokenizer: ck.Tokenizer,
	}
	if err := saveAs(out, saved); err != nil {
		return err
	}
	fmt.Fprintf(w, "model: %s → %s (%.2f×) in %s\n", metal.HumanBytes(before), metal.HumanBytes(after), float64(before)/float64(after), out)
	return nil
}

// stateBytes is the size of the model's tensors.
func stateBytes(m *models.Model) int64 {
	var n int64
	for _, p := range m.Params() {
		n += int64(p.Value.Len() * p.Value.DType().Size())
	}
	return n
}

// saveAs writes a checkpoint directory at exactly dir (SaveDir names it by step):
// saved into a temporary parent beside dir, then renamed, so dir appears whole.
func saveAs(dir string, c *checkpoints.Checkpoint) error {
	parent := filepath.Dir(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("--out %s: %w", dir, err)
	}
	tmp, err := os.MkdirTemp(parent, ".quantize-")
	if err != nil {
		return fmt.Errorf("--out %s: %w", dir, err)
	}
	defer os.RemoveAll(tmp)
	c.State.Files = nil
	path, err := checkpoints.SaveDir(tmp, c.State.Step, c)
	if err != nil {
		return err
	}
	if err := os.Rename(path, dir); err != nil {
		return fmt.Errorf("--out %s: %w", dir, err)
	}
	return nil
}
