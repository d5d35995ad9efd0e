package recipes

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
)

// WriteTOML writes every key of the recipe, defaults included, as TOML that
// Parse reads back to the same recipe. The fit command prints it at start and
// saves it in each checkpoint as recipe.toml.
func (r *Recipe) WriteTOML(w io.Writer) error {
	var b bytes.Buffer
	b.WriteString("# mlxtrain recipe: every effective value, defaults included.\n")
	rv := reflect.ValueOf(r).Elem()
	var section func(n *node)
	section = func(n *node) {
		var leaves, tables []*node
		for _, c := range n.children {
			if c.isTable() {
				tables = append(tables, c)
			} else {
				leaves = append(leaves, c)
			}
		}
		if len(n.path) > 0 {
			fmt.Fprintf(&b, "\n[%s]\n", joinKey(n.path))
		}
		width := 0
		for _, c := range leaves {
			width = max(width, len(c.name))
		}
		for _, c := range leaves {
			fmt.Fprintf(&b, "%-*s = %s\n", width, c.name, tomlText(rv.FieldByIndex(c.index)))
		}
		for _, c := range tables {
			section(c)
		}
	}
	section(schema)
	_, err := w.Write(b.Bytes())
	return err
}

// Effective returns the recipe as WriteTOML writes it.
func (r *Recipe) Effective() string {
	var b strings.Builder
	_ = r.WriteTOML(&b) // a strings.Builder does not fail
	return b.String()
}

// tomlText writes one leaf value in TOML.
func tomlText(v reflect.Value) string {
	switch v.Kind() {
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int64, reflect.Int32:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Uint, reflect.Uint64, reflect.Uint32:
		u := v.Uint()
		if u > math.MaxInt64 {
			// TOML integers are 64-bit signed; Validate rejects such a value,
			// and the text stays valid TOML that says what it was.
			return strconv.Quote(strconv.FormatUint(u, 10))
		}
		return strconv.FormatUint(u, 10)
	case reflect.Float64:
		return formatFloat(v.Float())
	case reflect.String:
		return quoteTOML(v.String())
	case reflect.Slice, reflect.Array:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = tomlText(v.Index(i))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	panic("recipes: no TOML text for " + v.Type().String())
}

// formatFloat writes f as a TOML float that reads back to the same bits.
func formatFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if !strings.ContainsAny(s, ".en") {
		s += ".0"
	}
	return s
}

// quoteTOML writes s as a TOML basic string. Invalid UTF-8 (which TOML cannot
// hold, and Validate rejects) becomes U+FFFD.
func quoteTOML(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range s {
		switch {
		case c == '"':
			b.WriteString(`\"`)
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\r':
			b.WriteString(`\r`)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, c)
		default:
			b.WriteRune(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
