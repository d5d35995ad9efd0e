package sim

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/internal/kerneltest"
	"github.com/mlxtrain/mlxtrain/metal"
)

func TestAddSource(t *testing.T) {
	requireClang(t)
	d, err := Open()
	require.NoError(t, err)
	defer d.Close()
	src := `kernel void added_twice_f32(device float* y [[buffer(0)]], constant uint& n [[buffer(1)]],
    uint i [[thread_position_in_grid]]) { if (i < n) { y[i] = 2.0f * float(i); } }`
	require.NoError(t, d.AddSource("added", src))
	require.NoError(t, d.AddSource("added", src), "the same source again")
	assert.Error(t, d.AddSource("added", src+"\n"), "another source under the name")
	assert.ErrorContains(t, d.AddSource("again", src), "already defined")
	assert.ErrorContains(t, d.AddSource("builtin", `kernel void binary_f32(device float* y [[buffer(0)]]) {}`), "already defined")
	assert.Error(t, d.AddSource("broken", `kernel void broken_f32(device float* y [[buffer(0)]]) { y[0] = nope; }`))
	assert.ErrorContains(t, d.AddSource("empty", `inline float f(float x) { return x; }`), "no kernel")

	b := kerneltest.Empty(t, d, 5)
	defer b.Release()
	require.NoError(t, d.Dispatch(&metal.Launch{Kernel: "added_twice_f32", Groups: [3]int{1, 1, 1}, Threads: [3]int{8, 1, 1},
		Args: []metal.Arg{metal.Out(0, b), metal.Params(1, uint32(5))}}))
	require.NoError(t, d.Synchronize())
	assert.Equal(t, []float32{0, 2, 4, 6, 8}, kerneltest.Download(b, 5))
	require.NoError(t, metal.AddSource(d, "added", src))
}
