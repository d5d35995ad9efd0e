#include "textflag.h"

// Row dot products of the quantized matvec, AVX2 + FMA. For one row of a
// quantized matrix they return
//
//	Σ_g scales[g]·(Σ_j x[j]·q[j] over group g) + Σ_g biases[g]·xsums[g]
//
// groups ≥ 1 groups of groupSize (a multiple of 32) values each.

// func q4DotAVX(x, scales, biases, xsums *float32, w *uint32, groups, groupSize int) float32
// x is permuted: in each run of 16 values, the 8 at even offsets come first,
// then the 8 at odd offsets, the order in which a byte's low and high nibbles
// come out of the packed words.
TEXT ·q4DotAVX(SB), NOSPLIT, $0-60
	MOVQ x+0(FP), DI
	MOVQ scales+8(FP), R8
	MOVQ biases+16(FP), R9
	MOVQ xsums+24(FP), R10
	MOVQ w+32(FP), SI
	MOVQ groups+40(FP), CX
	MOVQ groupSize+48(FP), DX
	SHRQ $5, DX
	MOVL $15, AX
	VMOVD AX, X15
	VPBROADCASTD X15, Y15
	VXORPS Y14, Y14, Y14
	VXORPS X13, X13, X13

q4group:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	MOVQ DX, BX

q4inner:
	VPMOVZXBD (SI), Y4
	VPMOVZXBD 8(SI), Y6
	VPSRLD $4, Y4, Y5
	VPSRLD $4, Y6, Y7
	VPAND Y15, Y4, Y4
	VPAND Y15, Y6, Y6
	VCVTDQ2PS Y4, Y4
	VCVTDQ2PS Y5, Y5
	VCVTDQ2PS Y6, Y6
	VCVTDQ2PS Y7, Y7
	VFMADD231PS (DI), Y4, Y0
	VFMADD231PS 32(DI), Y5, Y1
	VFMADD231PS 64(DI), Y6, Y2
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ $16, SI
	ADDQ $128, DI
	DECQ BX
	JNZ  q4inner

	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	VBROADCASTSS (R8), Y8
	VFMADD231PS Y8, Y0, Y14
	VMOVSS (R9), X9
	VFMADD231SS (R10), X9, X13
	ADDQ $4, R8
	ADDQ $4, R9
	ADDQ $4, R10
	DECQ CX
	JNZ  q4group

	VEXTRACTF128 $1, Y14, X0
	VADDPS X0, X14, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VADDSS X13, X0, X0
	VZEROUPPER
	MOVSS X0, ret+56(FP)
	RET

// func q8DotAVX(x, scales, biases, xsums *float32, w *uint32, groups, groupSize int) float32
// x is in natural order.
TEXT ·q8DotAVX(SB), NOSPLIT, $0-60
	MOVQ x+0(FP), DI
	MOVQ scales+8(FP), R8
	MOVQ biases+16(FP), R9
	MOVQ xsums+24(FP), R10
	MOVQ w+32(FP), SI
	MOVQ groups+40(FP), CX
	MOVQ groupSize+48(FP), DX
	SHRQ $5, DX
	VXORPS Y14, Y14, Y14
	VXORPS X13, X13, X13

q8group:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	MOVQ DX, BX

q8inner:
	VPMOVZXBD (SI), Y4
	VPMOVZXBD 8(SI), Y5
	VPMOVZXBD 16(SI), Y6
	VPMOVZXBD 24(SI), Y7
	VCVTDQ2PS Y4, Y4
	VCVTDQ2PS Y5, Y5
	VCVTDQ2PS Y6, Y6
	VCVTDQ2PS Y7, Y7
	VFMADD231PS (DI), Y4, Y0
	VFMADD231PS 32(DI), Y5, Y1
	VFMADD231PS 64(DI), Y6, Y2
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ $32, SI
	ADDQ $128, DI
	DECQ BX
	JNZ  q8inner

	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	VBROADCASTSS (R8), Y8
	VFMADD231PS Y8, Y0, Y14
	VMOVSS (R9), X9
	VFMADD231SS (R10), X9, X13
	ADDQ $4, R8
	ADDQ $4, R9
	ADDQ $4, R10
	DECQ CX
	JNZ  q8group

	VEXTRACTF128 $1, Y14, X0
	VADDPS X0, X14, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VADDSS X13, X0, X0
	VZEROUPPER
	MOVSS X0, ret+56(FP)
	RET

// shifts of the eight nibbles of a word, for VPSRLVD
DATA q4shifts<>+0(SB)/4, $0
DATA q4shifts<>+4(SB)/4, $4
DATA q4shifts<>+8(SB)/4, $8
DATA q4shifts<>+12(SB)/4, $12
DATA q4shifts<>+16(SB)/4, $16
DATA q4shifts<>+20(SB)/4, $20
DATA q4shifts<>+24(SB)/4, $24
DATA q4shifts<>+28(SB)/4, $28
GLOBL q4shifts<>(SB), RODATA|NOPTR, $32

// func q4DequantAVX(dst *float32, w *uint32, scales, biases *float32, groups, groupSize int)
// dst[j] = scale·q[j] + bias (one rounding: FMA), natural order.
TEXT ·q4DequantAVX(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ w+8(FP), SI
	MOVQ scales+16(FP), R8
	MOVQ biases+24(FP), R9
	MOVQ groups+32(FP), CX
	MOVQ groupSize+40(FP), DX
	SHRQ $4, DX
	MOVL $15, AX
	VMOVD AX, X15
	VPBROADCASTD X15, Y15
	VMOVDQU q4shifts<>(SB), Y14

d4group:
	VBROADCASTSS (R8), Y12
	VBROADCASTSS (R9), Y13
	MOVQ DX, BX

d4inner:
	VPBROADCASTD (SI), Y0
	VPBROADCASTD 4(SI), Y1
	VPSRLVD Y14, Y0, Y0
	VPSRLVD Y14, Y1, Y1
	VPAND Y15, Y0, Y0
	VPAND Y15, Y1, Y1
	VCVTDQ2PS Y0, Y0
	VCVTDQ2PS Y1, Y1
	VFMADD213PS Y13, Y12, Y0
	VFMADD213PS Y13, Y12, Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ $8, SI
	ADDQ $64, DI
	DECQ BX
	JNZ  d4inner

	ADDQ $4, R8
	ADDQ $4, R9
	DECQ CX
	JNZ  d4group
	VZEROUPPER
	RET

// func q8DequantAVX(dst *float32, w *uint32, scales, biases *float32, groups, groupSize int)
TEXT ·q8DequantAVX(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ w+8(FP), SI
	MOVQ scales+16(FP), R8
	MOVQ biases+24(FP), R9
	MOVQ groups+32(FP), CX
	MOVQ groupSize+40(FP), DX
	SHRQ $4, DX

d8group:
	VBROADCASTSS (R8), Y12
	VBROADCASTSS (R9), Y13
	MOVQ DX, BX

d8inner:
	VPMOVZXBD (SI), Y0
	VPMOVZXBD 8(SI), Y1
	VCVTDQ2PS Y0, Y0
	VCVTDQ2PS Y1, Y1
	VFMADD213PS Y13, Y12, Y0
	VFMADD213PS Y13, Y12, Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ $16, SI
	ADDQ $64, DI
	DECQ BX
	JNZ  d8inner

	ADDQ $4, R8
	ADDQ $4, R9
	DECQ CX
	JNZ  d8group
	VZEROUPPER
	RET

// Any width (2…8 bits), eight values at a time: a run of eight values takes
// `bits` bytes; values 0–3 come out of the dword at the run's start, values 4–7
// out of the dword at byte hiOff, each shifted right by its entry of shifts and
// masked. The loads reach up to 3 bytes past a run, so the caller keeps the
// last run of the matrix away from here.

// func qnDotAVX(x, scales, biases, xsums *float32, w *byte, shifts *uint32, groups, groupSize, bits, hiOff, mask int) float32
TEXT ·qnDotAVX(SB), NOSPLIT, $0-92
	MOVQ x+0(FP), DI
	MOVQ scales+8(FP), R8
	MOVQ biases+16(FP), R9
	MOVQ xsums+24(FP), R10
	MOVQ w+32(FP), SI
	MOVQ shifts+40(FP), AX
	VMOVDQU (AX), Y14
	MOVQ groups+48(FP), CX
	MOVQ groupSize+56(FP), DX
	SHRQ $5, DX
	MOVQ bits+64(FP), R11
	MOVQ hiOff+72(FP), R12
	MOVQ mask+80(FP), AX
	VMOVD AX, X15
	VPBROADCASTD X15, Y15
	VXORPS Y12, Y12, Y12
	VXORPS X13, X13, X13

qngroup:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	MOVQ DX, BX

qninner:
	VPBROADCASTD (SI), X4
	VPBROADCASTD (SI)(R12*1), X8
	ADDQ R11, SI
	VPBROADCASTD (SI), X5
	VPBROADCASTD (SI)(R12*1), X9
	ADDQ R11, SI
	VPBROADCASTD (SI), X6
	VPBROADCASTD (SI)(R12*1), X10
	ADDQ R11, SI
	VPBROADCASTD (SI), X7
	VPBROADCASTD (SI)(R12*1), X11
	ADDQ R11, SI
	VINSERTI128 $1, X8, Y4, Y4
	VINSERTI128 $1, X9, Y5, Y5
	VINSERTI128 $1, X10, Y6, Y6
	VINSERTI128 $1, X11, Y7, Y7
	VPSRLVD Y14, Y4, Y4
	VPSRLVD Y14, Y5, Y5
	VPSRLVD Y14, Y6, Y6
	VPSRLVD Y14, Y7, Y7
	VPAND Y15, Y4, Y4
	VPAND Y15, Y5, Y5
	VPAND Y15, Y6, Y6
	VPAND Y15, Y7, Y7
	VCVTDQ2PS Y4, Y4
	VCVTDQ2PS Y5, Y5
	VCVTDQ2PS Y6, Y6
	VCVTDQ2PS Y7, Y7
	VFMADD231PS (DI), Y4, Y0
	VFMADD231PS 32(DI), Y5, Y1
	VFMADD231PS 64(DI), Y6, Y2
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ $128, DI
	DECQ BX
	JNZ  qninner

	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	VBROADCASTSS (R8), Y8
	VFMADD231PS Y8, Y0, Y12
	VMOVSS (R9), X9
	VFMADD231SS (R10), X9, X13
	ADDQ $4, R8
	ADDQ $4, R9
	ADDQ $4, R10
	DECQ CX
	JNZ  qngroup

	VEXTRACTF128 $1, Y12, X0
	VADDPS X0, X12, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VADDSS X13, X0, X0
	VZEROUPPER
	MOVSS X0, ret+88(FP)
	RET

// func qnDequantAVX(dst *float32, w *byte, scales, biases *float32, shifts *uint32, groups, groupSize, bits, hiOff, mask int)
TEXT ·qnDequantAVX(SB), NOSPLIT, $0-80
	MOVQ dst+0(FP), DI
	MOVQ w+8(FP), SI
	MOVQ scales+16(FP), R8
	MOVQ biases+24(FP), R9
	MOVQ shifts+32(FP), AX
	VMOVDQU (AX), Y14
	MOVQ groups+40(FP), CX
	MOVQ groupSize+48(FP), DX
	SHRQ $3, DX
	MOVQ bits+56(FP), R11
	MOVQ hiOff+64(FP), R12
	MOVQ mask+72(FP), AX
	VMOVD AX, X15
	VPBROADCASTD X15, Y15

dngroup:
	VBROADCASTSS (R8), Y12
	VBROADCASTSS (R9), Y13
	MOVQ DX, BX

dninner:
	VPBROADCASTD (SI), X0
	VPBROADCASTD (SI)(R12*1), X1
	ADDQ R11, SI
	VINSERTI128 $1, X1, Y0, Y0
	VPSRLVD Y14, Y0, Y0
	VPAND Y15, Y0, Y0
	VCVTDQ2PS Y0, Y0
	VFMADD213PS Y13, Y12, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, DI
	DECQ BX
	JNZ  dninner

	ADDQ $4, R8
	ADDQ $4, R9
	DECQ CX
	JNZ  dngroup
	VZEROUPPER
	RET

// Four rows of x against one weight row at a time: the weights are unpacked
// once and serve four FMAs. x points at four rows (permuted as for q4DotAVX in
// q4Dot4AVX, natural in q8Dot4AVX) xstride bytes apart; xsums4 holds the four
// rows' group sums, group by group; out receives the four dot products.

// func q4Dot4AVX(x, scales, biases, xsums4 *float32, w *uint32, out *float32, xstride, groups, groupSize int)
TEXT ·q4Dot4AVX(SB), NOSPLIT, $0-72
	MOVQ x+0(FP), DI
	MOVQ scales+8(FP), R8
	MOVQ biases+16(FP), R9
	MOVQ xsums4+24(FP), R10
	MOVQ w+32(FP), SI
	MOVQ xstride+48(FP), R13
	LEAQ (R13)(R13*2), R14
	MOVQ groups+56(FP), CX
	MOVQ groupSize+64(FP), DX
	SHRQ $4, DX
	MOVL $15, AX
	VMOVD AX, X15
	VPBROADCASTD X15, Y15
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	VXORPS X12, X12, X12

q44group:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	MOVQ DX, BX

q44inner:
	VPMOVZXBD (SI), Y13
	VPSRLD $4, Y13, Y14
	VPAND Y15, Y13, Y13
	VCVTDQ2PS Y13, Y13
	VCVTDQ2PS Y14, Y14
	VFMADD231PS (DI), Y13, Y0
	VFMADD231PS 32(DI), Y14, Y1
	VFMADD231PS (DI)(R13*1), Y13, Y2
	VFMADD231PS 32(DI)(R13*1), Y14, Y3
	VFMADD231PS (DI)(R13*2), Y13, Y4
	VFMADD231PS 32(DI)(R13*2), Y14, Y5
	VFMADD231PS (DI)(R14*1), Y13, Y6
	VFMADD231PS 32(DI)(R14*1), Y14, Y7
	ADDQ $8, SI
	ADDQ $64, DI
	DECQ BX
	JNZ  q44inner

	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y5, Y4, Y4
	VADDPS Y7, Y6, Y6
	VBROADCASTSS (R8), Y13
	VFMADD231PS Y13, Y0, Y8
	VFMADD231PS Y13, Y2, Y9
	VFMADD231PS Y13, Y4, Y10
	VFMADD231PS Y13, Y6, Y11
	VBROADCASTSS (R9), X14
	VFMADD231PS (R10), X14, X12
	ADDQ $4, R8
	ADDQ $4, R9
	ADDQ $16, R10
	DECQ CX
	JNZ  q44group
	MOVQ out+40(FP), AX
	VEXTRACTF128 $1, Y8, X13
	VADDPS X13, X8, X8
	VEXTRACTF128 $1, Y9, X13
	VADDPS X13, X9, X9
	VEXTRACTF128 $1, Y10, X13
	VADDPS X13, X10, X10
	VEXTRACTF128 $1, Y11, X13
	VADDPS X13, X11, X11
	VHADDPS X9, X8, X8
	VHADDPS X11, X10, X10
	VHADDPS X10, X8, X8
	VADDPS X12, X8, X8
	VMOVUPS X8, (AX)
	VZEROUPPER
	RET

// func q8Dot4AVX(x, scales, biases, xsums4 *float32, w *uint32, out *float32, xstride, groups, groupSize int)
TEXT ·q8Dot4AVX(SB), NOSPLIT, $0-72
	MOVQ x+0(FP), DI
	MOVQ scales+8(FP), R8
	MOVQ biases+16(FP), R9
	MOVQ xsums4+24(FP), R10
	MOVQ w+32(FP), SI
	MOVQ xstride+48(FP), R13
	LEAQ (R13)(R13*2), R14
	MOVQ groups+56(FP), CX
	MOVQ groupSize+64(FP), DX
	SHRQ $4, DX
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	VXORPS X12, X12, X12

q84group:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	MOVQ DX, BX

q84inner:
	VPMOVZXBD (SI), Y13
	VPMOVZXBD 8(SI), Y14
	VCVTDQ2PS Y13, Y13
	VCVTDQ2PS Y14, Y14
	VFMADD231PS (DI), Y13, Y0
	VFMADD231PS 32(DI), Y14, Y1
	VFMADD231PS (DI)(R13*1), Y13, Y2
	VFMADD231PS 32(DI)(R13*1), Y14, Y3
	VFMADD231PS (DI)(R13*2), Y13, Y4
	VFMADD231PS 32(DI)(R13*2), Y14, Y5
	VFMADD231PS (DI)(R14*1), Y13, Y6
	VFMADD231PS 32(DI)(R14*1), Y14, Y7
	ADDQ $16, SI
	ADDQ $64, DI
	DECQ BX
	JNZ  q84inner

	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y5, Y4, Y4
	VADDPS Y7, Y6, Y6
	VBROADCASTSS (R8), Y13
	VFMADD231PS Y13, Y0, Y8
	VFMADD231PS Y13, Y2, Y9
	VFMADD231PS Y13, Y4, Y10
	VFMADD231PS Y13, Y6, Y11
	VBROADCASTSS (R9), X14
	VFMADD231PS (R10), X14, X12
	ADDQ $4, R8
	ADDQ $4, R9
	ADDQ $16, R10
	DECQ CX
	JNZ  q84group

	MOVQ out+40(FP), AX
	VEXTRACTF128 $1, Y8, X13
	VADDPS X13, X8, X8
	VEXTRACTF128 $1, Y9, X13
	VADDPS X13, X9, X9
	VEXTRACTF128 $1, Y10, X13
	VADDPS X13, X10, X10
	VEXTRACTF128 $1, Y11, X13
	VADDPS X13, X11, X11
	VHADDPS X9, X8, X8
	VHADDPS X11, X10, X10
	VHADDPS X10, X8, X8
	VADDPS X12, X8, X8
	VMOVUPS X8, (AX)
	VZEROUPPER
	RET
