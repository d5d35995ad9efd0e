package main

import (
	"github.com/urfave/cli/v2"

	"github.com/mlxtrain/mlxtrain/recipes"
)

func dataCommand() *cli.Command {
	return &cli.Command{
		Name:  "data",
		Usage: "look at the data a recipe trains on",
		Subcommands: []*cli.Command{{
			Name:      "inspect",
			Usage:     "print the first packed training rows as text, with the loss-masked tokens marked ⟦…⟧",
			ArgsUsage: "[RECIPE.toml]",
			Flags: []cli.Flag{
				setFlag,
				&cli.IntFlag{Name: "n", Aliases: []string{"examples"}, Value: 3, Usage: "how many rows to show"},
				&cli.BoolFlag{Name: "ids", Usage: "also list each row's token ids"},
			},
			Action: func(c *cli.Context) error {
				r, _, err := loadRecipe(c)
				if err != nil {
					return err
				}
				return recipes.InspectData(r, c.App.Writer, recipes.InspectOptions{Examples: c.Int("n"), IDs: c.Bool("ids")})
			},
		}},
	}
}
