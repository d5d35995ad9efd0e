package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/mlxtrain/mlxtrain/metal"
	"github.com/mlxtrain/mlxtrain/recipes"
)

// loadRecipe reads the recipe named by the first argument, or the embedded
// default, and applies the --set overrides.
func loadRecipe(c *cli.Context) (*recipes.Recipe, string, error) {
	sets := c.StringSlice("set")
	if c.NArg() > 1 {
		return nil, "", fmt.Errorf("one recipe at most, got %d arguments", c.NArg())
	}
	if path := c.Args().First(); path != "" {
		r, err := recipes.Load(path, sets...)
		if err == nil {
			err = r.MatchBase() // a fine-tune's architecture comes from its base
		}
		return r, path, err
	}
	r := recipes.Default()
	if err := r.Apply(sets...); err != nil {
		return nil, "", err
	}
	if err := r.MatchBase(); err != nil {
		return nil, "", err
	}
	return r, "the embedded default recipe", nil
}

var setFlag = &cli.StringSliceFlag{Name: "set", Usage: "override a recipe key, e.g. --set train.iters=100 (repeatable)"}

func fitCommand() *cli.Command {
	return &cli.Command{
		Name:      "fit",
		Usage:     "train the model a recipe describes (the embedded default without one)",
		ArgsUsage: "[RECIPE.toml]",
		Flags: []cli.Flag{
			setFlag,
			&cli.StringFlag{Name: "out", Usage: "run directory (default: train.out)"},
			&cli.StringFlag{Name: "resume", Usage: "continue exactly from a checkpoint directory or a run directory's latest"},
			&cli.BoolFlag{Name: "quiet", Usage: "do not print the effective recipe"},
		},
		Action: func(c *cli.Context) error {
			r, from, err := loadRecipe(c)
			if err != nil {
				return err
			}
			errw := c.App.ErrWriter
			if !c.Bool("quiet") {
				fmt.Fprintf(errw, "# recipe: %s (every effective value)\n%s\n", from, r.Effective())
			}
			stop := make(chan struct{})
			sig := make(chan os.Signal, 2)
			signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
			defer signal.Stop(sig)
			go func() {
				if _, ok := <-sig; ok {
					fmt.Fprintln(errw, "\nstopping: saving a checkpoint at the end of this step (again to abort)")
					close(stop)
					if _, ok := <-sig; ok {
						os.Exit(130)
					}
				}
			}()
			opt := recipes.FitOptions{Out: c.String("out"), Resume: c.String("resume"), Log: errw, Stop: stop}
			bar := newProgress(errw, r.Train.Iters)
			if bar != nil {
				opt.Progress = bar.update
				opt.Log = bar.writer()
			}
			res, err := recipes.Fit(r, opt)
			if bar != nil {
				bar.finish()
			}
			if err != nil {
				return err
			}
			if res.Stopped {
				fmt.Fprintf(errw, "stopped at step %d\n", res.Step)
			}
			fmt.Fprintf(c.App.Writer, "final checkpoint: %s\n", res.Checkpoint)
			return nil
		},
	}
}

// progress is an mpb bar on a terminal: step/total, loss, lr, tokens/s, ETA and
// peak memory. Report lines go above it.
type progress struct {
	p     *mpb.Progress
	bar   *mpb.Bar
	state recipes.Progress
}

func newProgress(w io.Writer, total int) *progress {
	f, ok := w.(*os.File)
	if !ok || !isTerminal(f) {
		return nil
	}
	pr := &progress{p: mpb.New(mpb.WithOutput(w), mpb.WithWidth(32))}
	pr.bar = pr.p.AddBar(int64(total),
		mpb.PrependDecorators(decor.CountersNoUnit("step %d/%d")),
		mpb.AppendDecorators(
			decor.Any(func(decor.Statistics) string {
				s := pr.state
				return fmt.Sprintf("loss %.4f lr %.2g %.0f tok/s peak %s", s.Loss, s.LR, s.TokensPerS, metal.HumanBytes(s.PeakRSS))
			}),
			decor.Name(" ETA "), decor.AverageETA(decor.ET_STYLE_GO),
		),
	)
	return pr
}

func (pr *progress) update(s recipes.Progress) {
	pr.state = s
	pr.bar.SetCurrent(int64(s.Step))
}

// writer prints lines above the bar.
func (pr *progress) writer() io.Writer { return pr.p }

func (pr *progress) finish() {
	if !pr.bar.Completed() {
		pr.bar.Abort(false)
	}
	pr.p.Wait()
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
