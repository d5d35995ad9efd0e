package quant

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/internal/simtest"
	"github.com/mlxtrain/mlxtrain/metal"
)

// TestQuantDevice runs with an accelerator only (MLXTRAIN_DEVICE=sim or a Mac,
// thresholds at 0): Weight.MatMulT, its input gradient and Gather take the
// quantized kernels for every bit width and agree with the CPU kernels.
func TestQuantDevice(t *testing.T) {
	if !metal.Offloading() {
		t.Skip("no accelerator: set MLXTRAIN_DEVICE=sim (TestQuantOnSimulator does)")
	}
	if !qmmOp.OnMetal(1, 1, 1) {
		t.Skip("below the device thresholds: set MLXTRAIN_METAL_MIN=0")
	}
	r := autodiff.SelfTestRand()
	for _, bits := range ValidBits {
		f := autodiff.RandomTensor(r, -1, 1, 37, 192)
		w, err := QuantizeTensor(Params{GroupSize: 64, Bits: bits}, f)
		f.Release()
		require.NoError(t, err)
		for _, rows := range []int{1, 21} {
			x := autodiff.RandomTensor(r, -1, 1, rows, 192)
			before := metal.Launches()
			tp := autodiff.NewTape()
			y := tp.Keep(w.MatMulT(tp.Watch(x)))
			g := autodiff.RandomTensor(r, -1, 1, rows, 37)
			gs := append([]float32(nil), g.Float32s()...)
			tp.BackwardWith(y, g)
			assert.GreaterOrEqual(t, metal.Launches()-before, int64(2), "bits %d rows %d: forward and backward launched", bits, rows)
			wantY, wantDX := make([]float32, rows*37), make([]float32, rows*192)
			MatMulTPath(metal.PathReference, wantY, x.Float32s(), rows, &w.Matrix)
			MatMul(wantDX, gs, rows, &w.Matrix)
			assert.InDeltaSlice(t, wantY, y.Float32s(), 1e-4, "bits %d rows %d y", bits, rows)
			assert.InDeltaSlice(t, wantDX, tp.Grad(x).Float32s(), 1e-4, "bits %d rows %d dx", bits, rows)
			tp.Release()
			y.Release()
			x.Release()
		}
		ids := autodiff.FromInt32([]int32{36, 0, 5, 5}, 2, 2)
		got := w.Gather(ids)
		want := make([]float32, 4*192)
		Gather(want, &w.Matrix, ids.Int32s())
		assert.Equal(t, want, got.Float32s(), "bits %d gather", bits)
		got.Release()
		ids.Release()
	}
	report := strings.Join(metal.SelfTestReport(metal.Kernels.List()), "\n")
	assert.Contains(t, report, "quantized_matmul: passed")
	assert.Contains(t, report, "quantized_embedding: passed")
}

// TestQuantOnSimulator reruns the layer tests and TestQuantDevice in a child
// process on the simulator with every threshold at 0. It skips without clang
// unless MLXTRAIN_REQUIRE_CLANG=1.
func TestQuantOnSimulator(t *testing.T) {
	simtest.Rerun(t, "TestQuantDevice", "TestExpertsDevice", "TestExpertsGroupedLinear", "TestQuantizedLayers", "TestWeightMatMulTGradCheck", "ExampleQuantizeLinear")
}

// TestExpertsDevice runs with an accelerator only (thresholds at 0):
// Experts.GroupedLinear, its input and bias gradients take the grouped
// kernels for every bit width, with empty experts and a group over several
// tiles, and agree with the CPU kernels expert by expert.
func TestExpertsDevice(t *testing.T) {
	if !metal.Offloading() {
		t.Skip("no accelerator: set MLXTRAIN_DEVICE=sim (TestQuantOnSimulator does)")
	}
	if !groupedOp.OnMetal(1, 1) {
		t.Skip("below the device thresholds: set MLXTRAIN_METAL_MIN=0")
	}
	r := autodiff.SelfTestRand()
	const E, R, C = 4, 21, 128
	for _, bits := range ValidBits {
		for _, offsets := range [][]int{{0, 0, 1, 1, 1}, {0, 7, 7, 40, 41}} {
			f := autodiff.RandomTensor(r, -1, 1, E, R, C)
			x, err := QuantizeExperts(Params{GroupSize: 64, Bits: bits}, f)
			f.Release()
			require.NoError(t, err)
			rows := offsets[E]
			in, b := autodiff.RandomTensor(r, -1, 1, rows, C), autodiff.RandomTensor(r, -1, 1, E, R)
			before := metal.Launches()
			tp := autodiff.NewTape()
			y := tp.Keep(x.GroupedLinear(tp.Watch(in), tp.Watch(b), offsets))
			g := autodiff.RandomTensor(r, -1, 1, rows, R)
			gs := append([]float32(nil), g.Float32s()...)
			tp.BackwardWith(y, g)
			assert.GreaterOrEqual(t, metal.Launches()-before, int64(3), "bits %d: forward and backward launched", bits)
			wantY, wantDX, wantDB := make([]float32, rows*R), make([]float32, rows*C), make([]float32, E*R)
			for e := range E {
				lo, hi := offsets[e], offsets[e+1]
				MatMulTPath(metal.PathReference, wantY[lo*R:hi*R], in.Float32s()[lo*C:hi*C], hi-lo, x.Expert(e))
				addRows(wantY[lo*R:hi*R], b.Float32s()[e*R:(e+1)*R])
				MatMul(wantDX[lo*C:hi*C], gs[lo*R:hi*R], hi-lo, x.Expert(e))
				sumRows(wantDB[e*R:(e+1)*R], gs[lo*R:hi*R])
			}
			what := []any{"bits %d offsets %v", bits, offsets}
			// The offsets from a device tensor: the host's are never asked for.
			off := autodiff.FromInt32(int32s(offsets), E+1)
			y2 := x.GroupedLinearOffsets(in, b, func() []int { t.Error("a device forward asked for the host's offsets"); return offsets }, off)
			assert.Equal(t, y.Float32s(), y2.Float32s(), what...)
			y2.Release()
			off.Release()
			assert.InDeltaSlice(t, wantY, y.Float32s(), 1e-4, what...)
			assert.InDeltaSlice(t, wantDX, tp.Grad(in).Float32s(), 1e-4, what...)
			assert.InDeltaSlice(t, wantDB, tp.Grad(b).Float32s(), 1e-5, what...)
			tp.Release()
			for _, t := range []*autodiff.Tensor{y, in, b, x.Packed, x.Scales, x.Biases} {
				t.Release()
			}
		}
	}
	report := strings.Join(metal.SelfTestReport(metal.Kernels.List()), "\n")
	assert.Contains(t, report, "quantized_grouped_linear: passed")
}
