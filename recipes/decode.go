package recipes

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
)

// Load reads the recipe file at path (see Parse).
func Load(path string, overrides ...string) (*Recipe, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("recipe: %w", err)
	}
	return Parse(path, b, overrides...)
}

// Parse reads a TOML recipe named name (the file name that errors cite) on
// top of Defaults, applies the overrides ("key=value", as Set takes them) and
// validates the result.
//
// Every problem is reported, each with file:line and key: TOML syntax errors;
// unknown keys, with the nearest valid key ("recipe.toml:12: unknown key
// train.iter (did you mean train.iters?)"); values of the wrong type; and then
// whatever Validate finds. The error is an Errors (Load's error for a file it
// cannot read is not).
//
// Relative data paths (data.train, data.valid, data.test, a data.tokenizer
// file) are relative to the directory of name; Parse makes them absolute (see
// DataConfig).
func Parse(name string, data []byte, overrides ...string) (*Recipe, error) {
	r := Defaults()
	if err := r.decode(name, data); err != nil {
		return nil, err
	}
	if err := r.Apply(overrides...); err != nil {
		return nil, err
	}
	return r, nil
}

// Apply sets each "key=value" override (see Set), then validates the recipe.
func (r *Recipe) Apply(overrides ...string) error {
	var errs Errors
	for _, kv := range overrides {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			errs = append(errs, &Error{Source: "--set " + kv, Msg: fmt.Sprintf("want key=value, got %q", kv)})
			continue
		}
		if err := r.Set(strings.TrimSpace(k), v); err != nil {
			errs = append(errs, asErrors(err)...)
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return r.Validate()
}

func asErrors(err error) Errors {
	var es Errors
	if errors.As(err, &es) {
		return es
	}
	var e *Error
	if errors.As(err, &e) {
		return Errors{e}
	}
	return Errors{{Msg: err.Error()}}
}

// tomlDecode parses TOML text into nested maps. The TOML library is fuzzed,
// but a panic on user input must not escape us whatever happens inside it.
func tomlDecode(text string) (m map[string]any, err error) {
	defer func() {
		if p := recover(); p != nil {
			m, err = nil, fmt.Errorf("toml: %v", p)
		}
	}()
	_, err = toml.Decode(text, &m)
	return m, err
}

// decode fills r from TOML text.
func (r *Recipe) decode(name string, data []byte) error {
	m, err := tomlDecode(string(data))
	if err != nil {
		e := &Error{Source: name, Msg: err.Error()}
		var pe toml.ParseError
		if errors.As(err, &pe) {
			e.Line = pe.Position.Line
			e.Key = pe.LastKey
			e.Msg = "toml: " + pe.Message
			if pe.LastKey != "" {
				e.Msg = fmt.Sprintf("toml: %s (after key %s)", pe.Message, pe.LastKey)
			}
		}
		return Errors{e}
	}
	d := &decoder{file: name, lines: keyLines(string(data)), origin: map[string]origin{}}
	r.file = name
	// The family preset goes first, so that keys beside it win.
	if model, ok := m["model"].(map[string]any); ok {
		if f, ok := model["family"].(string); ok {
			_ = r.Model.SetFamily(f) // an unknown family is Validate's to report
		}
	}
	d.table(reflect.ValueOf(r).Elem(), schema, m)
	if len(d.errs) > 0 {
		return d.errs
	}
	resolvePaths(r, filepath.Dir(name), d.origin)
	r.origin = d.origin
	return nil
}

// resolvePaths makes the data paths given in the file absolute, reading a
// relative one as relative to dir.
func resolvePaths(r *Recipe, dir string, given map[string]origin) {
	rv := reflect.ValueOf(r).Elem()
	schema.walk(func(n *node) {
		if _, ok := given[n.key()]; ok && n.isPath {
			absPaths(n, rv.FieldByIndex(n.index), dir)
		}
	})
}

// absPaths makes the path or paths in v, the field of n, absolute, reading
// relative ones as relative to dir. Empty paths and data.tokenizer's
// keywords are left for Validate.
func absPaths(n *node, v reflect.Value, dir string) {
	abs := func(p string) string {
		if strings.TrimSpace(p) == "" || filepath.IsAbs(p) {
			return p
		}
		if n.key() == "data.tokenizer" && !strings.HasSuffix(p, ".json") {
			return p // "byte" or "bpe", not a file
		}
		joined := filepath.Join(dir, p)
		if a, err := filepath.Abs(joined); err == nil {
			return a
		}
		return joined
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(abs(v.String()))
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			v.Index(i).SetString(abs(v.Index(i).String()))
		}
	}
}

// A decoder assigns decoded TOML values to a recipe's fields, checking their
// types and collecting errors with file and line.
type decoder struct {
	file   string         // source name for errors
	lines  map[string]int // key path (pathSep-joined) → line; nil for --set
	origin map[string]origin
	errs   Errors
}

// line returns the line of path, or of its longest recorded prefix.
func (d *decoder) line(path []string) int {
	for n := len(path); n > 0; n-- {
		if l, ok := d.lines[strings.Join(path[:n], pathSep)]; ok {
			return l
		}
	}
	return 0
}

func (d *decoder) fail(path []string, format string, args ...any) {
	d.errs = append(d.errs, &Error{Source: d.file, Line: d.line(path), Key: joinKey(path),
		Msg: fmt.Sprintf(format, args...)})
}

// table assigns the keys of a TOML table to the struct v described by n, in
// the order of their lines.
func (d *decoder) table(v reflect.Value, n *node, m map[string]any) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		li, lj := d.line(append(n.path[:len(n.path):len(n.path)], keys[i])), d.line(append(n.path[:len(n.path):len(n.path)], keys[j]))
		if li != lj {
			return li < lj
		}
		return keys[i] < keys[j]
	})
	for _, k := range keys {
		path := append(append([]string{}, n.path...), k)
		c := n.child(k)
		if c == nil {
			msg := "unknown key " + joinKey(path)
			if s := suggestKey(path, knownPaths()); s != "" {
				msg += " (did you mean " + s + "?)"
			}
			d.fail(path, "%s", msg)
			continue
		}
		d.assign(v.FieldByIndex(c.index[len(n.index):]), c, m[k])
	}
}

// assign sets v, the field of node n, from a decoded TOML value.
func (d *decoder) assign(v reflect.Value, n *node, val any) {
	path := n.path
	key := n.key()
	bad := func(want string) {
		d.fail(path, "%s: want %s, got %s", key, want, describe(val))
	}
	switch n.typ.Kind() {
	case reflect.Struct:
		m, ok := val.(map[string]any)
		if !ok {
			bad("a table")
			return
		}
		d.table(v, n, m)
		return
	case reflect.Bool:
		b, ok := val.(bool)
		if !ok {
			bad("true or false")
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		i, ok := integer(val)
		if !ok || v.OverflowInt(i) {
			bad("an integer")
			return
		}
		v.SetInt(i)
	case reflect.Uint64, reflect.Uint, reflect.Uint32:
		i, ok := integer(val)
		if !ok || i < 0 || v.OverflowUint(uint64(i)) {
			bad("an integer at least 0")
			return
		}
		v.SetUint(uint64(i))
	case reflect.Float64:
		f, ok := number(val)
		if !ok {
			bad("a number")
			return
		}
		v.SetFloat(f)
	case reflect.String:
		s, ok := val.(string)
		if !ok {
			bad("a string")
			return
		}
		v.SetString(s)
	case reflect.Slice: // []string
		var items []any
		switch x := val.(type) {
		case string:
			items = []any{x}
		case []any:
			items = x
		default:
			bad("a list of strings")
			return
		}
		out := make([]string, len(items))
		for i, it := range items {
			s, ok := it.(string)
			if !ok {
				d.fail(path, "%s[%d]: want a string, got %s", key, i, describe(it))
				return
			}
			out[i] = s
		}
		v.Set(reflect.ValueOf(out))
	case reflect.Array: // [N]float64
		items, ok := val.([]any)
		if !ok || len(items) != v.Len() {
			bad(fmt.Sprintf("a list of %d numbers", v.Len()))
			return
		}
		for i, it := range items {
			f, ok := number(it)
			if !ok {
				d.fail(path, "%s[%d]: want a number, got %s", key, i, describe(it))
				return
			}
			v.Index(i).SetFloat(f)
		}
	default:
		panic("recipes: no decoding for " + n.typ.String() + " (" + key + ")")
	}
	d.origin[key] = origin{source: d.file, line: d.line(path)}
}

// integer accepts a TOML integer, or a float with an integral value (1e3).
func integer(val any) (int64, bool) {
	switch x := val.(type) {
	case int64:
		return x, true
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<62 {
			return int64(x), true
		}
	}
	return 0, false
}

// number accepts a TOML float or integer.
func number(val any) (float64, bool) {
	switch x := val.(type) {
	case float64:
		return x, true
	case int64:
		return float64(x), true
	}
	return 0, false
}

// describe names a decoded value's TOML type and shows it, briefly.
func describe(val any) string {
	switch x := val.(type) {
	case string:
		s := x
		if utf8.RuneCountInString(s) > 40 {
			s = string([]rune(s)[:40]) + "..."
		}
		return "string " + strconv.Quote(s)
	case int64:
		return "integer " + strconv.FormatInt(x, 10)
	case float64:
		return "float " + formatFloat(x)
	case bool:
		return "boolean " + strconv.FormatBool(x)
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a datetime"
	}
	return fmt.Sprintf("%T", val)
}

// Set assigns one key from its text, as the command line's --set key=value
// does: train.iters=100, data.train=a.jsonl,b.jsonl,
// optimizer.betas=0.9,0.95, model.layer_pattern=["ssm","attention"]. The value
// is typed by the key's field: integers, numbers and booleans in TOML syntax;
// strings as they are (or TOML-quoted); lists as TOML arrays or
// comma-separated. Setting model.family assigns its preset (see
// ModelConfig.Family). Relative data paths are relative to the working
// directory and made absolute. Set checks the key and the value's type; Validate
// checks the rest, and cites "--set key=value" for a bad value set here.
func (r *Recipe) Set(key, value string) error {
	src := "--set " + key + "=" + value
	path := strings.Split(key, ".")
	n := schema.lookup(path)
	if n == nil || key == "" {
		msg := "unknown key " + key
		if key != "" {
			if s := suggestKey(path, knownPaths()); s != "" {
				msg += " (did you mean " + s + "?)"
			}
		}
		return Errors{{Source: src, Key: key, Msg: msg}}
	}
	if n.isTable() {
		var keys []string
		for _, c := range n.children {
			keys = append(keys, c.key())
		}
		return Errors{{Source: src, Key: key, Msg: fmt.Sprintf("%s is a table: set one of its keys (%s)",
			key, strings.Join(keys, ", "))}}
	}
	val, err := setValue(n, value)
	if err != nil {
		return Errors{{Source: src, Key: key, Msg: fmt.Sprintf("%s: %v", key, err)}}
	}
	d := &decoder{file: src, origin: map[string]origin{}}
	d.assign(reflect.ValueOf(r).Elem().FieldByIndex(n.index), n, val)
	if len(d.errs) > 0 {
		return d.errs
	}
	if n.isPath {
		absPaths(n, reflect.ValueOf(r).Elem().FieldByIndex(n.index), ".")
	}
	if key == "model.family" {
		_ = r.Model.SetFamily(r.Model.Family) // an unknown family is Validate's to report
	}
	// The map may be shared with a copy of the recipe: replace, never modify.
	o := maps.Clone(r.origin)
	if o == nil {
		o = map[string]origin{}
	}
	o[key] = origin{source: src, override: true}
	r.origin = o
	return nil
}

// setValue turns --set text into a value as the TOML decoder gives it.
func setValue(n *node, text string) (any, error) {
	t := strings.TrimSpace(text)
	quoted := strings.HasPrefix(t, `"`) || strings.HasPrefix(t, "'")
	switch n.typ.Kind() {
	case reflect.String:
		if !quoted {
			return text, nil
		}
		return tomlValue(t)
	case reflect.Slice:
		if strings.HasPrefix(t, "[") {
			return tomlValue(t)
		}
		var out []any
		if t == "" {
			return []any{}, nil
		}
		for _, p := range strings.Split(t, ",") {
			p = strings.TrimSpace(p)
			if strings.HasPrefix(p, `"`) || strings.HasPrefix(p, "'") {
				v, err := tomlValue(p)
				if err != nil {
					return nil, err
				}
				out = append(out, v)
			} else {
				out = append(out, p)
			}
		}
		return out, nil
	case reflect.Array:
		if !strings.HasPrefix(t, "[") {
			t = "[" + t + "]"
		}
		return tomlValue(t)
	}
	return tomlValue(t)
}

// tomlValue parses one TOML value.
func tomlValue(text string) (any, error) {
	if strings.ContainsAny(text, "\n\r") {
		return nil, fmt.Errorf("cannot read %q: a value is one line", text)
	}
	m, err := tomlDecode("v = " + text)
	if err != nil || len(m) != 1 {
		return nil, fmt.Errorf("cannot read %q as a TOML value", text)
	}
	return m["v"], nil
}
