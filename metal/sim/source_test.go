package sim

import (
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/shaders"
)

// TestShadersPassTheStrictPass runs the source pass over every shader of the
// project; it needs no compiler, so it runs everywhere.
func TestShadersPassTheStrictPass(t *testing.T) {
	names, err := fs.Glob(shaders.Sources, "*.metal")
	require.NoError(t, err)
	require.Contains(t, names, "common.metal")
	kernels := 0
	for _, name := range names {
		src, err := fs.ReadFile(shaders.Sources, name)
		require.NoError(t, err)
		u, err := process(name, string(src))
		require.NoError(t, err, name)
		if name == "common.metal" {
			assert.Empty(t, u.kernels, "common.metal is compiled into every file: helpers only")
		}
		kernels += len(u.kernels)
	}
	assert.GreaterOrEqual(t, kernels, 5)
}

func TestStrictPassRefusesNonPortableMSL(t *testing.T) {
	for name, c := range map[string]struct{ src, want string }{
		"double":          {"inline double f(double x) { return x; }", "double"},
		"double in macro": {"#define REAL double\n", "double"},
		"lambda":          {"inline float f(float x) { auto g = [](float y) { return y; }; return g(x); }", "lambda"},
		"capture lambda":  {"inline float f(float x) { auto g = [&](float y) { return y + x; }; return g(x); }", "lambda"},
		"vector ctor":     {"inline float4 f(float x) { return float4(x, x, x, 1.0f); }", "float4(...)"},
		"vector convert":  {"inline float4 f(half4 h) { return float4(h); }", "float4(...)"},
		"vector cast":     {"inline int4 f(float4 v) { return (int4)v; }", "vector casts"},
		"static_cast":     {"inline uint2 f(float2 v) { return static_cast<uint2>(v); }", "vector casts"},
		"thread_elements": {"inline void f(thread simdgroup_float8x8& m) { m.thread_elements()[0] = 1.0f; }", "thread_elements"},
		"include":         {"#include \"other.h\"\n", "#include"},
		"tg initialiser":  {"kernel void k(device float* o [[buffer(0)]], uint i [[thread_position_in_grid]]) { threadgroup float t[4] = {0}; o[i] = t[0]; }", "initialiser"},
		"two tg vars":     {"kernel void k(device float* o [[buffer(0)]], uint i [[thread_position_in_grid]]) { threadgroup float a[4], b[4]; o[i] = a[0] + b[0]; }", "one threadgroup variable"},
		"no attribute":    {"kernel void k(device float* o) { o[0] = 1.0f; }", "needs an attribute"},
		"unknown builtin": {"kernel void k(device float* o [[buffer(0)]], uint i [[thread_positon_in_grid]]) { o[i] = 1.0f; }", "thread_positon_in_grid"},
		"builtin type":    {"kernel void k(device float* o [[buffer(0)]], float i [[thread_position_in_grid]]) { o[0] = i; }", "of type float"},
		"index type":      {"kernel void k(device float* o [[buffer(0)]], uint2 i [[thread_index_in_simdgroup]]) { o[0] = 1.0f; }", "of type uint2"},
		"buffer twice":    {"kernel void k(device float* o [[buffer(0)]], device float* p [[buffer(0)]]) { o[0] = p[0]; }", "used twice"},
		"buffer by value": {"kernel void k(device float o [[buffer(0)]]) { }", "pointer or a reference"},
		"no addr space":   {"kernel void k(float* o [[buffer(0)]]) { o[0] = 1.0f; }", "address space"},
		"fc type":         {"constant half H [[function_constant(0)]];", "type half"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := process("bad.metal", c.src)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
			assert.Contains(t, err.Error(), "bad.metal:")
		})
	}
}

func TestStrictPassAcceptsPortableMSL(t *testing.T) {
	src := `
#include <metal_stdlib>
using namespace metal;
struct P { uint n; };
constant uint MODE [[function_constant(4)]];
inline float helper(threadgroup float* t, const threadgroup float& r, uint i) { return t[i] + r; }
kernel void k(device float* out [[buffer(0)]], const device float* in [[buffer(1)]],
              constant P& p [[buffer(2)]], threadgroup float* dyn [[threadgroup(0)]],
              uint2 gid [[thread_position_in_grid]], ushort lane [[thread_index_in_simdgroup]]) {
  threadgroup float tile[4][8];
  int idx[2] = {0, 1};
  float4 v = 0.0f;
  tile[idx[idx[0]]][0] = in[gid.x] + float(sizeof(float4)) + v.x;
  dyn[lane] = tile[0][0];
  out[gid.x] = MODE == 0 ? helper(dyn, tile[0][0], lane) : 0.0f;
}
`
	u, err := process("good.metal", src)
	require.NoError(t, err)
	require.Len(t, u.kernels, 1)
	k := u.kernels[0]
	assert.Equal(t, "k", k.name)
	require.Len(t, k.params, 6)
	assert.Equal(t, param{name: "out", typ: "device float*", attr: "buffer", index: 0, space: "device"}, k.params[0])
	assert.Equal(t, param{name: "in", typ: "const device float*", attr: "buffer", index: 1, isConst: true, space: "device"}, k.params[1])
	assert.Equal(t, param{name: "p", typ: "constant P&", attr: "buffer", index: 2, ref: true, isConst: true, space: "constant"}, k.params[2])
	assert.Equal(t, param{name: "dyn", typ: "threadgroup float*", attr: "threadgroup", index: 0, space: "threadgroup"}, k.params[3])
	assert.Equal(t, "thread_position_in_grid", k.params[4].attr)
	assert.Equal(t, "ushort", k.params[5].typ)
	assert.True(t, k.bodyIdent["MODE"])
	assert.Equal(t, []funcConst{{name: "MODE", typ: "uint", index: 4}}, u.consts)
	// the rewrites keep every line where it was
	assert.Equal(t, strings.Count(src, "\n"), strings.Count(u.text, "\n"))
	assert.Contains(t, u.text, "static uint MODE;")
	assert.Contains(t, u.text, "static float tile[4][8]; mlxsim::tg_declare(&tile, sizeof(tile), __FILE__, __LINE__);")
	assert.Contains(t, u.text, "inline float helper( float* t, const  float& r, uint i)")
	gen := u.launcher(k)
	assert.Contains(t, gen, "*(constant P*)L->buf[2]")
	assert.Contains(t, gen, "(float*)L->tg[0]")
	assert.Contains(t, gen, "mlxsim::builtin<uint2>(id->tpig)")
	assert.Contains(t, gen, "mlxsim::builtin1<ushort>(id->tiisg)")
	assert.Contains(t, gen, "case 2: return sizeof(constant P);")
}

// TestClangCatchesWhatThePassCannot builds a library with files that pass the
// source pass but not clang: each fails alone, naming its file and line, and
// the good file's kernel still runs.
func TestClangCatchesWhatThePassCannot(t *testing.T) {
	requireClang(t)
	head := "#include <metal_stdlib>\nusing namespace metal;\n"
	d, err := OpenWith(Options{Sources: fstest.MapFS{
		"good.metal":      {Data: []byte(head + "kernel void good(device float* o [[buffer(0)]], uint i [[thread_position_in_grid]]) { o[i] = 2.0f; }\n")},
		"attribute.metal": {Data: []byte(head + "[[fast_path]] inline float f(float x) { return x; }\nkernel void attr(device float* o [[buffer(0)]], uint i [[thread_position_in_grid]]) { o[i] = f(1.0f); }\n")},
		"types.metal":     {Data: []byte(head + "kernel void types(device float* o [[buffer(0)]], uint i [[thread_position_in_grid]]) { o[i] = erf(1.0f); }\n")},
		"strict.metal":    {Data: []byte(head + "kernel void strict(device float* o [[buffer(0)]], uint i [[thread_position_in_grid]]) { double x = 1; o[i] = x; }\n")},
	}})
	require.NoError(t, err)
	defer d.Close()
	errs := d.Errors()
	require.Len(t, errs, 3)
	assert.Contains(t, errs["attribute.metal"].Error(), "attribute.metal:3")
	assert.Contains(t, errs["attribute.metal"].Error(), "unknown attribute 'fast_path'")
	assert.Contains(t, errs["types.metal"].Error(), "erf", "Metal has no erf, so the shim has none")
	assert.Contains(t, errs["strict.metal"].Error(), "double")
	assert.Equal(t, []string{"good"}, d.Kernels())
	err = d.Dispatch(launch1D("attr", 1, 1))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "unknown attribute", "a kernel of a failed file names the failure")
}
