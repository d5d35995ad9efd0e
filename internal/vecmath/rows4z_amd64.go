package vecmath

import "golang.org/x/sys/cpu"

// avx512VL adds AVX-512 VL to AVX512: the four-row kernels of rows4z_amd64.s
// use the upper sixteen registers at 8 lanes.
var avx512VL = cpu.X86.HasAVX512VL

//go:noescape
func softmaxRows4AVX512(s *float32, lds, n int, m, sum *[4]float32)

//go:noescape
func gradPDeltaRows4AVX512(p, ds *float32, lds, n int, delta *[4]float32, scale float32)

//go:noescape
func scaleRows4AVX512(dst *float32, ldd int, src *float32, lds, n int, a *[4]float32)

// rows4Z reports whether the AVX-512 four-row kernels run for rows of n.
func rows4Z(n int) bool { return n > 0 && n%8 == 0 && AVX2FMA && AVX512 && avx512VL }
