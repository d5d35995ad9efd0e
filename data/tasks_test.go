package data

import (
	"math/big"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var byteTok = NewByteTokenizer()

// splitExample returns an example's prompt (tokens without loss before the
// first trained one), its answer text (trained tokens, EOS dropped) and whether
// the trained part ends with EOS.
func splitExample(t *testing.T, e Example) (prompt, answer string, eos bool) {
	t.Helper()
	// Plain checks in these hot loops: testify's are slow over many thousands.
	i := slices.Index(e.Mask, true)
	if len(e.Tokens) != len(e.Mask) || i <= 0 || slices.Contains(e.Mask[i:], false) {
		t.Fatalf("the loss must cover the answer and nothing else: %v %v", e.Tokens, e.Mask)
	}
	ans := e.Tokens[i:]
	if ans[len(ans)-1] == ByteEOS {
		eos = true
		ans = ans[:len(ans)-1]
	}
	return byteTok.Decode(e.Tokens[:i]), byteTok.Decode(ans), eos
}

func TestAdditionTask(t *testing.T) {
	task, err := NewTask(TaskSpec{Kind: "addition", MaxDigits: 3, HeldOut: 300, Seed: 7})
	require.NoError(t, err)
	assert.Equal(t, 3, task.Spec().MaxDigits)

	key := func(prompt string) (a, b string) {
		a, b, ok := strings.Cut(strings.TrimSuffix(prompt, "="), "+")
		if !ok || !strings.HasSuffix(prompt, "=") {
			t.Fatalf("prompt %q is not a+b=", prompt)
		}
		for _, x := range []string{a, b} {
			if len(x) < 1 || len(x) > 3 || (len(x) > 1 && x[0] == '0') || strings.Trim(x, "0123456789") != "" {
				t.Fatalf("operand %q of %q: want 1 to 3 digits, no leading zero", x, prompt)
			}
		}
		return a, b
	}
	sum := func(a, b string) string {
		x, _ := new(big.Int).SetString(a, 10)
		y, _ := new(big.Int).SetString(b, 10)
		return new(big.Int).Add(x, y).String()
	}

	heldOut := map[string]bool{}
	problems := task.Eval()
	require.Len(t, problems, 300)
	tok := task.Tokenizer()
	for _, p := range problems {
		a, b := key(tok.Decode(p.Prompt))
		heldOut[a+"+"+b], heldOut[b+"+"+a] = true, true
		assert.Equal(t, append(tok.Encode(sum(a, b)), ByteEOS), p.Answer)
	}
	assert.Len(t, task.EvalExamples(), 300)

	train := task.Train(20000)
	lengths := map[[2]int]int{}
	for _, e := range train {
		prompt, answer, eos := splitExample(t, e)
		a, b := key(prompt)
		if !eos || answer != sum(a, b) {
			t.Fatalf("%s: answer %q (EOS %v), want %s then EOS", prompt, answer, eos, sum(a, b))
		}
		if heldOut[a+"+"+b] {
			t.Fatalf("held-out pair %s+%s in training", a, b)
		}
		lengths[[2]int{len(a), len(b)}]++
	}
	assert.Len(t, lengths, 9, "every pair of operand lengths occurs")
	for k, n := range lengths {
		assert.InDelta(t, 20000/9, n, 300, "lengths %v are drawn uniformly", k)
	}

	// Deterministic, and a prefix of a longer draw.
	again, err := NewTask(TaskSpec{Kind: "addition", MaxDigits: 3, HeldOut: 300, Seed: 7})
	require.NoError(t, err)
	assert.Equal(t, problems, again.Eval())
	assert.Equal(t, train[:500], again.Train(500))
	other, err := NewTask(TaskSpec{Kind: "addition", MaxDigits: 3, HeldOut: 300, Seed: 8})
	require.NoError(t, err)
	assert.NotEqual(t, problems, other.Eval())

	// Single-digit sums are mostly kept for training: at most a tenth held out.
	single := 0
	for k := range heldOut {
		if len(k) == 3 {
			single++
		}
	}
	assert.LessOrEqual(t, single/2, 5)
}

func TestSequenceTasks(t *testing.T) {
	reverse := func(s string) string {
		b := []byte(s)
		for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
			b[i], b[j] = b[j], b[i]
		}
		return string(b)
	}
	countingSort := func(s string) string {
		var n [256]int
		for i := 0; i < len(s); i++ {
			n[s[i]]++
		}
		var b strings.Builder
		for c := 0; c < 256; c++ {
			b.WriteString(strings.Repeat(string(rune(c)), n[c]))
		}
		return b.String()
	}
	want := map[string]func(string) string{
		"copy":    func(s string) string { return s },
		"reverse": reverse,
		"sort":    countingSort,
	}
	for kind, f := range want {
		t.Run(kind, func(t *testing.T) {
			task, err := NewTask(TaskSpec{Kind: kind, MinLen: 2, MaxLen: 6, Alphabet: "abcxyz", HeldOut: 100, Seed: 1})
			require.NoError(t, err)
			held := map[string]bool{}
			tok := task.Tokenizer()
			for _, p := range task.Eval() {
				in := strings.TrimSuffix(tok.Decode(p.Prompt), "=")
				held[in] = true
				assert.Equal(t, append(tok.Encode(f(in)), ByteEOS), p.Answer)
			}
			assert.Len(t, held, 100)
			for _, e := range task.Train(3000) {
				prompt, answer, eos := splitExample(t, e)
				in := strings.TrimSuffix(prompt, "=")
				if !eos || len(in) < 2 || len(in) > 6 || strings.Trim(in, "abcxyz") != "" || answer != f(in) {
					t.Fatalf("%q: answer %q (EOS %v), want %q then EOS", prompt, answer, eos, f(in))
				}
				if held[in] {
					t.Fatalf("held-out input %q in training", in)
				}
			}
		})
	}
}

func TestMQARTask(t *testing.T) {
	task, err := NewTask(TaskSpec{Kind: "mqar", Pairs: 6, Queries: 3, HeldOut: 50, Seed: 3})
	require.NoError(t, err)
	tok := task.Tokenizer()
	check := func(text string) (queries []string) {
		kv, q, ok := strings.Cut(text, "|")
		require.True(t, ok)
		require.Len(t, kv, 12)
		values := map[byte]byte{}
		for i := 0; i < len(kv); i += 2 {
			require.NotContains(t, values, kv[i], "keys are distinct")
			require.True(t, kv[i] >= 'a' && kv[i] <= 'z')
			require.True(t, kv[i+1] >= '0' && kv[i+1] <= '9')
			values[kv[i]] = kv[i+1]
		}
		require.Len(t, q, 6)
		for i := 0; i < len(q); i += 2 {
			require.Equal(t, values[q[i]], q[i+1], "query %c answers its value", q[i])
			queries = append(queries, q[:i+1])
		}
		return queries
	}
	for _, e := range task.Train(500) {
		check(tok.Decode(e.Tokens[:len(e.Tokens)-1]))
		require.Equal(t, ByteEOS, e.Tokens[len(e.Tokens)-1])
		// The loss is on the three queried values only; not on the EOS.
		var trained []int
		for i, m := range e.Mask {
			if m {
				trained = append(trained, i)
			}
		}
		assert.Equal(t, []int{14, 16, 18}, trained)
	}
	problems := task.Eval()
	require.Len(t, problems, 150, "one problem per query")
	for i, p := range problems {
		// The prompt is the pairs, "|", the earlier queries with their values,
		// then the key asked for; the answer is its value alone.
		kv, q, ok := strings.Cut(tok.Decode(p.Prompt), "|")
		require.True(t, ok)
		require.Len(t, q, 2*(i%3)+1)
		values := map[byte]byte{}
		for k := 0; k < len(kv); k += 2 {
			values[kv[k]] = kv[k+1]
		}
		for k := 0; k+1 < len(q); k += 2 {
			require.Equal(t, values[q[k]], q[k+1])
		}
		assert.Equal(t, []int32{int32(values[q[len(q)-1]])}, p.Answer)
	}
}

func TestAccuracy(t *testing.T) {
	task, err := NewTask(TaskSpec{Kind: "addition", MaxDigits: 2, HeldOut: 50, Seed: 1})
	require.NoError(t, err)
	tok := task.Tokenizer()
	oracle := func(prompt []int32, maxNew int) []int32 {
		a, b, _ := strings.Cut(strings.TrimSuffix(tok.Decode(prompt), "="), "+")
		x, _ := new(big.Int).SetString(a, 10)
		y, _ := new(big.Int).SetString(b, 10)
		out := append(tok.Encode(new(big.Int).Add(x, y).String()), ByteEOS)
		assert.Equal(t, len(out), maxNew)
		return out
	}
	assert.Equal(t, 1.0, task.Accuracy(oracle))
	noEOS := func(p []int32, n int) []int32 { o := oracle(p, n); return o[:len(o)-1] }
	assert.Equal(t, 0.0, task.Accuracy(noEOS), "the EOS is part of the answer")
	extraDigit := func(p []int32, n int) []int32 { o := oracle(p, n); return append(o[:len(o)-1], '0', ByteEOS) }
	assert.Equal(t, 0.0, task.Accuracy(extraDigit))
	moreAfterEOS := func(p []int32, n int) []int32 { return append(oracle(p, n), '7', '7') }
	assert.Equal(t, 1.0, task.Accuracy(moreAfterEOS), "tokens after the answer are ignored")
	calls := 0
	half := func(p []int32, n int) []int32 {
		calls++
		if calls%2 == 0 {
			return nil
		}
		return oracle(p, n)
	}
	assert.Equal(t, 0.5, task.Accuracy(half))
	assert.Equal(t, 0.0, Accuracy(nil, oracle))
}

func TestNewTaskErrors(t *testing.T) {
	cases := []struct {
		spec TaskSpec
		want string
	}{
		{TaskSpec{Kind: "division"}, `task: unknown kind "division" (want one of addition, copy, reverse, sort, mqar)`},
		{TaskSpec{Kind: "addition", MaxDigits: 19}, "max_digits 19"},
		{TaskSpec{Kind: "addition", MaxDigits: 1, HeldOut: 20}, "held_out 20, want 0 to 5"},
		{TaskSpec{Kind: "addition", HeldOut: -1}, "held_out -1"},
		{TaskSpec{Kind: "copy", MinLen: 5, MaxLen: 2}, "lengths 5 to 2"},
		{TaskSpec{Kind: "sort", Alphabet: "aa"}, `alphabet "aa"`},
		{TaskSpec{Kind: "reverse", Alphabet: "a=b"}, `alphabet "a=b"`},
		{TaskSpec{Kind: "mqar", Alphabet: "ab1", Values: "12"}, "share symbols"},
		{TaskSpec{Kind: "mqar", Pairs: 27}, "pairs 27, want 1 to 26"},
		{TaskSpec{Kind: "mqar", Pairs: 4, Queries: 5}, "queries 5, want 1 to pairs (4)"},
	}
	for _, c := range cases {
		_, err := NewTask(c.spec)
		assert.ErrorContains(t, err, c.want, "%+v", c.spec)
	}
}
