// Package quant holds affine group-wise quantization in MLX's layout and the
// quantized linear and embedding layers with their kernels.
package quant
