// Package layers holds the Module notion with named parameters and the building
// blocks of language models: Linear, Embedding, RMSNorm and LayerNorm, MLP and
// SwiGLU, Dropout and LoRA adapters, with fused kernels where they pay.
package layers
