package recipes

import (
	"fmt"
	"strconv"

	"github.com/mlxtrain/mlxtrain/generate"
)

// sample continues eval.sample_prompt greedily by eval.sample_tokens tokens
// and logs the text, when eval.sample_tokens is above 0. A sample that cannot
// be drawn (a prompt beyond the model's context) is logged, not fatal.
func (ru *run) sample() {
	e := ru.r.Eval
	if e.SampleTokens <= 0 {
		return
	}
	ids := ru.d.tok.Encode(e.SamplePrompt)
	if len(ids) == 0 {
		ids = []int32{ru.d.tok.Special().EOS}
	}
	eos := ru.d.tok.Special().EOS
	n := e.SampleTokens
	if limit := ru.model.Config.MaxPositionEmbeddings - len(ids); ru.model.Positions != nil && n > limit {
		n = limit
	}
	if n <= 0 {
		fmt.Fprintf(ru.log, "sample at step %d: eval.sample_prompt fills the model's context\n", ru.step)
		return
	}
	out, err := generate.Greedy(ru.model, ids, n, eos)
	if err != nil {
		fmt.Fprintf(ru.log, "sample at step %d: %v\n", ru.step, err)
		return
	}
	if len(out) > 0 && out[len(out)-1] == eos {
		out = out[:len(out)-1]
	}
	fmt.Fprintf(ru.log, "sample at step %d: %s\n", ru.step, strconv.Quote(e.SamplePrompt+ru.d.tok.Decode(out)))
}
