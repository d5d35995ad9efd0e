package sim

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The source pass: reads each .metal file as tokens, refuses what is not in the
// portable subset, rewrites what a macro of the shim cannot express, finds the
// kernels' signatures and generates their launchers. Its errors name file:line.

type tokKind uint8

const (
	tokIdent tokKind = iota
	tokNumber
	tokString
	tokPunct
)

type token struct {
	kind tokKind
	text string
	off  int // byte offset in the source
	line int
}

// puncts lists multi-character punctuators, longest first.
var puncts = []string{"<<=", ">>=", "...", "->", "++", "--", "<<", ">>", "<=", ">=", "==", "!=", "&&", "||",
	"+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "::", "[["}

// "[[" always opens an attribute in C++, but "]]" may close two subscripts, so
// it stays two tokens.

func isIdentStart(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isIdentChar(c byte) bool  { return isIdentStart(c) || c >= '0' && c <= '9' }

// tokenize splits src into tokens, dropping comments and whitespace.
// Preprocessor lines are kept as tokens too, so the checks see inside macros.
func tokenize(file, src string) ([]token, error) {
	var toks []token
	line := 1
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '\\' && i+1 < len(src) && src[i+1] == '\n':
			i += 2
			line++
		case strings.HasPrefix(src[i:], "//"):
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case strings.HasPrefix(src[i:], "/*"):
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return nil, fmt.Errorf("%s:%d: unterminated comment", file, line)
			}
			line += strings.Count(src[i:i+2+end+2], "\n")
			i += 2 + end + 2
		case isIdentStart(c):
			j := i + 1
			for j < len(src) && isIdentChar(src[j]) {
				j++
			}
			toks = append(toks, token{tokIdent, src[i:j], i, line})
			i = j
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(src) && src[i+1] >= '0' && src[i+1] <= '9':
			j := i + 1
			for j < len(src) && (isIdentChar(src[j]) || src[j] == '.' ||
				(src[j] == '+' || src[j] == '-') && (src[j-1] == 'e' || src[j-1] == 'E' || src[j-1] == 'p' || src[j-1] == 'P')) {
				j++
			}
			toks = append(toks, token{tokNumber, src[i:j], i, line})
			i = j
		case c == '"' || c == '\'':
			j := i + 1
			for j < len(src) && src[j] != c {
				if src[j] == '\\' {
					j++
				}
				if j < len(src) && src[j] == '\n' {
					return nil, fmt.Errorf("%s:%d: unterminated literal", file, line)
				}
				j++
			}
			if j >= len(src) {
				return nil, fmt.Errorf("%s:%d: unterminated literal", file, line)
			}
			toks = append(toks, token{tokString, src[i : j+1], i, line})
			i = j + 1
		default:
			p := string(c)
			for _, q := range puncts {
				if strings.HasPrefix(src[i:], q) {
					p = q
					break
				}
			}
			toks = append(toks, token{tokPunct, p, i, line})
			i += len(p)
		}
	}
	return toks, nil
}

var vectorType = regexp.MustCompile(`^(packed_)?(float|half|bfloat|int|uint|short|ushort|char|uchar|bool|long|ulong)[234]$`)

// strictErrors lists what the portable subset refuses: double, lambdas, vector
// constructors and casts, thread_elements(), includes other than <metal_stdlib>.
func strictErrors(file string, toks []token) []error {
	var errs []error
	bad := func(t token, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s:%d: %s", file, t.line, fmt.Sprintf(format, args...)))
	}
	at := func(i int) string {
		if i < 0 || i >= len(toks) {
			return ""
		}
		return toks[i].text
	}
	for i, t := range toks {
		switch {
		case t.kind == tokIdent && t.text == "double":
			bad(t, "double: Apple GPUs have no FP64; use float")
		case t.kind == tokIdent && t.text == "thread_elements":
			bad(t, "thread_elements(): its lane layout is undocumented, so the simulator cannot follow it")
		case t.kind == tokIdent && t.text == "include" && at(i-1) == "#":
			if at(i+1) != "<" || at(i+2) != "metal_stdlib" || at(i+3) != ">" {
				bad(t, "#include: only <metal_stdlib> (libraries are compiled from one source string)")
			}
		case t.kind == tokIdent && vectorType.MatchString(t.text):
			prev := at(i - 1)
			switch {
			case at(i+1) == "(" && prev != "sizeof" && prev != "alignof":
				bad(t, "%s(...): vector constructors and conversions differ between Metal and C++; use a helper (make_float4, ...)", t.text)
			case prev == "(" && at(i+1) == ")" && at(i-2) != "sizeof" && at(i-2) != "alignof":
				bad(t, "(%s): vector casts are not portable; convert element by element in a helper", t.text)
			case prev == "<" && (at(i-2) == "static_cast" || at(i-2) == "reinterpret_cast"):
				bad(t, "%s<%s>: vector casts are not portable", at(i-2), t.text)
			}
		case t.kind == tokPunct && t.text == "[":
			prev := toks[max(i-1, 0)]
			if i == 0 || !(prev.kind == tokIdent || prev.kind == tokNumber || prev.text == "]" || prev.text == ")") ||
				prev.kind == tokIdent && (prev.text == "return" || prev.text == "case") {
				bad(t, "lambda: Metal refuses lambdas; write a function")
			}
		}
	}
	return errs
}

// edit replaces src[off:off+n] with text.
type edit struct {
	off, n int
	text   string
}

func applyEdits(src string, edits []edit) string {
	slices.SortFunc(edits, func(a, b edit) int { return a.off - b.off })
	var sb strings.Builder
	last := 0
	for _, e := range edits {
		sb.WriteString(src[last:e.off])
		sb.WriteString(e.text)
		last = e.off + e.n
	}
	sb.WriteString(src[last:])
	return sb.String()
}

// funcConst is a [[function_constant(index)]] global.
type funcConst struct {
	name, typ string
	index     int
}

// param is one kernel parameter.
type param struct {
	name    string
	typ     string // the declared type, verbatim (address space included)
	attr    string // buffer, threadgroup or a built-in name
	index   int    // for buffer and threadgroup
	ref     bool   // a reference (constant T&), not a pointer
	isConst bool   // read-only: `const` or the constant address space
	space   string // device, constant or threadgroup
}

// kernelSig is a kernel function's signature.
type kernelSig struct {
	name      string
	file      string
	line      int
	params    []param
	bodyIdent map[string]bool // identifiers used in the body, to find constants it needs
}

// builtins maps each supported built-in attribute to the launcher's id field and
// whether it is a vector (thread_position_in_grid) or a scalar (an index).
var builtins = map[string]struct {
	field  string
	vector bool
}{
	"thread_position_in_grid":        {"tpig", true},
	"thread_position_in_threadgroup": {"tpitg", true},
	"threadgroup_position_in_grid":   {"tgpig", true},
	"threads_per_threadgroup":        {"tptg", true},
	"threadgroups_per_grid":          {"tgpg", true},
	"threads_per_grid":               {"tpg", true},
	"thread_index_in_threadgroup":    {"tiitg", false},
	"thread_index_in_simdgroup":      {"tiisg", false},
	"simdgroup_index_in_threadgroup": {"siitg", false},
	"threads_per_simdgroup":          {"tpsg", false},
	"simdgroups_per_threadgroup":     {"sgptg", false},
}

var builtinTypes = map[string]bool{"uint": true, "ushort": true, "uint2": true, "ushort2": true, "uint3": true, "ushort3": true}

// unit is one .metal file after the source pass.
type unit struct {
	file    string
	text    string // rewritten for the simulator
	kernels []*kernelSig
	consts  []funcConst
}

// process runs the source pass over one file.
func process(file, src string) (*unit, error) {
	toks, err := tokenize(file, src)
	if err != nil {
		return nil, err
	}
	if errs := strictErrors(file, toks); len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	u := &unit{file: file}
	var edits []edit
	var errs []error
	bad := func(t token, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s:%d: %s", file, t.line, fmt.Sprintf(format, args...)))
	}
	at := func(i int) string {
		if i < 0 || i >= len(toks) {
			return ""
		}
		return toks[i].text
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		if t.kind != tokIdent {
			continue
		}
		switch {
		case t.text == "constant" && at(i+3) == "[[" && at(i+4) == "function_constant":
			// constant T name [[function_constant(i)]];
			if toks[i+1].kind != tokIdent || toks[i+2].kind != tokIdent || at(i+5) != "(" || at(i+7) != ")" || at(i+8) != "]" || at(i+9) != "]" || at(i+10) != ";" {
				bad(t, "function constants are written `constant T name [[function_constant(i)]];`")
				continue
			}
			idx, err := strconv.Atoi(at(i + 6))
			if err != nil || idx < 0 || idx >= 64 {
				bad(t, "function constant index %q: want 0..63", at(i+6))
				continue
			}
			fc := funcConst{name: at(i + 2), typ: at(i + 1), index: idx}
			switch fc.typ {
			case "bool", "int", "uint", "float":
			default:
				bad(t, "function constant %s: type %s (want bool, int, uint or float)", fc.name, fc.typ)
			}
			u.consts = append(u.consts, fc)
			end := toks[i+10].off + 1
			edits = append(edits, edit{t.off, end - t.off, fmt.Sprintf("static %s %s;", fc.typ, fc.name)})
			i += 10
		case t.text == "threadgroup" && at(i+1) != "(" && at(i-1) != "[[":
			e, err := rewriteThreadgroup(file, toks, i)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			edits = append(edits, e...)
		case t.text == "kernel" && at(i+1) == "void":
			k, err := parseKernel(file, toks, i)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			u.kernels = append(u.kernels, k)
		}
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	u.text = applyEdits(src, edits)
	return u, nil
}

// rewriteThreadgroup handles the `threadgroup` qualifier at toks[i]: on a pointer
// or reference it is dropped; on a declaration it becomes `static`, followed by
// a call that poisons the memory when the first lane of a group gets there.
func rewriteThreadgroup(file string, toks []token, i int) ([]edit, error) {
	t := toks[i]
	j := i + 1
	for j < len(toks) && (toks[j].text == "const" || toks[j].text == "volatile") {
		j++
	}
	// the type: an identifier, maybe qualified, maybe with template arguments
	if j >= len(toks) || toks[j].kind != tokIdent {
		return nil, fmt.Errorf("%s:%d: threadgroup must be followed by a type", file, t.line)
	}
	j++
	for j+1 < len(toks) && toks[j].text == "::" {
		j += 2
	}
	if j < len(toks) && toks[j].text == "<" {
		depth := 0
		for ; j < len(toks); j++ {
			if toks[j].text == "<" {
				depth++
			} else if toks[j].text == ">" {
				depth--
				if depth == 0 {
					j++
					break
				}
			} else if toks[j].text == ">>" {
				depth -= 2
				if depth <= 0 {
					j++
					break
				}
			}
		}
	}
	for j < len(toks) && (toks[j].text == "const" || toks[j].text == "volatile") {
		j++
	}
	if j >= len(toks) {
		return nil, fmt.Errorf("%s:%d: threadgroup declaration runs off the end", file, t.line)
	}
	if toks[j].text == "*" || toks[j].text == "&" {
		return []edit{{t.off, len(t.text), ""}}, nil
	}
	if toks[j].kind != tokIdent {
		return nil, fmt.Errorf("%s:%d: cannot read the threadgroup declaration", file, t.line)
	}
	name := toks[j].text
	depth := 0
	for k := j + 1; k < len(toks); k++ {
		switch toks[k].text {
		case "(", "[", "{":
			depth++
		case ")", "]", "}":
			depth--
		case "=":
			if depth == 0 {
				return nil, fmt.Errorf("%s:%d: threadgroup variable %s has an initialiser (Metal refuses them)", file, toks[k].line, name)
			}
		case ",":
			if depth == 0 {
				return nil, fmt.Errorf("%s:%d: declare one threadgroup variable per statement", file, toks[k].line)
			}
		case ";":
			if depth != 0 {
				continue
			}
			decl := fmt.Sprintf(" mlxsim::tg_declare(&%s, sizeof(%s), __FILE__, __LINE__);", name, name)
			return []edit{{t.off, len(t.text), "static"}, {toks[k].off + 1, 0, decl}}, nil
		}
	}
	return nil, fmt.Errorf("%s:%d: threadgroup declaration of %s has no end", file, t.line, name)
}

// parseKernel reads `kernel void name(params) {body}` starting at toks[i].
func parseKernel(file string, toks []token, i int) (*kernelSig, error) {
	t := toks[i]
	if i+3 >= len(toks) || toks[i+2].kind != tokIdent || toks[i+3].text != "(" {
		return nil, fmt.Errorf("%s:%d: cannot read the kernel's name", file, t.line)
	}
	k := &kernelSig{name: toks[i+2].text, file: file, line: t.line, bodyIdent: map[string]bool{}}
	// split the parameters at top-level commas
	var groups [][]token
	var cur []token
	depth := 0
	j := i + 4
	for ; j < len(toks); j++ {
		s := toks[j].text
		if depth == 0 && s == ")" {
			break
		}
		switch s {
		case "(", "[", "<":
			depth++
		case "[[":
			depth += 2
		case ")", "]", ">":
			depth--
		}
		if depth == 0 && s == "," {
			groups = append(groups, cur)
			cur = nil
			continue
		}
		cur = append(cur, toks[j])
	}
	if len(cur) > 0 {
		groups = append(groups, cur)
	}
	if j >= len(toks) {
		return nil, fmt.Errorf("%s:%d: kernel %s: unterminated parameter list", file, t.line, k.name)
	}
	for _, g := range groups {
		p, err := parseParam(file, k.name, g)
		if err != nil {
			return nil, err
		}
		for _, q := range k.params {
			if q.name == p.name {
				return nil, fmt.Errorf("%s:%d: kernel %s: parameter %s declared twice", file, g[0].line, k.name, p.name)
			}
			if q.attr == p.attr && (p.attr == "buffer" || p.attr == "threadgroup") && q.index == p.index {
				return nil, fmt.Errorf("%s:%d: kernel %s: [[%s(%d)]] used twice", file, g[0].line, k.name, p.attr, p.index)
			}
		}
		k.params = append(k.params, p)
	}
	// the body: collect its identifiers
	for j++; j < len(toks) && toks[j].text != "{"; j++ {
	}
	depth = 0
	for ; j < len(toks); j++ {
		switch toks[j].text {
		case "{":
			depth++
		case "}":
			depth--
		}
		if toks[j].kind == tokIdent {
			k.bodyIdent[toks[j].text] = true
		}
		if depth == 0 {
			break
		}
	}
	return k, nil
}

func parseParam(file, kernel string, g []token) (param, error) {
	var p param
	if len(g) == 0 {
		return p, fmt.Errorf("%s: kernel %s: empty parameter", file, kernel)
	}
	line := g[0].line
	fail := func(format string, args ...any) (param, error) {
		return param{}, fmt.Errorf("%s:%d: kernel %s: %s", file, line, kernel, fmt.Sprintf(format, args...))
	}
	a := -1
	for i, t := range g {
		if t.text == "[[" {
			a = i
			break
		}
	}
	if a < 0 {
		return fail("every parameter needs an attribute ([[buffer(i)]], [[thread_position_in_grid]], ...)")
	}
	if a < 2 || g[a-1].kind != tokIdent {
		return fail("cannot read the parameter before [[")
	}
	p.name = g[a-1].text
	var typ []string
	for _, t := range g[:a-1] {
		typ = append(typ, t.text)
	}
	p.typ = joinType(typ)
	attr := g[a+1:]
	if len(attr) < 2 || attr[len(attr)-1].text != "]" || attr[len(attr)-2].text != "]" {
		return fail("parameter %s: attribute not closed on the parameter", p.name)
	}
	attr = attr[:len(attr)-2]
	if len(attr) == 0 || attr[0].kind != tokIdent {
		return fail("parameter %s: empty attribute", p.name)
	}
	p.attr = attr[0].text
	for _, t := range typ {
		switch t {
		case "device", "constant", "threadgroup":
			p.space = t
		case "const":
			p.isConst = true
		}
	}
	last := typ[len(typ)-1]
	switch p.attr {
	case "buffer", "threadgroup":
		if len(attr) != 4 || attr[1].text != "(" || attr[3].text != ")" {
			return fail("parameter %s: want [[%s(i)]]", p.name, p.attr)
		}
		n, err := strconv.Atoi(attr[2].text)
		if err != nil || n < 0 || n > 30 {
			return fail("parameter %s: index %q: want 0..30", p.name, attr[2].text)
		}
		p.index = n
		if last != "*" && last != "&" {
			return fail("parameter %s: a [[%s]] argument is a pointer or a reference", p.name, p.attr)
		}
		p.ref = last == "&"
		want := "device or constant"
		ok := p.space == "device" || p.space == "constant"
		if p.attr == "threadgroup" {
			want, ok = "threadgroup", p.space == "threadgroup" && !p.ref
		}
		if !ok {
			return fail("parameter %s: [[%s(%d)]] needs the %s address space", p.name, p.attr, n, want)
		}
		if p.space == "constant" {
			p.isConst = true
		}
	default:
		b, known := builtins[p.attr]
		if !known {
			return fail("parameter %s: the simulator does not know [[%s]]", p.name, p.attr)
		}
		if len(attr) != 1 {
			return fail("parameter %s: [[%s]] takes no arguments", p.name, p.attr)
		}
		if !builtinTypes[p.typ] || !b.vector && p.typ != "uint" && p.typ != "ushort" {
			return fail("parameter %s: [[%s]] of type %s (want uint or ushort%s)", p.name, p.attr, p.typ, map[bool]string{true: ", or their 2- and 3-vectors", false: ""}[b.vector])
		}
	}
	return p, nil
}

func joinType(parts []string) string {
	var sb strings.Builder
	for i, s := range parts {
		if i > 0 && s != "*" && s != "&" && s != "::" && parts[i-1] != "::" && s != "<" && s != ">" && parts[i-1] != "<" {
			sb.WriteByte(' ')
		}
		sb.WriteString(s)
	}
	return sb.String()
}

// launcher generates the C++ that runs kernel k: an entry each lane runs, the
// exported launch function, and the sizes of its reference arguments.
func (u *unit) launcher(k *kernelSig) string {
	var sb strings.Builder
	var args []string
	for _, p := range k.params {
		switch p.attr {
		case "buffer":
			if p.ref {
				args = append(args, fmt.Sprintf("*(%s*)L->buf[%d]", strings.TrimSuffix(p.typ, "&"), p.index))
			} else {
				args = append(args, fmt.Sprintf("(%s)L->buf[%d]", p.typ, p.index))
			}
		case "threadgroup":
			args = append(args, fmt.Sprintf("(%s)L->tg[%d]", strings.TrimSpace(strings.Replace(p.typ, "threadgroup", "", 1)), p.index))
		default:
			b := builtins[p.attr]
			if b.vector {
				args = append(args, fmt.Sprintf("mlxsim::builtin<%s>(id->%s)", p.typ, b.field))
			} else {
				args = append(args, fmt.Sprintf("mlxsim::builtin1<%s>(id->%s)", p.typ, b.field))
			}
		}
	}
	fmt.Fprintf(&sb, "static void mlxsim_e_%s(mlxsim::Launch* L, const mlxsim::Ids* id) {\n", k.name)
	fmt.Fprintf(&sb, "  (void)L; (void)id;\n  %s(%s);\n}\n", k.name, strings.Join(args, ",\n    "))
	fmt.Fprintf(&sb, "extern \"C\" __attribute__((visibility(\"default\"))) int mlxsim_k_%s(mlxsim::Launch* L) {\n", k.name)
	for _, c := range u.consts {
		fmt.Fprintf(&sb, "  if ((L->fc_set >> %d) & 1) __builtin_memcpy(&%s, &L->fc[%d], sizeof(%s));\n", c.index, c.name, c.index, c.name)
	}
	fmt.Fprintf(&sb, "  return mlxsim::run(L, mlxsim_e_%s, %q);\n}\n", k.name, k.name)
	fmt.Fprintf(&sb, "extern \"C\" __attribute__((visibility(\"default\"))) unsigned long mlxsim_sz_%s(int index) {\n  switch (index) {\n", k.name)
	for _, p := range k.params {
		if p.attr == "buffer" && p.ref {
			fmt.Fprintf(&sb, "    case %d: return sizeof(%s);\n", p.index, strings.TrimSpace(strings.TrimSuffix(p.typ, "&")))
		}
	}
	sb.WriteString("  }\n  return 0;\n}\n")
	return sb.String()
}

// translationUnit is the C++ the simulator compiles for one file: the shared
// helpers (common), the file, and the generated launchers.
func translationUnit(common, u *unit) string {
	var sb strings.Builder
	if common != nil {
		fmt.Fprintf(&sb, "#line 1 %q\n%s\n", common.file, common.text)
	}
	fmt.Fprintf(&sb, "#line 1 %q\n%s\n", u.file, u.text)
	fmt.Fprintf(&sb, "#line 1 \"<launchers of %s>\"\n", u.file)
	for _, k := range u.kernels {
		sb.WriteString(u.launcher(k))
	}
	return sb.String()
}

func joinErrors(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return fmt.Errorf("%s", strings.Join(msgs, "\n"))
}
