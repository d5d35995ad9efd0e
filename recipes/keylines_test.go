package recipes

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// key joins pieces as keyLines does.
func key(pieces ...string) string { return strings.Join(pieces, pathSep) }

func TestKeyLines(t *testing.T) {
	cases := []struct {
		name string
		toml string
		want map[string]int // lines of these keys (others may be present)
		none []string       // keys that must not be found
	}{
		{"table and key", "[a]\nb = 1\n", map[string]int{key("a"): 1, key("a", "b"): 2}, nil},
		{"dotted key makes its tables", "\n\na.b.c = 1\n", map[string]int{key("a"): 3, key("a", "b"): 3, key("a", "b", "c"): 3}, nil},
		{"dotted table header", "[a.b]\nc = 1\n[a]\nd = 2\n", map[string]int{key("a"): 1, key("a", "b"): 1, key("a", "b", "c"): 2, key("a", "d"): 4}, nil},
		{"spaces and quotes in a header", "[ a . \"b c\" ]\nd = 1\n", map[string]int{key("a", "b c"): 1, key("a", "b c", "d"): 2}, nil},
		{"quoted keys", "\"a b\" = 1\n'lit.x' = 2\n\"esc\\u0041\\t\" = 3\n\"\" = 4\n",
			map[string]int{key("a b"): 1, key("lit.x"): 2, key("escA\t"): 3, key(""): 4}, nil},
		{"comments", "# [fake]\n# g = 1\nb = 1 # c = 2\n", map[string]int{key("b"): 3}, []string{key("fake"), key("g"), key("c")}},
		{"multi-line basic string", "a = \"\"\"\nx = 1\n\\\"\"\"\n[t]\n\"\"\"\nb = 2\n",
			map[string]int{key("a"): 1, key("b"): 6}, []string{key("x"), key("t")}},
		{"multi-line literal string", "a = '''\n[t]\ny = 1\n'''\nb = 2\n",
			map[string]int{key("b"): 5}, []string{key("t"), key("y")}},
		{"quotes before the closing quotes", "a = \"\"\"x\"\"\"\"\"\nb = 1\nc = '''y'''''\nd = 2\n",
			map[string]int{key("b"): 2, key("d"): 4}, nil},
		{"strings with delimiters", "a = \"x = [ # ] }\"\nb = 'q = \"'\nc = 1\n",
			map[string]int{key("a"): 1, key("b"): 2, key("c"): 3}, []string{key("x"), key("q")}},
		{"array over lines", "a = [\n  \"]\", # z = 1\n  \"#\",\n  [1, 2],\n]\nb = 1\n",
			map[string]int{key("a"): 1, key("b"): 6}, []string{key("z")}},
		{"inline tables", "t = { x = 1, y = { z = \"}\" }, \"w v\" = 2 }\nu = 1\n",
			map[string]int{key("t", "x"): 1, key("t", "y", "z"): 1, key("t", "w v"): 1, key("u"): 2}, nil},
		{"inline table over lines", "[s]\nt = { x = 1,\n  y = 2 }\n", map[string]int{key("s", "t", "y"): 3}, nil},
		{"inline tables in arrays are skipped", "a = [{ x = 1 }]\nb = 2\n", map[string]int{key("b"): 2}, []string{key("a", "x"), key("x")}},
		{"array of tables", "[[p]]\nx = 1\n[[p]]\nx = 2\n[q]\ny = 3\n",
			map[string]int{key("p"): 1, key("p", "x"): 2, key("q", "y"): 6}, nil},
		{"CRLF", "[a]\r\nb = 1\r\n\r\nc = 2\r\n", map[string]int{key("a", "b"): 2, key("a", "c"): 4}, nil},
		{"datetime with a space", "d = 1979-05-27 07:32:00\ne = 1\n", map[string]int{key("e"): 2}, nil},
		{"no final newline", "[a]\nb = 1", map[string]int{key("a", "b"): 2}, nil},
		{"first definition wins", "[a]\nb = 1\n[a.c]\nd = 1\n", map[string]int{key("a"): 1}, nil},
		{"tolerates nonsense", "= = =\n[\n\"unterminated\n{ a = \n'''\n", nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := keyLines(c.toml)
			for k, line := range c.want {
				assert.Equal(t, line, got[k], "%q", k)
			}
			for _, k := range c.none {
				assert.NotContains(t, got, k)
			}
		})
	}
}

// TestKeyLinesAgreeWithTOML checks, on every recipe in the repository, that
// each key the TOML library reports is found, on a line that holds its name.
func TestKeyLinesAgreeWithTOML(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("examples", "*.toml"))
	require.NoError(t, err)
	files = append(files, "default.toml")
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		var m map[string]any
		md, err := toml.Decode(string(b), &m)
		require.NoError(t, err)
		lines := strings.Split(string(b), "\n")
		got := keyLines(string(b))
		for _, k := range md.Keys() {
			line, ok := got[strings.Join(k, pathSep)]
			require.True(t, ok, "%s: %s", f, k)
			require.Greater(t, line, 0)
			assert.Contains(t, lines[line-1], k[len(k)-1], "%s: %s", f, k)
		}
	}
}

// parseSeeds are the fuzzer's seed corpus: the recipes in the repository and
// snippets that reach each kind of error.
func parseSeeds(t testing.TB) [][]byte {
	files, err := filepath.Glob(filepath.Join("examples", "*.toml"))
	require.NoError(t, err)
	files = append(files, "default.toml")
	var seeds [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		seeds = append(seeds, b)
	}
	for _, s := range []string{
		"",
		task,
		task + "[train]\niter = 5\n",
		task + "[train]\niters = \"5\"\n",
		task + "[model]\nheads = 3\n",
		"model = { d_model = 64, hedas = 4 }\n" + task,
		"[data]\ntrain = [\"a.txt\", 5]\n",
		"[train\n",
		"a = \"\"\"\nb = 1\n\"\"\"\n" + task,
		"[[model]]\nx = 1\n",
		"[model.moe]\ntop_k = 1e400\n",
		"[train]\nseed = 9223372036854775807\niters = -9223372036854775808\n",
		"[optimizer]\nbetas = [nan, inf]\n",
		"[eval]\nsample_prompt = \"\\u0000\\uFFFF\"\n" + task,
		"\"\\u0000\" = 1\n",
		"[data.task]\nkind = \"mqar\"\npairs = 26\nqueries = 26\nheld_out = 1\n",
		"[data.task]\nkind = \"copy\"\nmax_len = 1024\nheld_out = 3\n",
		"[data.task]\nkind = \"addition\"\nmax_digits = 18\nheld_out = 65536\n",
	} {
		seeds = append(seeds, []byte(s))
	}
	return seeds
}

// FuzzParse feeds Parse arbitrary text. It must never panic; what it accepts
// must write out and read back to the same recipe; every error it reports
// must be an *Error within the text's lines.
func FuzzParse(f *testing.F) {
	for _, s := range parseSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = keyLines(string(b)) // tolerant of anything, valid TOML or not
		r, err := Parse("fuzz.toml", b)
		if err != nil {
			var es Errors
			require.True(t, errors.As(err, &es), "%T %v", err, err)
			require.NotEmpty(t, es)
			for _, e := range es {
				assert.Equal(t, "fuzz.toml", e.Source)
				assert.True(t, e.Line >= 0 && e.Line <= strings.Count(string(b), "\n")+1, "line %d: %v", e.Line, e)
				assert.NotEmpty(t, e.Msg)
			}
			return
		}
		text := r.Effective()
		back, err := Parse("fuzz.toml", []byte(text))
		require.NoError(t, err, text)
		assert.Equal(t, value(r), value(back))
		assert.Equal(t, text, back.Effective())
	})
}

// FuzzSet feeds Set arbitrary values for every key (and arbitrary keys). It
// must never panic, and a value it accepts must write out and read back.
func FuzzSet(f *testing.F) {
	for i, v := range []string{"1", "-1", "1e3", "0.5", "true", "x", `"q\"uote"`, "[1, 2]", `["a", "b"]`,
		"a,b", "", "nan", "'lit'", "[", "1\n2", "9223372036854775808", "inf"} {
		f.Add(i, v)
	}
	keys := Keys()
	f.Fuzz(func(t *testing.T, k int, v string) {
		key := v
		if k >= 0 {
			key = keys[k%len(keys)]
		}
		r := Default()
		if err := r.Set(key, v); err != nil {
			var es Errors
			require.True(t, errors.As(err, &es))
			return
		}
		_ = r.Validate()
		text := r.Effective()
		back := Defaults()
		require.NoError(t, back.decode("set.toml", []byte(text)), text)
		if r.Validate() == nil {
			assert.Equal(t, text, back.Effective())
		}
	})
}
