package main

import (
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestInterspersedFlags(t *testing.T) {
	cmds := newApp(io.Discard, io.Discard).Commands
	cases := []struct{ in, want []string }{
		{[]string{"m"}, []string{"m"}},
		{[]string{"m", "fit"}, []string{"m", "fit"}},
		{[]string{"m", "fit", "r.toml", "--set", "a=1", "--quiet", "--out", "o"},
			[]string{"m", "fit", "--set", "a=1", "--quiet", "--out", "o", "--", "r.toml"}},
		{[]string{"m", "fit", "--set=a=1", "r.toml", "--resume=d"},
			[]string{"m", "fit", "--set=a=1", "--resume=d", "--", "r.toml"}},
		{[]string{"m", "fit", "--quiet", "r.toml"}, []string{"m", "fit", "--quiet", "--", "r.toml"}},
		{[]string{"m", "generate", "--prompt", "-", "--checkpoint", "c"},
			[]string{"m", "generate", "--prompt", "-", "--checkpoint", "c"}},
		{[]string{"m", "fit", "r.toml", "--", "--odd"}, []string{"m", "fit", "--", "r.toml", "--odd"}},
		{[]string{"m", "nosuch", "x", "--y"}, []string{"m", "nosuch", "x", "--y"}},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, interspersed(cmds, c.in), "%v", c.in)
	}
}

func TestFlagsAfterRecipe(t *testing.T) {
	// The recipe's key error must be reported for the --set given after the path.
	code, _, stderr := runCLI("fit", "../../recipes/examples/mamba.toml", "--quiet", "--set", "train.batch_size=0")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "train.batch_size")
}

func TestSetValueWithComma(t *testing.T) {
	// A TOML array in --set is one value (urfave/cli splits slice flags at commas
	// unless told not to); a wrong element type names the key.
	code, _, stderr := runCLI("fit", "--quiet", "--set", "optimizer.betas=[0.9,\"x\"]")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "optimizer.betas")
	assert.NotContains(t, stderr, "want key=value")
}
