package vecmath

import "golang.org/x/sys/cpu"

// AVX2FMA reports that the CPU has AVX2 and FMA and that the OS saves the YMM
// registers: the assembly kernels of this and other packages need all three.
var AVX2FMA = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// AVX reports AVX with the YMM registers saved by the OS.
var AVX = cpu.X86.HasAVX

// AVX512 reports AVX-512 F and DQ with the ZMM registers saved by the OS (and
// AVX2FMA): the GELU runs 16 lanes a step then.
var AVX512 = AVX2FMA && cpu.X86.HasAVX512F && cpu.X86.HasAVX512DQ
