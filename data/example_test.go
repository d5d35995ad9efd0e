package data_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mlxtrain/mlxtrain/data"
)

func ExampleTrainBPE() {
	texts := []string{
		"the cat sat on the mat",
		"the dog sat on the log",
		"the cat and the dog",
	}
	tok, err := data.TrainBPE(texts, 270, data.BPEOptions{})
	if err != nil {
		panic(err)
	}
	ids := tok.Encode("the cat sat")
	var pieces []string
	for _, id := range ids {
		pieces = append(pieces, fmt.Sprintf("%q", tok.Token(id)))
	}
	fmt.Println(tok.VocabSize(), tok.NumMerges())
	fmt.Println(ids)
	fmt.Println(strings.Join(pieces, " "))
	fmt.Println(tok.Decode(ids))
	// Output:
	// 270 11
	// [260 268 267 261]
	// "the" " cat" " s" "at"
	// the cat sat
}

func ExampleNewByteTokenizer() {
	tok := data.NewByteTokenizer()
	fmt.Println(tok.VocabSize(), tok.Special())
	fmt.Println(tok.Encode("12+3="))
	// Output:
	// 259 {256 257 258}
	// [49 50 43 51 61]
}

func ExampleLoadTokenizer() {
	// A tokenizer.json saved by SaveTokenizer, or by Hugging Face tokenizers.
	tok, err := data.LoadTokenizer(filepath.Join("testdata", "tokenizer_gpt2.json"))
	if err != nil {
		panic(err)
	}
	ids := tok.Encode("The end of the text.")
	fmt.Println(ids, tok.Decode(ids))
	// Output:
	// [306 320 281 266 388 46] The end of the text.
}

func ExampleSaveTokenizer() {
	tok, _ := data.TrainBPE([]string{"low lower lowest"}, 262, data.BPEOptions{MinFrequency: 1})
	path := filepath.Join(os.TempDir(), "example-tokenizer.json")
	defer os.Remove(path)
	if err := data.SaveTokenizer(path, tok); err != nil {
		panic(err)
	}
	var file struct {
		Model struct {
			Type   string
			Merges []string
		}
	}
	b, _ := os.ReadFile(path)
	_ = json.Unmarshal(b, &file)
	fmt.Println(file.Model.Type, file.Model.Merges)
	// Output:
	// BPE [l o lo w Ġ low]
}

func ExampleTokenize() {
	tok := data.NewByteTokenizer()
	ex := data.Tokenize(tok, data.CompletionDocument("Q:", "A"))
	fmt.Println(ex.Tokens)
	fmt.Println(ex.Mask)
	// Output:
	// [81 58 65 257]
	// [false false true true]
}

func ExampleChatTemplate_Render() {
	doc, err := data.DefaultChatTemplate().Render([]data.Message{
		{Role: "user", Content: "Hi"},
		{Role: "assistant", Content: "Hello."},
	})
	if err != nil {
		panic(err)
	}
	for _, s := range doc.Segments {
		fmt.Printf("loss=%-5v %q\n", s.Loss, s.Text)
	}
	// Output:
	// loss=false "<|im_start|>user\n"
	// loss=false "Hi<|im_end|>\n"
	// loss=false "<|im_start|>assistant\n"
	// loss=true  "Hello.<|im_end|>\n"
}

func ExampleSource_Load() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "train.jsonl")
	_ = os.WriteFile(path, []byte(`{"prompt": "1+1=", "completion": "2"}
{"prompt": "2+2=", "completion": null}
{"prompt": "3+4=", "completion": "7"}
`), 0o644)

	src := data.Source{Paths: []string{filepath.Join(dir, "*.jsonl")}}
	examples, stats, err := src.Load(data.NewByteTokenizer())
	if err != nil {
		panic(err)
	}
	fmt.Printf("%d documents, %d skipped for nulls\n", stats.Documents, stats.Nulls)
	fmt.Println(examples[1].Tokens, examples[1].Mask)

	// A bad record names the file, the line and the field.
	_ = os.WriteFile(path, []byte(`{"prompt": "1+1="}`), 0o644)
	_, _, err = src.Load(data.NewByteTokenizer())
	fmt.Println(strings.TrimPrefix(err.Error(), dir+string(filepath.Separator)))
	// Output:
	// 2 documents, 1 skipped for nulls
	// [51 43 52 61 55 257] [false false false false true true]
	// train.jsonl:1: field "completion": missing
}

func ExampleSplitSeeded() {
	items := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	train, valid, test, err := data.SplitSeeded(items, 0.2, 0.1, 1)
	if err != nil {
		panic(err)
	}
	fmt.Println(len(train), valid, test)
	// Output:
	// 7 [i f] [e]
}

func ExamplePack() {
	examples := []data.Example{
		{Tokens: []int32{1, 2, 3}, Mask: []bool{true, true, true}},
		{Tokens: []int32{4, 5}, Mask: []bool{false, true}},
	}
	seqs, _ := data.Pack(examples, data.Packing{SeqLen: 4, EOS: 0, PAD: 9})
	for _, s := range seqs {
		fmt.Println(s.Tokens, s.Mask)
	}
	// Output:
	// [1 2 3 0 4] [false true true true false]
	// [4 5 0 9 9] [false true true false false]
}

func ExampleNewBatcher() {
	task, _ := data.NewTask(data.TaskSpec{Kind: "copy", MaxLen: 4, HeldOut: 10, Seed: 1})
	tok := task.Tokenizer()
	cfg := data.BatchConfig{
		Packing:   data.Packing{SeqLen: 12, EOS: tok.Special().EOS, PAD: tok.Special().PAD},
		BatchSize: 2,
		Seed:      42,
	}
	b, _ := data.NewBatcher(task.Train(100), cfg)
	b.Next()
	saved, _ := json.Marshal(b.Position()) // goes into trainer_state.json

	// A resumed run restores the position and gets the same next batch.
	var pos data.Position
	_ = json.Unmarshal(saved, &pos)
	resumed, _ := data.NewBatcher(task.Train(100), cfg)
	_ = resumed.SetPosition(pos)
	x, y := b.Next(), resumed.Next()
	fmt.Println(pos.Epoch, pos.Index, fmt.Sprint(x) == fmt.Sprint(y))
	fmt.Printf("%q\n", tok.Decode(x.Inputs[:12]))
	fmt.Println(x.Mask[:12])
	// Output:
	// 0 2 true
	// "1=591<|eos|>9=9<|eos|>91"
	// [0 1 1 1 1 0 0 1 1 0 0 0]
}

func ExampleNewTask() {
	task, err := data.NewTask(data.TaskSpec{Kind: "addition", MaxDigits: 3, HeldOut: 200, Seed: 1})
	if err != nil {
		panic(err)
	}
	tok := task.Tokenizer()
	ex := task.Train(1)[0]
	var marked strings.Builder
	for i, id := range ex.Tokens {
		s := tok.Decode([]int32{id})
		if ex.Mask[i] {
			s = "[" + s + "]" // trained on
		}
		marked.WriteString(s)
	}
	fmt.Println(marked.String())

	problems := task.Eval()
	fmt.Printf("%d held-out problems; first: %q -> %q\n", len(problems), tok.Decode(problems[0].Prompt), tok.Decode(problems[0].Answer))

	// A model is scored on the whole greedy answer, EOS included.
	alwaysSeven := func(prompt []int32, maxNew int) []int32 { return []int32{'7', tok.Special().EOS} }
	fmt.Println(task.Accuracy(alwaysSeven))
	// Output:
	// 384+5=[3][8][9][<|eos|>]
	// 200 held-out problems; first: "6+395=" -> "401<|eos|>"
	// 0
}
