// Command mlxtrain trains and runs small and medium language models: fit a recipe,
// generate from a checkpoint, quantize it, and inspect the devices and kernels.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Writer:    stdout,
		ErrWriter: stderr,
		Name:      "mlxtrain",
		Usage:     "train and run small language models from Go",
		Version:   version,
		Commands: []*cli.Command{
			fitCommand(),
			generateCommand(),
			evalCommand(),
			quantizeCommand(),
			benchCommand(),
			fuseCommand(),
			dataCommand(),
			versionCommand(),
			devicesCommand(),
		},
		HideVersion: false,
		// --set takes lists ("lora.keys=q_proj,v_proj"): a comma must not split
		// one --set into two.
		DisableSliceFlagSeparator: true,
	}
}

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run executes the CLI and turns every failure, panics from ops included, into one
// line on stderr and a non-zero status.
func run(args []string, stdout, stderr io.Writer) (code int) {
	defer func() {
		if r := recover(); r != nil {
			var nan *autodiff.NaNError
			if err, ok := r.(error); ok && errors.As(err, &nan) {
				fmt.Fprintln(stderr, "mlxtrain: stopped:", nan)
			} else {
				fmt.Fprintln(stderr, "mlxtrain: internal error:", r)
			}
			code = 2
		}
		if metal.Profiling() {
			metal.WriteProfile(stderr)
		}
	}()
	if err := metal.ConfigError(); err != nil {
		fmt.Fprintln(stderr, "mlxtrain:", err)
		return 1
	}
	app := newApp(stdout, stderr)
	if err := app.Run(interspersed(app.Commands, args)); err != nil {
		fmt.Fprintln(stderr, "mlxtrain:", err)
		return 1
	}
	return 0
}
