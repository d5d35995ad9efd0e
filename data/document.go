package data

import (
	"fmt"
	"sort"
	"strings"
)

// A Segment is a piece of a document's text and whether the model is trained to
// predict it (Loss).
type Segment struct {
	Text string
	Loss bool
}

// A Document is one record of a data source before tokenizing: plain text is one
// segment with loss; a completion is the prompt without loss then the completion
// with loss; a chat is the template's pieces, with loss on the assistant turns.
type Document struct {
	Segments []Segment
}

// TextDocument is a document trained on all of its text.
func TextDocument(text string) Document {
	return Document{Segments: []Segment{{Text: text, Loss: true}}}
}

// CompletionDocument is a prompt (no loss) followed by its completion (loss).
func CompletionDocument(prompt, completion string) Document {
	return Document{Segments: []Segment{{Text: prompt}, {Text: completion, Loss: true}}}
}

// String is the document's whole text.
func (d Document) String() string {
	var b strings.Builder
	for _, s := range d.Segments {
		b.WriteString(s.Text)
	}
	return b.String()
}

// An Example is a tokenized document: token ids and, for each token, whether it
// is a training target (Mask[i] says whether predicting Tokens[i] from the tokens
// before it counts in the loss).
type Example struct {
	Tokens []int32
	Mask   []bool
}

// Tokenize encodes each segment on its own (so a mask boundary is a token
// boundary) and appends EOS, which takes the Loss of the last segment: a model
// trained on completions learns to stop after one. A tokenizer without EOS gets
// nothing appended.
func Tokenize(tok Tokenizer, d Document) Example {
	var ex Example
	loss := false
	for _, s := range d.Segments {
		ids := tok.Encode(s.Text)
		ex.Tokens = append(ex.Tokens, ids...)
		for range ids {
			ex.Mask = append(ex.Mask, s.Loss)
		}
		loss = s.Loss
	}
	if eos := tok.Special().EOS; eos >= 0 {
		ex.Tokens = append(ex.Tokens, eos)
		ex.Mask = append(ex.Mask, loss)
	}
	return ex
}

// A Message is one turn of a chat.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// ChatTemplate renders chat messages as text. Each message becomes
//
//	Header[role] + content + EndOfTurn
//
// and the loss covers the content and EndOfTurn of the roles in Trained (the
// header is never trained: it is what the caller writes to ask for a reply).
type ChatTemplate struct {
	Header    map[string]string
	EndOfTurn string
	Trained   map[string]bool
}

// DefaultChatTemplate is ChatML, in plain text:
//
//	<|im_start|>system\nYou are terse.<|im_end|>\n
//	<|im_start|>user\nHi<|im_end|>\n
//	<|im_start|>assistant\nHello.<|im_end|>\n
//
// Roles are system, user and assistant; only assistant turns are trained (their
// content and the "<|im_end|>\n" after it). To prompt for a reply, write the turns
// so far and then "<|im_start|>assistant\n".
func DefaultChatTemplate() ChatTemplate {
	h := func(role string) string { return "<|im_start|>" + role + "\n" }
	return ChatTemplate{
		Header:    map[string]string{"system": h("system"), "user": h("user"), "assistant": h("assistant")},
		EndOfTurn: "<|im_end|>\n",
		Trained:   map[string]bool{"assistant": true},
	}
}

// Render turns messages into a document. An unknown role is an error naming it.
func (c ChatTemplate) Render(msgs []Message) (Document, error) {
	var d Document
	trained := false
	for i, m := range msgs {
		h, ok := c.Header[m.Role]
		if !ok {
			return Document{}, &FieldError{Field: fmt.Sprintf("messages[%d].role", i), Msg: fmt.Sprintf("unknown role %q (want one of %s)", m.Role, roleList(c.Header))}
		}
		loss := c.Trained[m.Role]
		trained = trained || loss
		d.Segments = append(d.Segments, Segment{Text: h}, Segment{Text: m.Content + c.EndOfTurn, Loss: loss})
	}
	if len(msgs) == 0 {
		return Document{}, &FieldError{Field: "messages", Msg: "empty"}
	}
	if !trained {
		return Document{}, &FieldError{Field: "messages", Msg: "no turn to train on (no assistant message)"}
	}
	return d, nil
}

func roleList(h map[string]string) string {
	var names []string
	for _, r := range []string{"system", "user", "assistant"} {
		if _, ok := h[r]; ok {
			names = append(names, r)
		}
	}
	var others []string
	for r := range h {
		if r != "system" && r != "user" && r != "assistant" {
			others = append(others, r)
		}
	}
	sort.Strings(others)
	names = append(names, others...)
	return strings.Join(names, ", ")
}
