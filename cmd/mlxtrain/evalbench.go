package main

import (
	"fmt"
	"math"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mlxtrain/mlxtrain/checkpoints"
	"github.com/mlxtrain/mlxtrain/metal"
	"github.com/mlxtrain/mlxtrain/recipes"
)

func evalCommand() *cli.Command {
	return &cli.Command{
		Name:  "eval",
		Usage: "score a checkpoint on its recipe's validation data and task (override with --set, e.g. --set data.valid=FILE)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "checkpoint", Usage: "checkpoint directory, or a run directory (its latest checkpoint)", Required: true},
			setFlag,
		},
		Action: func(c *cli.Context) error {
			lm, err := loadModel(c.String("checkpoint"))
			if err != nil {
				return err
			}
			recipePath := filepath.Join(lm.dir, checkpoints.RecipeFile)
			r, err := recipes.Load(recipePath, c.StringSlice("set")...)
			if err != nil {
				return err
			}
			res, err := recipes.Evaluate(r, lm.model, nil)
			if err != nil {
				return err
			}
			w := c.App.Writer
			fmt.Fprintf(w, "checkpoint: %s\n", lm.dir)
			if !math.IsNaN(res.ValLoss) {
				fmt.Fprintf(w, "val loss: %.4f  perplexity: %.3f\n", res.ValLoss, res.Perplexity)
			}
			if !math.IsNaN(res.Accuracy) {
				fmt.Fprintf(w, "accuracy: %.1f%% exact match on %d held-out problems\n", 100*res.Accuracy, res.Problems)
			}
			return nil
		},
	}
}

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:      "bench",
		Usage:     "time the training step of a recipe (the default without one): steps/s, tokens/s, peak memory; writes nothing",
		ArgsUsage: "[RECIPE.toml]",
		Flags: []cli.Flag{
			setFlag,
			&cli.IntFlag{Name: "steps", Value: 20, Usage: "timed steps (after 3 warm-up steps)"},
		},
		Action: func(c *cli.Context) error {
			r, from, err := loadRecipe(c)
			if err != nil {
				return err
			}
			steps := c.Int("steps")
			if steps < 1 {
				return fmt.Errorf("--steps %d: want at least 1", steps)
			}
			const warm = 3
			if err := r.Apply(fmt.Sprintf("train.iters=%d", steps+warm), "train.steps_per_eval=0", "lr_schedule.warmup=0",
				fmt.Sprintf("train.steps_per_report=%d", steps+warm)); err != nil {
				return err
			}
			var t0 time.Time
			opt := recipes.FitOptions{NoSave: true, Progress: func(p recipes.Progress) {
				if p.Step == warm {
					t0 = time.Now()
				}
			}}
			metal.StoragePool().ResetPeak()
			res, err := recipes.Fit(r, opt)
			if err != nil {
				return err
			}
			el := time.Since(t0).Seconds()
			tokensPerStep := float64(r.Train.BatchSize * r.Train.MaxSeqLength * max(r.Train.GradAccumulationSteps, 1))
			fmt.Fprintf(c.App.Writer, "recipe: %s; %d parameters; %d threads\n", from, res.Params, metal.Threads())
			fmt.Fprintf(c.App.Writer, "%.2f steps/s, %.0f tokens/s, %.1f ms/step over %d steps; peak RSS %s, pool peak %s\n",
				float64(steps)/el, tokensPerStep*float64(steps)/el, 1000*el/float64(steps), steps,
				metal.HumanBytes(recipes.PeakRSS()), metal.HumanBytes(metal.StoragePool().Peak()))
			return nil
		},
	}
}
