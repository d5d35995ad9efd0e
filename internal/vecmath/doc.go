// Package vecmath holds the float32 row kernels that several packages share: the
// exact (erf) GELU with its derivative, the exponential of the online softmax and
// its gradient, and elementwise sums and products. Each runs in AVX2 + FMA
// assembly on whole groups of 8 where the CPU allows it (the GELU in AVX-512 on
// groups of 16 first, where the CPU has it) and in Go on the rest (and on every
// other CPU); the Go loops compute the same formulas (the GELU's AVX-512 kernel
// its exponential by a table), so the paths agree to rounding.
//
// It also answers, once, which vector instructions the CPU and OS support
// (AVX2FMA, AVX512, AVX), so that no package carries its own CPUID.
//
// The package imports nothing of ours: every layer may use it.
package vecmath
