//go:build darwin

package mtl

import (
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/internal/kerneltest"
	"github.com/mlxtrain/mlxtrain/metal"
)

// open returns the GPU or fails: on a Mac the tests are meant to exercise it.
func open(t *testing.T) *Device {
	t.Helper()
	d, err := Open()
	require.NoError(t, err, "Metal device (Apple Silicon and macOS 14 or later are needed)")
	f := d.Facts()
	t.Logf("%s: Apple%d, unified memory %v, working set %d MiB, threadgroup memory %d, threads per group %d, MSL %s",
		f.Name, f.Family, f.UnifiedMemory, f.WorkingSet>>20, f.MaxThreadgroupMemory, f.MaxThreadsPerGroup, f.LanguageVersion)
	require.Empty(t, d.Errors(), "every shader must compile")
	return d
}

func TestDeviceFacts(t *testing.T) {
	d := open(t)
	defer d.Close()
	f := d.Facts()
	assert.Equal(t, "3.1", f.LanguageVersion, "the language version is set and read back")
	assert.NotEmpty(t, f.Name)
	assert.GreaterOrEqual(t, f.Family, 7, "Apple Silicon is Apple7 or later")
	assert.True(t, f.UnifiedMemory)
	assert.GreaterOrEqual(t, f.MaxThreadgroupMemory, 32<<10)
	assert.GreaterOrEqual(t, f.MaxThreadsPerGroup, 1024)
	assert.Equal(t, 32, f.SIMDWidth)
}

func TestKernelsOnTheGPU(t *testing.T) {
	d := open(t)
	defer d.Close()
	kerneltest.RunKernels(t, d)
}

func TestRegisteredAsTheMetalDevice(t *testing.T) {
	c, err := metal.OpenCompute(metal.DeviceMetal)
	require.NoError(t, err)
	assert.Equal(t, metal.DeviceMetal, c.Kind())
	require.NoError(t, c.(*Device).Close())
}

// TestShaderErrorsAreErrors checks that a shader that does not compile disables
// its own kernels with an error and leaves the others running.
func TestShaderErrorsAreErrors(t *testing.T) {
	head := "#include <metal_stdlib>\nusing namespace metal;\n"
	d, err := OpenWith(Options{Sources: fstest.MapFS{
		"good.metal": {Data: []byte(head + "kernel void good(device float* o [[buffer(0)]], uint i [[thread_position_in_grid]]) { o[i] = 2.0f; }\n")},
		"bad.metal":  {Data: []byte(head + "kernel void bad(device float* o [[buffer(0)]], uint i [[thread_position_in_grid]]) { o[i] = nosuch(1.0f); }\n")},
	}})
	require.NoError(t, err)
	defer d.Close()
	require.Contains(t, d.Errors(), "bad.metal")
	out := kerneltest.Empty(t, d, 4)
	defer out.Release()
	err = d.Dispatch(&metal.Launch{Kernel: "bad", Groups: [3]int{1, 1, 1}, Threads: [3]int{4, 1, 1}, Args: []metal.Arg{metal.Out(0, out)}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "bad.metal")
	require.NoError(t, d.Dispatch(&metal.Launch{Kernel: "good", Groups: [3]int{1, 1, 1}, Threads: [3]int{4, 1, 1}, Args: []metal.Arg{metal.Out(0, out)}}))
	assert.Equal(t, []float32{2, 2, 2, 2}, kerneltest.Download(out, 4))
	require.NoError(t, d.Synchronize())

	_, err = OpenWith(Options{Sources: fstest.MapFS{"bad.metal": {Data: []byte("kernel void k(")}}})
	assert.Error(t, err, "no kernel at all compiles: Open fails and the caller uses the CPU")
}
