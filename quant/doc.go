// Package quant holds affine group-wise quantization in MLX's layout and the
// quantized linear and embedding layers with their kernels.
//
// # Format
//
// A float matrix (rows, cols) is quantized along its rows in groups of
// GroupSize (32, 64 or 128) consecutive weights, each weight an unsigned
// integer q of Bits (2, 3, 4, 5, 6 or 8) bits, each group with a scale and a
// bias: w ≈ scale·q + bias. [Quantize] follows MLX's affine_quantize exactly
// (float32 arithmetic, round half to even, the scale's sign and the bias chosen
// from the group's end of larger magnitude; see its documentation), and each
// row's q values are packed as one little-endian bit stream into uint32 words
// ([Pack], [Unpack]). A [Weight] holds the three tensors MLX saves as
// "<module>.weight" (uint32), "<module>.scales" and "<module>.biases"; [Config]
// is config.json's "quantization" with per-module overrides.
//
// # Kernels
//
// [MatMulT] computes x·Wᵀ through the "quantized_matmul" op of metal.Kernels:
// for a few rows of x (decoding), AVX2 kernels unpack the weights in registers
// and factor each group's contribution as scale·Σx·q + bias·Σx; for batches,
// tiles of W are dequantized (AVX2) and multiplied with gemm.Sgemm; Go row
// kernels cover other CPUs, and a float64 reference the tests. [MatMul] is the
// input gradient g·W; [Gather] the embedding lookup. Weights are frozen: the
// layers differentiate with respect to their input only, which is what LoRA
// on a quantized base (QLoRA) needs.
//
// # Layers
//
// [QuantizeLinear] and [QuantizeEmbedding] put a [Weight] in place of a
// layers.Linear's or layers.Embedding's float weight (their Packed field), and
// [Experts] stands in for an advanced.MoE's stacked expert projections;
// models.Model.Quantize does it for a whole model and records the layout in
// its config, from which models.New rebuilds it.
package quant
