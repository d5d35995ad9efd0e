package kerneltest

import (
	"math"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/metal"
)

// RunDenseKernels runs the checks of the dense-model training kernels: reductions,
// softmax and cross-entropy, norms, RoPE, activations, embedding, transposed
// products, flash attention and AdamW, each forward and backward against a Go
// reference in float64 (or, where the kernel promises it, bit for bit).
func RunDenseKernels(t *testing.T, d metal.Compute) {
	t.Run("ReduceRows", func(t *testing.T) { ReduceRows(t, d) })
	t.Run("ReduceCols", func(t *testing.T) { ReduceCols(t, d) })
	t.Run("LogSoftmax", func(t *testing.T) { LogSoftmax(t, d) })
	t.Run("SoftmaxBackward", func(t *testing.T) { SoftmaxBackward(t, d) })
	t.Run("CrossEntropy", func(t *testing.T) { CrossEntropy(t, d) })
	t.Run("RMSNorm", func(t *testing.T) { Norm(t, d, false) })
	t.Run("LayerNorm", func(t *testing.T) { Norm(t, d, true) })
	t.Run("RoPE", func(t *testing.T) { RoPE(t, d) })
	t.Run("Activations", func(t *testing.T) { Activations(t, d) })
	t.Run("Map", func(t *testing.T) { Map(t, d) })
	t.Run("SwiGLU", func(t *testing.T) { SwiGLU(t, d) })
	t.Run("Embedding", func(t *testing.T) { Embedding(t, d) })
	t.Run("MatMulTransposed", func(t *testing.T) { MatMulTransposed(t, d) })
	t.Run("MatMulBatched", func(t *testing.T) { MatMulBatched(t, d) })
	t.Run("FlashAttention", func(t *testing.T) { FlashAttention(t, d) })
	t.Run("AdamW", func(t *testing.T) { AdamW(t, d) })
	t.Run("DenseEmptySizes", func(t *testing.T) { DenseEmptySizes(t, d) })
	t.Run("DenseBadLaunches", func(t *testing.T) { DenseBadLaunches(t, d) })
}

// UploadInt32 returns a new device buffer holding xs.
func UploadInt32(t testing.TB, d metal.Compute, xs []int32) *metal.Buffer {
	t.Helper()
	b, err := d.NewBuffer(4 * len(xs))
	require.NoError(t, err)
	if len(xs) > 0 {
		copy(unsafe.Slice((*int32)(b.Pointer()), len(xs)), xs)
	}
	return b
}

// f64 widens xs.
func f64(xs []float32) []float64 {
	out := make([]float64, len(xs))
	for i, v := range xs {
		out[i] = float64(v)
	}
	return out
}

// release releases every buffer.
func release(bs ...*metal.Buffer) {
	for _, b := range bs {
		b.Release()
	}
}

// DenseEmptySizes checks that zero-sized work launches nothing and fails nothing.
func DenseEmptySizes(t *testing.T, d metal.Compute) {
	a := Empty(t, d, 4)
	defer a.Release()
	ids := UploadInt32(t, d, []int32{0, 0, 0, 0})
	defer ids.Release()
	assert.NoError(t, metal.RunReduceRows(d, metal.ReduceSum, a, a, 0, 3))
	assert.NoError(t, metal.RunLogSoftmax(d, a, a, 0, 3))
	assert.NoError(t, metal.RunSoftmaxBackward(d, a, a, a, 3, 0))
	assert.NoError(t, metal.RunCrossEntropy(d, a, a, a, ids, 0, 5, metal.CrossEntropyConfig{Ignore: -100}))
	assert.NoError(t, metal.RunRMSNorm(d, a, a, a, nil, 0, 4, 1e-5))
	assert.NoError(t, metal.RunRoPE(d, a, ids, 0, 3, 2, 4, metal.RoPEConfig{}))
	assert.NoError(t, metal.RunActivation(d, metal.ActSiLU, a, a, 0))
	assert.NoError(t, metal.RunSwiGLU(d, a, a, a, 0))
	assert.NoError(t, metal.RunEmbedding(d, a, a, ids, 0, 1, 4))
	assert.NoError(t, metal.RunMatMulT(d, a, a, a, 0, 2, 2, true, true))
	assert.NoError(t, metal.RunAdamW(d, a, a, a, a, 0, metal.AdamWStep{LR: 1, BC1: 1, BC2: 1}))
	assert.NoError(t, metal.RunFlashAttention(d, a, a, a, a, a, metal.Attention{Batch: 0, QLen: 3, KLen: 3, QHeads: 1, KVHeads: 1, HeadDim: 4, VDim: 4}))

	// Column sums of no rows are zeros; the mean of nothing is NaN.
	out := Upload(t, d, []float32{1, 2, 3})
	defer out.Release()
	require.NoError(t, metal.RunReduceCols(d, metal.ReduceSum, out, a, 0, 3))
	assert.Equal(t, []float32{0, 0, 0}, Download(out, 3))
	require.NoError(t, metal.RunReduceCols(d, metal.ReduceMean, out, a, 0, 3))
	for _, v := range Download(out, 3) {
		assert.True(t, math.IsNaN(float64(v)))
	}

	// Embedding gradient with no tokens: a zero table, or the table unchanged.
	table := Upload(t, d, []float32{1, 2, 3, 4})
	defer table.Release()
	require.NoError(t, metal.RunEmbeddingBackward(d, table, a, ids, 0, 2, 2, true))
	assert.Equal(t, []float32{1, 2, 3, 4}, Download(table, 4))
	require.NoError(t, metal.RunEmbeddingBackward(d, table, a, ids, 0, 2, 2, false))
	assert.Equal(t, []float32{0, 0, 0, 0}, Download(table, 4))

	// Attention with no queries: the key gradients are zero; with no keys, every
	// row sees nothing: zero output, lse −Inf, zero dq.
	att := metal.Attention{Batch: 1, QLen: 0, KLen: 1, QHeads: 1, KVHeads: 1, HeadDim: 2, VDim: 2}
	dk, dv := Upload(t, d, []float32{5, 5}), Upload(t, d, []float32{5, 5})
	defer release(dk, dv)
	require.NoError(t, metal.RunFlashAttentionBackward(d, a, dk, dv, a, ids, ids, a, a, a, att))
	assert.Equal(t, []float32{0, 0}, Download(dk, 2))
	assert.Equal(t, []float32{0, 0}, Download(dv, 2))
	att = metal.Attention{Batch: 1, QLen: 2, KLen: 0, QHeads: 1, KVHeads: 1, HeadDim: 2, VDim: 2}
	o, lse, dq := Empty(t, d, 4), Empty(t, d, 2), Empty(t, d, 4)
	defer release(o, lse, dq)
	require.NoError(t, metal.RunFlashAttention(d, o, lse, ids, a, a, att))
	assert.Equal(t, []float32{0, 0, 0, 0}, Download(o, 4))
	assert.Equal(t, []float32{float32(math.Inf(-1)), float32(math.Inf(-1))}, Download(lse, 2))
	require.NoError(t, metal.RunFlashAttentionBackward(d, dq, a, a, ids, a, a, o, ids, lse, att))
	assert.Equal(t, []float32{0, 0, 0, 0}, Download(dq, 4))
	require.NoError(t, d.Synchronize())
}

// DenseBadLaunches checks that calls the kernels cannot run come back as errors
// (the caller then uses the CPU).
func DenseBadLaunches(t *testing.T, d metal.Compute) {
	small := Empty(t, d, 3)
	big := Empty(t, d, 4096)
	ids := UploadInt32(t, d, []int32{0, 5, 1})
	defer release(small, big, ids)
	assert.Error(t, metal.RunReduceRows(d, metal.ReduceOp(9), big, big, 2, 2), "unknown reduction")
	assert.Error(t, metal.RunReduceCols(d, metal.ReduceSum, small, big, 2, 4), "out too small")
	assert.Error(t, metal.RunCrossEntropy(d, big, big, big, ids, 3, 4, metal.CrossEntropyConfig{Smoothing: 2}), "smoothing > 1")
	assert.Error(t, metal.RunRMSNorm(d, big, big, big, small, 2, 4, 1e-5), "weight too short")
	assert.Error(t, metal.RunRoPE(d, big, big, 1, 2, 2, 6, metal.RoPEConfig{Dims: 3}), "odd rotated dims")
	assert.Error(t, metal.RunRoPE(d, big, big, 1, 1, 1, 512, metal.RoPEConfig{}), "over 256 rotated dims")
	assert.Error(t, metal.RunRoPE(d, big, big, 1, 2, 2, 4, metal.RoPEConfig{Offset: 1 << 24}), "position past 2²⁴")
	assert.Error(t, metal.RunRoPE(d, big, big, 1, 2, 2, 4, metal.RoPEConfig{}), "in place")
	assert.Error(t, metal.RunActivation(d, metal.ActivationOp(7), big, big, 3), "unknown activation")
	assert.Error(t, metal.RunEmbeddingBackward(d, big, big, ids, 3, 4, 2, false), "id 5 outside the vocabulary")
	assert.Error(t, metal.RunMatMulT(d, small, big, big, 2, 2, 2, true, false), "c too small")
	att := metal.Attention{Batch: 1, QLen: 2, KLen: 2, QHeads: 3, KVHeads: 2, HeadDim: 4, VDim: 4}
	assert.Error(t, metal.RunFlashAttention(d, big, big, big, big, big, att), "3 query heads for 2 kv heads")
	att = metal.Attention{Batch: 1, QLen: 2, KLen: 2, QHeads: 1, KVHeads: 1, HeadDim: 256, VDim: 4}
	assert.Error(t, metal.RunFlashAttention(d, big, big, big, big, big, att), "head dim over 128")
	require.NoError(t, d.Synchronize())
}
