package generate_test

import (
	"fmt"
	"os"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/data"
	"github.com/mlxtrain/mlxtrain/generate"
	"github.com/mlxtrain/mlxtrain/models"
)

// Sample ten tokens from a model with temperature, nucleus and repetition
// penalty; the same seed gives the same tokens.
func ExampleGenerate() {
	m, _ := models.New(models.LlamaConfig(50, 32, 2, 4, 2, 64, 256), autodiff.NewRNG(1))
	o := generate.Options{
		MaxTokens: 10,
		Sampler:   generate.SamplerOptions{Temp: 0.8, TopP: 0.9, RepetitionPenalty: 1.1, Seed: 42},
	}
	run := func() []int32 {
		var out []int32
		st, err := generate.Generate(m, []int32{1, 2, 3}, o, func(tok int32) bool {
			out = append(out, tok)
			return true
		})
		if err != nil {
			panic(err)
		}
		fmt.Println(st.PromptTokens, "prompt tokens,", st.Tokens, "generated")
		return out
	}
	a, b := run(), run()
	fmt.Println(fmt.Sprint(a) == fmt.Sprint(b))
	// Output:
	// 3 prompt tokens, 10 generated
	// 3 prompt tokens, 10 generated
	// true
}

// Decode prompts of different lengths together; each sequence gets what it
// would get alone.
func ExampleGenerateBatch() {
	m, _ := models.New(models.GPT2Config(30, 32, 2, 2, 64), autodiff.NewRNG(2))
	prompts := [][]int32{{1, 2, 3, 4, 5}, {6}, {7, 8}}
	batched := make([][]int32, len(prompts))
	_, err := generate.GenerateBatch(m, prompts, generate.Options{MaxTokens: 4}, func(i int, tok int32) bool {
		batched[i] = append(batched[i], tok)
		return true
	})
	fmt.Println(err)
	for i, p := range prompts {
		alone, _ := generate.Greedy(m, p, 4, -1)
		fmt.Println(fmt.Sprint(alone) == fmt.Sprint(batched[i]))
	}
	// Output:
	// <nil>
	// true
	// true
	// true
}

// Speculative decoding with a draft model: greedy output is the target's own.
func ExampleSpeculative() {
	target, _ := models.New(models.LlamaConfig(40, 64, 2, 4, 2, 128, 256), autodiff.NewRNG(3))
	draft, _ := models.New(models.LlamaConfig(40, 16, 1, 2, 1, 32, 256), autodiff.NewRNG(4))
	var got []int32
	st, err := generate.Speculative(target, draft, []int32{5, 6, 7}, generate.Options{MaxTokens: 12}, 3, func(tok int32) bool {
		got = append(got, tok)
		return true
	})
	want, _ := generate.Greedy(target, []int32{5, 6, 7}, 12, -1)
	fmt.Println(err, fmt.Sprint(got) == fmt.Sprint(want), st.Tokens, st.Accepted <= st.Drafted)
	// Output: <nil> true 12 true
}

// The distribution a sampler draws from: temperature, then top-k.
func ExampleSampler_Probs() {
	s := generate.NewSampler(generate.SamplerOptions{Temp: 1, TopK: 2})
	p := s.Probs([]float64{0, 1, 2, 0}, nil)
	fmt.Printf("%.3f\n", p)
	// Output: [0.000 0.269 0.731 0.000]
}

// Stream text as tokens arrive, stopping at a stop string.
func ExampleTextStream() {
	tok := data.NewByteTokenizer()
	s := &generate.TextStream{W: os.Stdout, Decode: tok.Decode, Stops: []string{"\n\n"}}
	for _, id := range tok.Encode("héllo\n\nworld") {
		if !s.Add(id) {
			break
		}
	}
	_ = s.Close()
	fmt.Println("|", s.Stopped())
	// Output: héllo| true
}
