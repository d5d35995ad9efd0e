package recipes

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mlxtrain/mlxtrain/data"
)

// InspectOptions configure InspectData.
type InspectOptions struct {
	// Examples is how many training rows to show (at least 1).
	Examples int
	// IDs also lists each row's token ids.
	IDs bool
}

// Context-only text (tokens that are not training targets: prompts, user
// turns, padding) is written between these marks.
const (
	maskOpen  = "⟦"
	maskClose = "⟧"
)

// InspectData writes the first opt.Examples rows that training on r would
// read, in the order the fit loop reads them (packed, shuffled with the
// recipe's seed): each as decoded text with the tokens that are not trained on
// (masked out of the loss) between ⟦ and ⟧, and its token counts.
func InspectData(r *Recipe, w io.Writer, opt InspectOptions) error {
	if opt.Examples < 1 {
		return fmt.Errorf("inspect: %d examples: want at least 1", opt.Examples)
	}
	if err := r.Validate(); err != nil {
		return err
	}
	d, err := r.loadData()
	if err != nil {
		return err
	}
	cfg := r.BatchConfig(d.tok)
	b, err := data.NewBatcher(d.train, cfg)
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	pad := int32(-1) // a packed row has no padding
	if cfg.PadEach {
		pad = cfg.PAD
	}
	tokName := r.Data.Tokenizer
	switch {
	case r.Data.Task.Kind != "":
		tokName = "the " + r.Data.Task.Kind + " task's"
	case r.Model.From != "":
		tokName = "model.from's"
	}
	layout := "packed (examples joined by EOS)"
	if cfg.PadEach {
		layout = "one example per row, padded"
	}
	fmt.Fprintf(w, "data: %d training examples, %d validation; %s tokenizer, %d ids; rows of %d next-token predictions, %s; %d rows per epoch\n",
		len(d.train), len(d.valid), tokName, d.tok.VocabSize(), cfg.SeqLen, layout, b.RowsPerEpoch())
	padNote := ""
	if pad >= 0 {
		padNote = fmt.Sprintf("; %s×N is N padding tokens", displayText(d.tok.Decode([]int32{pad})))
	}
	fmt.Fprintf(w, "legend: text in %s…%s is context only (no loss on those tokens: prompts, user turns, padding; a row's first token is never a target); the rest is trained on%s\n",
		maskOpen, maskClose, padNote)
	shown := 0
	for shown < opt.Examples {
		batch := b.Next()
		for row := 0; row < batch.Size && shown < opt.Examples; row++ {
			lo, hi := row*batch.SeqLen, (row+1)*batch.SeqLen
			writeRow(w, d.tok, pad, shown+1, batch.Inputs[lo:hi], batch.Targets[lo:hi], batch.Mask[lo:hi], opt.IDs)
			shown++
		}
	}
	return nil
}

// writeRow writes one row: its tokens are inputs[0] and then the targets, and
// target j counts in the loss where mask[j] is set. Padding is the untrained
// run of pad ids that ends the row (pad < 0: none).
func writeRow(w io.Writer, tok data.Tokenizer, pad int32, n int, inputs, targets []int32, mask []float32, ids bool) {
	tokens := append([]int32{inputs[0]}, targets...)
	trained := make([]bool, len(tokens))
	for j, m := range mask {
		trained[j+1] = m != 0
	}
	padFrom := len(tokens)
	for padFrom > 1 && tokens[padFrom-1] == pad && !trained[padFrom-1] {
		padFrom--
	}
	nTrained := 0
	for _, t := range trained {
		if t {
			nTrained++
		}
	}
	fmt.Fprintf(w, "\n--- row %d: %d targets: %d trained, %d context, %d padding\n",
		n, len(targets), nTrained, padFrom-1-nTrained, len(tokens)-padFrom)
	var b strings.Builder
	for i := 0; i < padFrom; {
		j := i
		for j < padFrom && trained[j] == trained[i] {
			j++
		}
		text := displayText(tok.Decode(tokens[i:j]))
		if j == padFrom && padFrom < len(tokens) {
			// the padding joins the last context span, or makes its own
			padding := fmt.Sprintf("%s×%d", displayText(tok.Decode([]int32{pad})), len(tokens)-padFrom)
			if trained[i] {
				text += maskOpen + padding
			} else {
				text = maskOpen + text + padding
			}
			b.WriteString(text + maskClose)
		} else if trained[i] {
			b.WriteString(text)
		} else {
			b.WriteString(maskOpen + text + maskClose)
		}
		i = j
	}
	fmt.Fprintln(w, b.String())
	if ids {
		parts := make([]string, len(tokens))
		for i, id := range tokens {
			s := strconv.Itoa(int(id))
			if !trained[i] {
				s = "[" + s + "]"
			}
			parts[i] = s
		}
		fmt.Fprintf(w, "ids ([context]): %s\n", strings.Join(parts, " "))
	}
}

// displayText keeps a row on one line: newlines, tabs and other control
// characters are written as Go escapes, invalid UTF-8 as \xNN.
func displayText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
		i += size
	}
	return b.String()
}
