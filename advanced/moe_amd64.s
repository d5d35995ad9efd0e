#include "textflag.h"

// The float32 GELU of the experts' hidden layer on AVX2 + FMA, 8 lanes a step:
// what geluRowGo32 computes, with fused multiply-adds and round-to-nearest in
// the exponential's range reduction.

#define SPLAT(off, bits) \
	DATA geluc<>+(off+0)(SB)/4, bits; DATA geluc<>+(off+4)(SB)/4, bits; \
	DATA geluc<>+(off+8)(SB)/4, bits; DATA geluc<>+(off+12)(SB)/4, bits; \
	DATA geluc<>+(off+16)(SB)/4, bits; DATA geluc<>+(off+20)(SB)/4, bits; \
	DATA geluc<>+(off+24)(SB)/4, bits; DATA geluc<>+(off+28)(SB)/4, bits

#define ABS 0
#define ISQ2 32
#define ERFP 64
#define ONE 96
#define A5 128
#define A4 160
#define A3 192
#define A2 224
#define A1 256
#define SIGN 288
#define LOW 320
#define LOG2E 352
#define LN2HI 384
#define LN2LO 416
#define C7 448
#define C6 480
#define C5 512
#define C4 544
#define C3 576
#define HALF 608
#define BIAS 640
#define ISQ2PI 672

SPLAT(ABS, $0x7fffffff)
SPLAT(ISQ2, $0x3f3504f3)   // 1/√2
SPLAT(ERFP, $0x3ea7ba05)   // p of A&S 7.1.26
SPLAT(ONE, $0x3f800000)
SPLAT(A5, $0x3f87dc22)
SPLAT(A4, $0xbfba00e3)
SPLAT(A3, $0x3fb5f0e3)
SPLAT(A2, $0xbe91a98e)
SPLAT(A1, $0x3e827906)
SPLAT(SIGN, $0x80000000)
SPLAT(LOW, $0xc2ae999a)    // -87.3: e^v is e^-87.3 below
SPLAT(LOG2E, $0x3fb8aa3b)
SPLAT(LN2HI, $0x3f317200)  // ln 2 = LN2HI + LN2LO
SPLAT(LN2LO, $0x35bfbe8e)
SPLAT(C7, $0x39500d01)     // 1/7!
SPLAT(C6, $0x3ab60b61)     // 1/6!
SPLAT(C5, $0x3c088889)     // 1/5!
SPLAT(C4, $0x3d2aaaab)     // 1/4!
SPLAT(C3, $0x3e2aaaab)     // 1/3!
SPLAT(HALF, $0x3f000000)
SPLAT(BIAS, $127)          // the float32 exponent bias, as integers
SPLAT(ISQ2PI, $0x3ecc422a) // 1/√(2π)
GLOBL geluc<>(SB), RODATA|NOPTR, $704

// func geluAVX2(y, d, b *float32, n int)
//
// y[i] = gelu(y[i] + b[i]), d[i] = gelu′(y[i] + b[i]) for i < n, a multiple of
// 8; b nil adds nothing, d nil keeps no derivative.
TEXT ·geluAVX2(SB), NOSPLIT, $0-32
	MOVQ y+0(FP), DI
	MOVQ d+8(FP), SI
	MOVQ b+16(FP), DX
	MOVQ n+24(FP), CX
	LEAQ geluc<>(SB), AX
	XORQ R10, R10 // byte offset
	SHRQ $3, CX
	JZ   done

loop:
	VMOVUPS (DI)(R10*1), Y0 // x
	TESTQ   DX, DX
	JZ      nobias
	VADDPS  (DX)(R10*1), Y0, Y0

nobias:
	VANDPS      ABS(AX), Y0, Y1   // |x|
	VMULPS      ISQ2(AX), Y1, Y1  // a = |x|/√2
	VMOVUPS     ERFP(AX), Y2
	VFMADD213PS ONE(AX), Y1, Y2   // 1 + p·a
	VMOVUPS     ONE(AX), Y3
	VDIVPS      Y2, Y3, Y2        // t = 1/(1 + p·a)
	VMOVUPS     A5(AX), Y3
	VFMADD213PS A4(AX), Y2, Y3
	VFMADD213PS A3(AX), Y2, Y3
	VFMADD213PS A2(AX), Y2, Y3
	VFMADD213PS A1(AX), Y2, Y3
	VMULPS      Y2, Y3, Y3        // t·P(t)

	VMULPS Y1, Y1, Y4             // a² = x²/2
	VXORPS SIGN(AX), Y4, Y4       // v = −x²/2
	VMAXPS LOW(AX), Y4, Y4

	// e = e^v: v = k·ln2 + r, e^r by Horner to r⁷, 2^k in the exponent bits.
	VMULPS       LOG2E(AX), Y4, Y5
	VROUNDPS     $0, Y5, Y5        // k
	VMOVAPS      Y4, Y6
	VFNMADD231PS LN2HI(AX), Y5, Y6
	VFNMADD231PS LN2LO(AX), Y5, Y6 // r
	VMOVUPS      C7(AX), Y7
	VFMADD213PS  C6(AX), Y6, Y7
	VFMADD213PS  C5(AX), Y6, Y7
	VFMADD213PS  C4(AX), Y6, Y7
	VFMADD213PS  C3(AX), Y6, Y7
	VFMADD213PS  HALF(AX), Y6, Y7
	VFMADD213PS  ONE(AX), Y6, Y7
	VFMADD213PS  ONE(AX), Y6, Y7   // e^r
	VCVTPS2DQ    Y5, Y5
	VPADDD       BIAS(AX), Y5, Y5
	VPSLLD       $23, Y5, Y5       // 2^k
	VMULPS       Y5, Y7, Y7        // e

	VMULPS    Y7, Y3, Y3          // t·P(t)·e
	VMULPS    HALF(AX), Y3, Y3    // q = Φ(−|x|)
	VMOVUPS   ONE(AX), Y8
	VSUBPS    Y3, Y8, Y8          // 1 − q
	VBLENDVPS Y0, Y3, Y8, Y9      // Φ(x): q where x < 0, else 1 − q
	VMULPS    Y9, Y0, Y10         // x·Φ(x)
	VMOVUPS   Y10, (DI)(R10*1)
	TESTQ     SI, SI
	JZ        next
	VMULPS      Y7, Y0, Y11         // x·e
	VFMADD132PS ISQ2PI(AX), Y9, Y11 // Φ(x) + x·e/√(2π)
	VMOVUPS     Y11, (SI)(R10*1)

next:
	ADDQ $32, R10
	DECQ CX
	JNZ  loop

done:
	VZEROUPPER
	RET
