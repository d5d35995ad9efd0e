#include "textflag.h"

// Float32 selective-scan kernels on AVX2 + FMA, 8 states per step; n (the state
// size) is a multiple of 8 and rows ≥ 1. They compute what ssmFwdBlockGo,
// ssmRecBlockGo and ssmBackBlockGo compute, with fused multiply-adds and
// lane-wise partial sums, so results agree with the Go loops to rounding.

// Each constant repeated over the 8 lanes.
#define SPLAT(name, off, bits) \
	DATA name+(off+0)(SB)/4, bits; DATA name+(off+4)(SB)/4, bits; \
	DATA name+(off+8)(SB)/4, bits; DATA name+(off+12)(SB)/4, bits; \
	DATA name+(off+16)(SB)/4, bits; DATA name+(off+20)(SB)/4, bits; \
	DATA name+(off+24)(SB)/4, bits; DATA name+(off+28)(SB)/4, bits

SPLAT(expc<>, 0, $0x42b00000)   // 88: larger arguments saturate
SPLAT(expc<>, 32, $0xc2ae0000)  // -87: smaller ones give e^-87 (about 1.6e-38)
SPLAT(expc<>, 64, $0x3fb8aa3b)  // log2(e)
SPLAT(expc<>, 96, $0x3f318000)  // ln2 high part, 355/512
SPLAT(expc<>, 128, $0xb95e8083) // ln2 low part
SPLAT(expc<>, 160, $0x39500d01) // 1/5040
SPLAT(expc<>, 192, $0x3ab60b61) // 1/720
SPLAT(expc<>, 224, $0x3c088889) // 1/120
SPLAT(expc<>, 256, $0x3d2aaaab) // 1/24
SPLAT(expc<>, 288, $0x3e2aaaab) // 1/6
SPLAT(expc<>, 320, $0x3f000000) // 1/2
SPLAT(expc<>, 352, $0x3f800000) // 1 (also the bits of 2^0)
GLOBL expc<>(SB), RODATA|NOPTR, $384

// EXP8 replaces Y0 by e^Y0 lane-wise (the method of expRow32, NaN kept, the
// polynomial in Estrin's form for a shorter dependency chain), using Y1, Y2,
// Y3, Y8 and Y9.
#define EXP8 \
	VMOVUPS      expc<>+0(SB), Y1;       \
	VMINPS       Y0, Y1, Y0;             \
	VMOVUPS      expc<>+32(SB), Y1;      \
	VMAXPS       Y0, Y1, Y0;             \
	VMULPS       expc<>+64(SB), Y0, Y1;  \
	VROUNDPS     $0, Y1, Y1;             \
	VFNMADD231PS expc<>+96(SB), Y1, Y0;  \
	VFNMADD231PS expc<>+128(SB), Y1, Y0; \
	VMULPS       Y0, Y0, Y2;             \
	VMOVUPS      expc<>+160(SB), Y3;     \
	VFMADD213PS  expc<>+192(SB), Y0, Y3; \
	VMOVUPS      expc<>+224(SB), Y8;     \
	VFMADD213PS  expc<>+256(SB), Y0, Y8; \
	VFMADD213PS  Y8, Y2, Y3;             \
	VMOVUPS      expc<>+288(SB), Y8;     \
	VFMADD213PS  expc<>+320(SB), Y0, Y8; \
	VADDPS       expc<>+352(SB), Y0, Y9; \
	VFMADD213PS  Y9, Y2, Y8;             \
	VMULPS       Y2, Y2, Y2;             \
	VFMADD213PS  Y8, Y2, Y3;             \
	VCVTPS2DQ    Y1, Y1;                 \
	VPSLLD       $23, Y1, Y1;            \
	VPADDD       expc<>+352(SB), Y1, Y1; \
	VMULPS       Y1, Y3, Y0

// func ssmFwdAVX(h, a, bt, ct, dt, x, y *float32, rows, n int)
//
// For each of rows channels j: h[j] ← exp(dt[j]·a[j])∘h[j] + dt[j]·x[j]·bt and
// y[j] = ⟨ct, h[j]⟩; h and a are rows×n, bt and ct n long.
TEXT ·ssmFwdAVX(SB), NOSPLIT, $0-72
	MOVQ h+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ bt+16(FP), R8
	MOVQ ct+24(FP), R9
	MOVQ dt+32(FP), R10
	MOVQ x+40(FP), R11
	MOVQ y+48(FP), R12
	MOVQ rows+56(FP), CX
	MOVQ n+64(FP), DX
	SHLQ $2, DX

fwdRow:
	VBROADCASTSS (R10), Y4
	VMULSS       (R11), X4, X5
	VBROADCASTSS X5, Y5
	VXORPS       Y6, Y6, Y6
	XORQ         BX, BX

fwdStep:
	VMULPS      (SI)(BX*1), Y4, Y0
	EXP8
	VMULPS      (DI)(BX*1), Y0, Y0
	VFMADD231PS (R8)(BX*1), Y5, Y0
	VMOVUPS     Y0, (DI)(BX*1)
	VFMADD231PS (R9)(BX*1), Y0, Y6
	ADDQ        $32, BX
	CMPQ        BX, DX
	JLT         fwdStep

	VEXTRACTF128 $1, Y6, X7
	VADDPS       X7, X6, X6
	VHADDPS      X6, X6, X6
	VHADDPS      X6, X6, X6
	VMOVSS       X6, (R12)
	ADDQ         DX, DI
	ADDQ         DX, SI
	ADDQ         $4, R10
	ADDQ         $4, R11
	ADDQ         $4, R12
	DECQ         CX
	JNZ          fwdRow
	VZEROUPPER
	RET

// func ssmRecAVX(prev, cur, e, a, bt, dt, x *float32, rows, n int)
//
// For each channel j: e[j] ← exp(dt[j]·a[j]) and cur[j] ← e[j]∘prev[j] +
// dt[j]·x[j]·bt (cur may be prev).
TEXT ·ssmRecAVX(SB), NOSPLIT, $0-72
	MOVQ prev+0(FP), DI
	MOVQ cur+8(FP), R12
	MOVQ e+16(FP), R13
	MOVQ a+24(FP), SI
	MOVQ bt+32(FP), R8
	MOVQ dt+40(FP), R10
	MOVQ x+48(FP), R11
	MOVQ rows+56(FP), CX
	MOVQ n+64(FP), DX
	SHLQ $2, DX

recRow:
	VBROADCASTSS (R10), Y4
	VMULSS       (R11), X4, X5
	VBROADCASTSS X5, Y5
	XORQ         BX, BX

recStep:
	VMULPS      (SI)(BX*1), Y4, Y0
	EXP8
	VMOVUPS     Y0, (R13)(BX*1)
	VMULPS      (DI)(BX*1), Y0, Y0
	VFMADD231PS (R8)(BX*1), Y5, Y0
	VMOVUPS     Y0, (R12)(BX*1)
	ADDQ        $32, BX
	CMPQ        BX, DX
	JLT         recStep

	ADDQ DX, DI
	ADDQ DX, R12
	ADDQ DX, R13
	ADDQ DX, SI
	ADDQ $4, R10
	ADDQ $4, R11
	DECQ CX
	JNZ  recRow
	VZEROUPPER
	RET

// func ssmBackAVX(mu, prev, e, a, dA, bt, ct, pb, pc, gy, dt, x, dskip, ddt, dx, dD *float32, rows, n int)
//
// One adjoint step for each channel j, with cur = e∘prev + Δ·x·bt recomputed
// (Δ = dt[j], x = x[j], g = g[j]):
//
//	λ = mu + g·ct;  pc += g·cur;  s = λ∘e∘prev;  dA += Δ·s;  pb += Δ·x·λ;  mu ← e∘λ
//	ddt[j] = ⟨s, a⟩ + x·⟨λ, bt⟩;  dx[j] = Δ·⟨λ, bt⟩ + g·dskip[j];  dD[j] += g·x
TEXT ·ssmBackAVX(SB), NOSPLIT, $0-144
	MOVQ mu+0(FP), DI
	MOVQ prev+8(FP), SI
	MOVQ e+16(FP), R8
	MOVQ a+24(FP), R9
	MOVQ dA+32(FP), R10
	MOVQ bt+40(FP), R11
	MOVQ ct+48(FP), R12
	MOVQ pb+56(FP), R13
	MOVQ pc+64(FP), R14
	MOVQ n+136(FP), DX
	SHLQ $2, DX
	XORQ CX, CX

backRow:
	MOVQ         gy+72(FP), AX
	VBROADCASTSS (AX)(CX*4), Y8  // g
	MOVQ         dt+80(FP), AX
	VBROADCASTSS (AX)(CX*4), Y9  // Δ
	MOVQ         x+88(FP), AX
	VMULSS       (AX)(CX*4), X9, X10
	VBROADCASTSS X10, Y10        // Δ·x
	VXORPS       Y11, Y11, Y11   // Σ s·a
	VXORPS       Y12, Y12, Y12   // Σ λ·bt
	XORQ         BX, BX

backStep:
	VMOVUPS     (R8)(BX*1), Y0
	VMOVUPS     (SI)(BX*1), Y1
	VMOVUPS     (R11)(BX*1), Y2
	VMULPS      Y1, Y0, Y3
	VFMADD231PS Y2, Y10, Y3
	VMOVUPS     (R14)(BX*1), Y4
	VFMADD231PS Y3, Y8, Y4
	VMOVUPS     Y4, (R14)(BX*1)
	VMULPS      (R12)(BX*1), Y8, Y5
	VADDPS      (DI)(BX*1), Y5, Y5
	VMULPS      Y5, Y0, Y6
	VMOVUPS     Y6, (DI)(BX*1)
	VMULPS      Y1, Y6, Y6
	VMOVUPS     (R10)(BX*1), Y7
	VFMADD231PS Y6, Y9, Y7
	VMOVUPS     Y7, (R10)(BX*1)
	VFMADD231PS (R9)(BX*1), Y6, Y11
	VFMADD231PS Y2, Y5, Y12
	VMOVUPS     (R13)(BX*1), Y7
	VFMADD231PS Y5, Y10, Y7
	VMOVUPS     Y7, (R13)(BX*1)
	ADDQ        $32, BX
	CMPQ        BX, DX
	JLT         backStep

	VEXTRACTF128 $1, Y11, X13
	VADDPS       X13, X11, X11
	VHADDPS      X11, X11, X11
	VHADDPS      X11, X11, X11
	VEXTRACTF128 $1, Y12, X13
	VADDPS       X13, X12, X12
	VHADDPS      X12, X12, X12
	VHADDPS      X12, X12, X12
	MOVQ         x+88(FP), AX
	VMOVSS       (AX)(CX*4), X13      // x
	VFMADD231SS  X13, X12, X11        // ⟨s, a⟩ + x·⟨λ, bt⟩
	MOVQ         ddt+104(FP), AX
	VMOVSS       X11, (AX)(CX*4)
	MOVQ         dD+120(FP), AX
	VMOVSS       (AX)(CX*4), X14
	VFMADD231SS  X13, X8, X14         // dD + g·x
	VMOVSS       X14, (AX)(CX*4)
	MOVQ         dskip+96(FP), AX
	VMULSS       (AX)(CX*4), X8, X13  // g·dskip
	VFMADD231SS  X12, X9, X13         // + Δ·⟨λ, bt⟩
	MOVQ         dx+112(FP), AX
	VMOVSS       X13, (AX)(CX*4)
	ADDQ         DX, DI
	ADDQ         DX, SI
	ADDQ         DX, R8
	ADDQ         DX, R9
	ADDQ         DX, R10
	INCQ         CX
	CMPQ         CX, rows+128(FP)
	JLT          backRow
	VZEROUPPER
	RET
