//go:build amd64

#include "textflag.h"

// Offsets of the constants in ·geluK (32 bytes each).
#define ABS    0
#define ISQ2   32
#define ERFP   64
#define ONE    96
#define A5     128
#define A4     160
#define A3     192
#define A2     224
#define A1     256
#define SIGN   288
#define LOW    320
#define LOG2E  352
#define LN2HI  384
#define LN2LO  416
#define C6     448
#define C5     480
#define C4     512
#define C3     544
#define HALF   576
#define BIAS   608

// func geluAVX2(y, d, x, b *float32, n int)
TEXT ·geluAVX2(SB), NOSPLIT, $0-40
	MOVQ y+0(FP), DI
	MOVQ d+8(FP), SI
	MOVQ x+16(FP), DX
	MOVQ b+24(FP), R8
	MOVQ n+32(FP), CX
	LEAQ ·geluK(SB), AX
	LEAQ ·geluK2(SB), R9
	SHRQ $3, CX
	JZ   done

loop:
	VMOVUPS (DX), Y0               // x
	TESTQ   R8, R8
	JZ      nobias
	VADDPS  (R8), Y0, Y0           // x + b
	ADDQ    $32, R8

nobias:
	VANDPS      ABS(AX), Y0, Y1     // |x|
	VMULPS      ISQ2(AX), Y1, Y1    // a = |x|/√2
	VMOVUPS     ERFP(AX), Y2
	VFMADD213PS ONE(AX), Y1, Y2     // 1 + p·a
	VMOVUPS     ONE(AX), Y3
	VDIVPS      Y2, Y3, Y2          // t
	VMOVUPS     A5(AX), Y3
	VFMADD213PS A4(AX), Y2, Y3
	VFMADD213PS A3(AX), Y2, Y3
	VFMADD213PS A2(AX), Y2, Y3
	VFMADD213PS A1(AX), Y2, Y3
	VMULPS      Y2, Y3, Y3          // poly

	VMULPS      Y1, Y1, Y4
	VXORPS      SIGN(AX), Y4, Y4    // u = −a²
	VMAXPS      LOW(AX), Y4, Y4
	VMULPS      LOG2E(AX), Y4, Y5
	VROUNDPS    $0, Y5, Y5          // n
	VMOVAPS     Y4, Y6
	VFNMADD231PS LN2HI(AX), Y5, Y6
	VFNMADD231PS LN2LO(AX), Y5, Y6  // r
	VMOVUPS     C6(AX), Y7
	VFMADD213PS C5(AX), Y6, Y7
	VFMADD213PS C4(AX), Y6, Y7
	VFMADD213PS C3(AX), Y6, Y7
	VFMADD213PS HALF(AX), Y6, Y7
	VFMADD213PS ONE(AX), Y6, Y7
	VFMADD213PS ONE(AX), Y6, Y7     // e^r
	VCVTPS2DQ   Y5, Y5
	VPADDD      BIAS(AX), Y5, Y5
	VPSLLD      $23, Y5, Y5
	VMULPS      Y5, Y7, Y7          // e = e^(−a²)

	VMULPS      Y7, Y3, Y3
	VMULPS      HALF(AX), Y3, Y3    // tail = Φ(−|x|)
	VMOVUPS     ONE(AX), Y8
	VSUBPS      Y3, Y8, Y8          // 1 − tail
	VBLENDVPS   Y0, Y3, Y8, Y8      // Φ(x): tail where x < 0
	VMULPS      Y8, Y0, Y9          // y = x·Φ(x)
	VMULPS      Y7, Y0, Y10         // x·e
	VFMADD132PS (R9), Y8, Y10       // d = x·e/√(2π) + Φ(x)
	VMOVUPS     Y9, (DI)
	VMOVUPS     Y10, (SI)
	ADDQ        $32, DX
	ADDQ        $32, DI
	ADDQ        $32, SI
	DECQ        CX
	JNZ         loop

done:
	VZEROUPPER
	RET

// func modelsCPUID(leaf, sub uint32) (eax, ebx, ecx, edx uint32)
TEXT ·modelsCPUID(SB), NOSPLIT, $0-24
	MOVL leaf+0(FP), AX
	MOVL sub+4(FP), CX
	CPUID
	MOVL AX, eax+8(FP)
	MOVL BX, ebx+12(FP)
	MOVL CX, ecx+16(FP)
	MOVL DX, edx+20(FP)
	RET

// func modelsXGETBV() (eax, edx uint32)
TEXT ·modelsXGETBV(SB), NOSPLIT, $0-8
	MOVL $0, CX
	XGETBV
	MOVL AX, eax+0(FP)
	MOVL DX, edx+4(FP)
	RET

// func mulSumAVX2(dst, sum, a, b *float32, n int)
//
// dst[i] = a[i]·b[i] and sum[i] += dst[i] for i < n (a multiple of 8).
TEXT ·mulSumAVX2(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ sum+8(FP), SI
	MOVQ a+16(FP), DX
	MOVQ b+24(FP), R8
	MOVQ n+32(FP), CX
	SHRQ $3, CX
	JZ   mdone

mloop:
	VMOVUPS (DX), Y0
	VMULPS  (R8), Y0, Y0
	VMOVUPS Y0, (DI)
	VADDPS  (SI), Y0, Y1
	VMOVUPS Y1, (SI)
	ADDQ    $32, DI
	ADDQ    $32, SI
	ADDQ    $32, DX
	ADDQ    $32, R8
	DECQ    CX
	JNZ     mloop

mdone:
	VZEROUPPER
	RET

// func addToAVX2(dst, src *float32, n int)
//
// dst[i] += src[i] for i < n (a multiple of 8).
TEXT ·addToAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $3, CX
	JZ   adone

aloop:
	VMOVUPS (DI), Y0
	VADDPS  (SI), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, DI
	ADDQ    $32, SI
	DECQ    CX
	JNZ     aloop

adone:
	VZEROUPPER
	RET
