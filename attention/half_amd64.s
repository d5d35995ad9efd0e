//go:build amd64

#include "textflag.h"

// func halfToFloat32F16C(dst *float32, src *uint16, n int)
// n is a positive multiple of 8.
TEXT ·halfToFloat32F16C(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
h2f:
	VCVTPH2PS (SI), Y0
	VMOVUPS   Y0, (DI)
	ADDQ      $16, SI
	ADDQ      $32, DI
	SUBQ      $8, CX
	JNZ       h2f
	VZEROUPPER
	RET

// func float32ToHalfF16C(dst *uint16, src *float32, n int)
// n is a positive multiple of 8; rounds to nearest even.
TEXT ·float32ToHalfF16C(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
f2h:
	VMOVUPS   (SI), Y0
	VCVTPS2PH $0, Y0, (DI)
	ADDQ      $32, SI
	ADDQ      $16, DI
	SUBQ      $8, CX
	JNZ       f2h
	VZEROUPPER
	RET

// func halfRowsToFloat32F16C(dst *float32, src *uint16, rows, d, stride int)
// dst is rows×d contiguous; src rows are stride elements apart; d is a positive
// multiple of 8, rows ≥ 1.
TEXT ·halfRowsToFloat32F16C(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ rows+16(FP), DX
	MOVQ d+24(FP), R8
	MOVQ stride+32(FP), R9
	SHLQ $1, R9 // stride in bytes
rowloop:
	MOVQ SI, R10
	MOVQ R8, CX
colloop:
	VCVTPH2PS (R10), Y0
	VMOVUPS   Y0, (DI)
	ADDQ      $16, R10
	ADDQ      $32, DI
	SUBQ      $8, CX
	JNZ       colloop
	ADDQ      R9, SI
	DECQ      DX
	JNZ       rowloop
	VZEROUPPER
	RET

// func cpuid1ECX() uint32: ECX of CPUID leaf 1 (the F16C bit is 29).
TEXT ·cpuid1ECX(SB), NOSPLIT, $0-4
	MOVL $1, AX
	MOVL $0, CX
	CPUID
	MOVL CX, ret+0(FP)
	RET
