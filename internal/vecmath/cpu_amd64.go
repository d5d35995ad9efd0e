package vecmath

import "golang.org/x/sys/cpu"

// AVX2FMA reports that the CPU has AVX2 and FMA and that the OS saves the YMM
// registers: the assembly kernels of this and other packages need all three.
var AVX2FMA = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// AVX reports AVX with the YMM registers saved by the OS.
var AVX = cpu.X86.HasAVX
