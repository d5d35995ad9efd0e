package recipes

import (
	"reflect"
	"sort"
	"strings"
)

// A node is one key of the recipe's schema, found by reflection over the toml
// tags, so a new field is a new key everywhere (TOML, Set, WriteTOML, Keys)
// without more code.
type node struct {
	name     string   // the key's last piece
	path     []string // the whole key path
	index    []int    // field index path from Recipe, for FieldByIndex
	typ      reflect.Type
	isPath   bool    // a file path, resolved against the recipe's directory
	children []*node // a table's keys, in field order
}

// key is the node's dotted path.
func (n *node) key() string { return strings.Join(n.path, ".") }

func (n *node) isTable() bool { return n.typ.Kind() == reflect.Struct }

// child returns the child named name, or nil.
func (n *node) child(name string) *node {
	for _, c := range n.children {
		if c.name == name {
			return c
		}
	}
	return nil
}

var schema = buildSchema(reflect.TypeOf(Recipe{}), nil, nil)

func buildSchema(t reflect.Type, path []string, index []int) *node {
	n := &node{path: path, index: index, typ: t}
	if len(path) > 0 {
		n.name = path[len(path)-1]
	}
	if t.Kind() != reflect.Struct {
		return n
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("toml")
		if !f.IsExported() || tag == "" || tag == "-" {
			continue
		}
		p := append(append([]string{}, path...), tag)
		ix := append(append([]int{}, index...), i)
		c := buildSchema(f.Type, p, ix)
		c.isPath = f.Tag.Get("recipe") == "path"
		n.children = append(n.children, c)
	}
	return n
}

// lookup finds the node of a key path, or nil.
func (n *node) lookup(path []string) *node {
	for _, p := range path {
		if n = n.child(p); n == nil {
			return nil
		}
	}
	return n
}

// walk calls fn for every node below n, tables before their keys.
func (n *node) walk(fn func(*node)) {
	for _, c := range n.children {
		fn(c)
		c.walk(fn)
	}
}

// knownPaths lists every key path, tables included.
func knownPaths() [][]string {
	var out [][]string
	schema.walk(func(n *node) { out = append(out, n.path) })
	return out
}

// Keys lists every key a recipe has, in dotted form ("train.iters"), tables
// left out, in the order WriteTOML writes them.
func Keys() []string {
	var out []string
	var visit func(n *node)
	visit = func(n *node) {
		for _, c := range n.children {
			if !c.isTable() {
				out = append(out, c.key())
			}
		}
		for _, c := range n.children {
			if c.isTable() {
				visit(c)
			}
		}
	}
	visit(schema)
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
