package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/mlxtrain/mlxtrain/recipes"
)

func fuseCommand() *cli.Command {
	return &cli.Command{
		Name:  "fuse",
		Usage: "merge a LoRA checkpoint's adapters into its base weights and write a full checkpoint",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "checkpoint", Usage: "LoRA checkpoint directory, or a run directory (its latest checkpoint)", Required: true},
			&cli.StringFlag{Name: "out", Usage: "the new checkpoint directory (must not exist)", Required: true},
		},
		Action: func(c *cli.Context) error {
			src, err := recipes.Fuse(c.String("checkpoint"), c.String("out"))
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.ErrWriter, "fused the adapters of %s into its base\n", src)
			fmt.Fprintf(c.App.Writer, "fused checkpoint: %s\n", c.String("out"))
			return nil
		},
	}
}
