//go:build amd64

#include "textflag.h"

#define LOW   0
#define LOG2E 32
#define LN2HI 64
#define LN2LO 96
#define C6    128
#define C5    160
#define C4    192
#define C3    224
#define HALF  256
#define ONE   288
#define BIAS  320

// EXP sets Y1 = e^(Y0) for lanes with Y0 ≤ 0 (0 where Y0 < −87.3), using Y2-Y4.
#define EXP \
	VCMPPS       $5, LOW(AX), Y0, Y4 \
	VMAXPS       LOW(AX), Y0, Y0     \
	VMULPS       LOG2E(AX), Y0, Y2   \
	VROUNDPS     $0, Y2, Y2 \
	VFNMADD231PS LN2HI(AX), Y2, Y0   \
	VFNMADD231PS LN2LO(AX), Y2, Y0 \
	VMOVUPS      C6(AX), Y1          \
	VFMADD213PS  C5(AX), Y0, Y1      \
	VFMADD213PS  C4(AX), Y0, Y1      \
	VFMADD213PS  C3(AX), Y0, Y1      \
	VFMADD213PS  HALF(AX), Y0, Y1    \
	VFMADD213PS  ONE(AX), Y0, Y1     \
	VFMADD213PS  ONE(AX), Y0, Y1 \
	VCVTPS2DQ    Y2, Y2              \
	VPADDD       BIAS(AX), Y2, Y2    \
	VPSLLD       $23, Y2, Y2         \
	VMULPS       Y2, Y1, Y1          \
	VANDPS       Y4, Y1, Y1

// HREDUCE reduces the 8 lanes of Y reg into the low lane of X reg with op.
#define HREDUCE(op, Y, X) \
	VEXTRACTF128 $1, Y, X15 \
	op           X15, X, X  \
	VPERMILPS    $0x4e, X, X15 \
	op           X15, X, X  \
	VPERMILPS    $0xb1, X, X15 \
	op           X15, X, X

// func softmaxRowAVX2(s *float32, n int, mOld float32) (m, sum float32)
TEXT ·softmaxRowAVX2(SB), NOSPLIT, $0-32
	MOVQ         s+0(FP), DI
	MOVQ         n+8(FP), CX
	LEAQ         ·tileK(SB), AX
	SHRQ         $3, CX
	VBROADCASTSS mOld+16(FP), Y5
	MOVQ         DI, SI
	MOVQ         CX, DX

maxloop:
	VMAXPS (SI), Y5, Y5
	ADDQ   $32, SI
	DECQ   DX
	JNZ    maxloop
	HREDUCE(VMAXPS, Y5, X5)
	VBROADCASTSS X5, Y5           // m
	VMOVSS       X5, m+24(FP)
	VXORPS       Y6, Y6, Y6       // sum

exploop:
	VMOVUPS (DI), Y0
	VSUBPS  Y5, Y0, Y0
	EXP
	VMOVUPS Y1, (DI)
	VADDPS  Y1, Y6, Y6
	ADDQ    $32, DI
	DECQ    CX
	JNZ     exploop
	HREDUCE(VADDPS, Y6, X6)
	VMOVSS  X6, sum+28(FP)
	VZEROUPPER
	RET

// func gradRowAVX2(p, ds *float32, n int, lse, delta, scale float32)
TEXT ·gradRowAVX2(SB), NOSPLIT, $0-36
	MOVQ         p+0(FP), DI
	MOVQ         ds+8(FP), SI
	MOVQ         n+16(FP), CX
	LEAQ         ·tileK(SB), AX
	SHRQ         $3, CX
	VBROADCASTSS lse+24(FP), Y5
	VBROADCASTSS delta+28(FP), Y6
	VBROADCASTSS scale+32(FP), Y7

gradloop:
	VMOVUPS (DI), Y0
	VSUBPS  Y5, Y0, Y0
	EXP
	VMOVUPS Y1, (DI)
	VMOVUPS (SI), Y3
	VSUBPS  Y6, Y3, Y3
	VMULPS  Y7, Y1, Y1
	VMULPS  Y3, Y1, Y1
	VMOVUPS Y1, (SI)
	ADDQ    $32, DI
	ADDQ    $32, SI
	DECQ    CX
	JNZ     gradloop
	VZEROUPPER
	RET

// func attnCPUID(leaf, sub uint32) (eax, ebx, ecx, edx uint32)
TEXT ·attnCPUID(SB), NOSPLIT, $0-24
	MOVL leaf+0(FP), AX
	MOVL sub+4(FP), CX
	CPUID
	MOVL AX, eax+8(FP)
	MOVL BX, ebx+12(FP)
	MOVL CX, ecx+16(FP)
	MOVL DX, edx+20(FP)
	RET

// func attnXGETBV() (eax, edx uint32)
TEXT ·attnXGETBV(SB), NOSPLIT, $0-8
	MOVL $0, CX
	XGETBV
	MOVL AX, eax+0(FP)
	MOVL DX, edx+4(FP)
	RET
