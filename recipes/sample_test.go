package recipes

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEvalSampleIsLogged(t *testing.T) {
	var log bytes.Buffer
	r := tinyRecipe(t, 4, "train.steps_per_eval=2", "eval.sample_prompt=12+34=", "eval.sample_tokens=3")
	_, err := Fit(r, FitOptions{Out: t.TempDir(), Log: &log})
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^sample at step 2: "12\+34=.*"$`, log.String())
	assert.Regexp(t, `(?m)^sample at step 4: "12\+34=.*"$`, log.String())
}
