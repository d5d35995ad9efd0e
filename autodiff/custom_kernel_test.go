package autodiff_test

import (
	"github.com/mlxtrain/mlxtrain/internal/simtest"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// sqReLUWant is an independent reference of the example's op and its gradient.
func sqReLUWant(x, g []float64, s float64) (y, dx []float64) {
	y, dx = make([]float64, len(x)), make([]float64, len(x))
	for i, v := range x {
		if v > 0 {
			y[i] = s * v * v
			dx[i] = g[i] * 2 * s * v
		}
	}
	return y, dx
}

// TestCustomOp checks the op on whatever path the process has (the reference on
// the CPU; the kernel with MLXTRAIN_DEVICE=sim and MLXTRAIN_METAL_MIN=0) against
// the independent reference, forward and backward, on odd sizes.
func TestCustomOp(t *testing.T) {
	for _, n := range []int{0, 1, 7, 33, 127, 1000} {
		x := autodiff.Empty(autodiff.Float32, n)
		g := autodiff.Empty(autodiff.Float32, n)
		for i := range n {
			x.Float32s()[i] = float32(math.Sin(float64(i)*1.7) * 2)
			g.Float32s()[i] = float32(math.Cos(float64(i) * 0.3))
		}
		tp := autodiff.NewTape()
		y := tp.Keep(sqReLU.Apply([]float32{0.75}, tp.Watch(x)))
		wantY, wantDX := sqReLUWant(x.Float64Values(), g.Float64Values(), 0.75)
		tp.BackwardWith(y, g) // takes g
		assert.InDeltaSlice(t, wantY, y.Float64Values(), 1e-5, "n=%d", n)
		if n > 0 {
			assert.InDeltaSlice(t, wantDX, tp.Grad(x).Float64Values(), 1e-5, "n=%d", n)
		}
		tp.Release()
	}
}

func TestCustomOpGradCheck(t *testing.T) {
	x := autodiff.FromFloat64([]float64{-1.5, -0.2, 0.3, 0.9, 2.1, -0.7, 1.1}, 7)
	require.NoError(t, autodiff.GradCheck{}.Check(func(in []*autodiff.Tensor) *autodiff.Tensor {
		return sqReLU.Apply([]float32{1.25}, in[0])
	}, x))
}

func TestCustomOpInvalid(t *testing.T) {
	assert.Panics(t, func() { autodiff.NewCustomOp(autodiff.CustomKernel{Name: "x"}) })
	assert.Panics(t, func() {
		autodiff.NewCustomOp(autodiff.CustomKernel{Name: "x", Entry: "mine", Source: "kernel void other()", Reference: func([]float64, [][]float64, []float32) {}})
	})
	x := autodiff.Zeros(autodiff.Float32, 3)
	assert.Panics(t, func() { sqReLU.Apply(make([]float32, 9), x) })
	assert.Panics(t, func() { sqReLU.Apply(nil, autodiff.FromInt32([]int32{1}, 1)) })
}

// Two faulty kernels: one that does not compile, one that computes the wrong
// thing. On a device each must warn and leave the op to the reference.
var (
	copyRef    = func(y []float64, in [][]float64, p []float32) { copy(y, in[0]) }
	badCompile = autodiff.NewCustomOp(autodiff.CustomKernel{
		Name: "test_bad_compile", Entry: "test_bad_compile_f32", Reference: copyRef,
		Source: `kernel void test_bad_compile_f32(const device float* x [[buffer(0)]], device float* y [[buffer(1)]],
    constant custom_params& p [[buffer(2)]], uint i [[thread_position_in_grid]]) { if (i < p.n) { y[i] = x[i] + undefined_name; } }`,
	})
	badResult = autodiff.NewCustomOp(autodiff.CustomKernel{
		Name: "test_bad_result", Entry: "test_bad_result_f32", Reference: copyRef,
		Source: `kernel void test_bad_result_f32(const device float* x [[buffer(0)]], device float* y [[buffer(1)]],
    constant custom_params& p [[buffer(2)]], uint i [[thread_position_in_grid]]) { if (i < p.n) { y[i] = 2.0f * x[i]; } }`,
	})
)

// TestCustomOpDevice runs with an accelerator only (MLXTRAIN_DEVICE=sim or a
// Mac): the op takes its kernel, which passed its self-test.
func TestCustomOpDevice(t *testing.T) {
	if !metal.Offloading() {
		t.Skip("no accelerator: set MLXTRAIN_DEVICE=sim (TestCustomOpOnSimulator does)")
	}
	before := metal.Launches()
	x := autodiff.FromFloat32([]float32{-1, 2, 3}, 3)
	y := sqReLU.Apply([]float32{2}, x)
	assert.Equal(t, []float32{0, 8, 18}, y.Float32s())
	if !sqReLU.Op().OnMetal(3) {
		t.Skip("below the device threshold: set MLXTRAIN_METAL_MIN=0")
	}
	assert.Greater(t, metal.Launches(), before, "the kernel launched")
	for _, name := range []string{"example_sq_relu", "example_sq_relu_grad"} {
		op := metal.Kernels.Op(name)
		require.NotNil(t, op)
		assert.True(t, op.OnMetal(1000), name)
	}
	report := strings.Join(metal.SelfTestReport(metal.Kernels.List()), "\n")
	assert.Contains(t, report, "example_sq_relu: passed")

	var warn strings.Builder
	prev := metal.SetWarnings(&warn)
	defer metal.SetWarnings(prev)
	for _, op := range []*autodiff.CustomOp{badCompile, badResult} {
		y := op.Apply(nil, x)
		assert.Equal(t, []float32{-1, 2, 3}, y.Float32s(), op.Name())
		assert.False(t, op.Op().OnMetal(1000), op.Name())
		assert.Contains(t, warn.String(), op.Name()+": ", op.Name())
	}
	assert.Contains(t, warn.String(), "undefined_name")
	assert.Contains(t, warn.String(), "self-test")
}

// TestCustomOpOnSimulator reruns the example and the device test in a child
// process on the simulator with every threshold at 0: the example must print
// the CPU's losses. It skips without clang unless MLXTRAIN_REQUIRE_CLANG=1.
func TestCustomOpOnSimulator(t *testing.T) {
	simtest.Rerun(t, "ExampleNewCustomOp", "TestCustomOp", "TestCustomOpDevice")
}
