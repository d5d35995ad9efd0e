#include "textflag.h"
#include "rows_amd64.h"

// The float32 row kernels on AVX2 + FMA, 8 lanes a step, and the GELU's also on
// AVX-512, 16 lanes a step. Each computes what its Go loop in kernels.go
// computes, with fused multiply-adds.

// SPLAT repeats a 32-bit constant over the 8 lanes at byte offset off of vconsts,
// the package's table of constants (the exponential's offsets are in rows_amd64.h;
// rows4_amd64.s and rows4z_amd64.s read the table too).
#define SPLAT(off, bits) \
	DATA ·vconsts+(off+0)(SB)/4, bits; DATA ·vconsts+(off+4)(SB)/4, bits; \
	DATA ·vconsts+(off+8)(SB)/4, bits; DATA ·vconsts+(off+12)(SB)/4, bits; \
	DATA ·vconsts+(off+16)(SB)/4, bits; DATA ·vconsts+(off+20)(SB)/4, bits; \
	DATA ·vconsts+(off+24)(SB)/4, bits; DATA ·vconsts+(off+28)(SB)/4, bits

SPLAT(LOW, $0xc2ae999a)    // -87.3: e^x is 0 below
SPLAT(LOG2E, $0x3fb8aa3b)
SPLAT(LN2HI, $0x3f317200)  // ln 2 = LN2HI + LN2LO
SPLAT(LN2LO, $0x35bfbe8e)
SPLAT(C7, $0x39500d01)     // 1/7!
SPLAT(C6, $0x3ab60b61)     // 1/6!
SPLAT(C5, $0x3c088889)     // 1/5!
SPLAT(C4, $0x3d2aaaab)     // 1/4!
SPLAT(C3, $0x3e2aaaab)     // 1/3!
SPLAT(HALF, $0x3f000000)
SPLAT(ONE, $0x3f800000)
SPLAT(BIAS, $127)          // the float32 exponent bias, as integers
SPLAT(ABS, $0x7fffffff)
SPLAT(SIGN, $0x80000000)

// The GELU's (see kernels.go), in the order of their offsets as DATA needs.
#define GSMAX  736
#define GR0    768
#define GR1    800
#define GR2    832
#define GR3    864
#define GQ1    896
#define GQ2    928
#define GQ3    960
#define GNL2E  1024
#define GMAGIC 1056
#define GWLOW  1088
#define GP0    1120
#define GP1    1152
#define GP2    1184
#define GP3    1216
#define GP4    1248
#define GP5    1280

SPLAT(GSMAX, $0x41800000)  // 16
SPLAT(GR0, $0x3fa06c99)    // M = (R0 + R1·s + R2·s² + R3·s³)/(1 + Q1·s + Q2·s² + Q3·s³)
SPLAT(GR1, $0x3eecbfd9)
SPLAT(GR2, $0x3db2504b)
SPLAT(GR3, $0xb9c1a623)
SPLAT(GQ1, $0x3f955aa6)
SPLAT(GQ2, $0x3f001d13)
SPLAT(GQ3, $0x3da738c9)
SPLAT(GNL2E, $0xbf38aa3b)  // −log2(e)/2
SPLAT(GMAGIC, $0x4b400000) // 1.5·2²³
SPLAT(GWLOW, $0xc2f80000)  // −124
SPLAT(GP0, $0x3ecc422b)    // 2^r/√(2π) ≈ P0 + P1·r + … + P5·r⁵ on [−½, ½]
SPLAT(GP1, $0x3e8d94c5)
SPLAT(GP2, $0x3dc444d2)
SPLAT(GP3, $0x3cb567a2)
SPLAT(GP4, $0x3b7cf7c3)
SPLAT(GP5, $0x3a0ad885)

// AVX-512's φ: 2^w = 2^⌊m/32⌋·2^((m mod 32)/32)·2^r for m = round(32·w), r =
// w − m/32 in [−1/64, 1/64]; the middle factor (over √(2π)) from a table of
// 32, 2^r ≈ 1 + r·(GE1 + r·GE2) (minimax, relative error 1.1e-7).
#define GMAG32 1344
#define GE1    1376
#define GE2    1408
#define GTAB   1440

SPLAT(GMAG32, $0x48c00000) // 1.5·2¹⁸: adding it rounds to a multiple of 1/32
SPLAT(GE1, $0x3f3172c2)    // 0.6931573
SPLAT(GE2, $0x3e75fd7a)    // 0.24022475
DATA ·vconsts+1440(SB)/4, $0x3ecc422a // 2^(0/32)/√(2π)
DATA ·vconsts+1444(SB)/4, $0x3ed0bb2b // 2^(1/32)/√(2π)
DATA ·vconsts+1448(SB)/4, $0x3ed54d3f // 2^(2/32)/√(2π)
DATA ·vconsts+1452(SB)/4, $0x3ed9f8f2 // 2^(3/32)/√(2π)
DATA ·vconsts+1456(SB)/4, $0x3edebed4 // 2^(4/32)/√(2π)
DATA ·vconsts+1460(SB)/4, $0x3ee39f77 // 2^(5/32)/√(2π)
DATA ·vconsts+1464(SB)/4, $0x3ee89b71 // 2^(6/32)/√(2π)
DATA ·vconsts+1468(SB)/4, $0x3eedb35d // 2^(7/32)/√(2π)
DATA ·vconsts+1472(SB)/4, $0x3ef2e7d5 // 2^(8/32)/√(2π)
DATA ·vconsts+1476(SB)/4, $0x3ef8397b // 2^(9/32)/√(2π)
DATA ·vconsts+1480(SB)/4, $0x3efda8f2 // 2^(10/32)/√(2π)
DATA ·vconsts+1484(SB)/4, $0x3f019b71 // 2^(11/32)/√(2π)
DATA ·vconsts+1488(SB)/4, $0x3f0471fa // 2^(12/32)/√(2π)
DATA ·vconsts+1492(SB)/4, $0x3f07586b // 2^(13/32)/√(2π)
DATA ·vconsts+1496(SB)/4, $0x3f0a4f1f // 2^(14/32)/√(2π)
DATA ·vconsts+1500(SB)/4, $0x3f0d5670 // 2^(15/32)/√(2π)
DATA ·vconsts+1504(SB)/4, $0x3f106ebb // 2^(16/32)/√(2π)
DATA ·vconsts+1508(SB)/4, $0x3f13985f // 2^(17/32)/√(2π)
DATA ·vconsts+1512(SB)/4, $0x3f16d3bd // 2^(18/32)/√(2π)
DATA ·vconsts+1516(SB)/4, $0x3f1a213a // 2^(19/32)/√(2π)
DATA ·vconsts+1520(SB)/4, $0x3f1d813a // 2^(20/32)/√(2π)
DATA ·vconsts+1524(SB)/4, $0x3f20f426 // 2^(21/32)/√(2π)
DATA ·vconsts+1528(SB)/4, $0x3f247a67 // 2^(22/32)/√(2π)
DATA ·vconsts+1532(SB)/4, $0x3f281469 // 2^(23/32)/√(2π)
DATA ·vconsts+1536(SB)/4, $0x3f2bc29c // 2^(24/32)/√(2π)
DATA ·vconsts+1540(SB)/4, $0x3f2f8571 // 2^(25/32)/√(2π)
DATA ·vconsts+1544(SB)/4, $0x3f335d5b // 2^(26/32)/√(2π)
DATA ·vconsts+1548(SB)/4, $0x3f374ad1 // 2^(27/32)/√(2π)
DATA ·vconsts+1552(SB)/4, $0x3f3b4e4a // 2^(28/32)/√(2π)
DATA ·vconsts+1556(SB)/4, $0x3f3f6844 // 2^(29/32)/√(2π)
DATA ·vconsts+1560(SB)/4, $0x3f43993b // 2^(30/32)/√(2π)
DATA ·vconsts+1564(SB)/4, $0x3f47e1b1 // 2^(31/32)/√(2π)
GLOBL ·vconsts(SB), RODATA|NOPTR, $1568

// func geluAVX2(y, d, x, b *float32, n int)
//
// y[i] = gelu(x[i] + b[i]), d[i] = gelu′(x[i] + b[i]) for i < n, a multiple of
// 8; b nil adds nothing, d nil keeps no derivative; x may be y. The formulas of
// geluGo, with 2ⁿ added to the exponent bits and φ masked to 0 below 2^−124.
TEXT ·geluAVX2(SB), NOSPLIT, $0-40
	MOVQ    y+0(FP), DI
	MOVQ    d+8(FP), SI
	MOVQ    x+16(FP), DX
	MOVQ    b+24(FP), R8
	MOVQ    n+32(FP), CX
	LEAQ    ·vconsts(SB), AX
	VMOVUPS ONE(AX), Y15
	XORQ    R10, R10 // byte offset
	SHRQ    $3, CX
	JZ      gdone

gloop:
	VMOVUPS (DX)(R10*1), Y5 // x
	TESTQ   R8, R8
	JZ      gnobias
	VADDPS  (R8)(R10*1), Y5, Y5

gnobias:
	VANDPS       ABS(AX), Y5, Y6      // |x|
	VMINPS       GSMAX(AX), Y6, Y6    // s = min(|x|, 16) (NaN: 16)
	VMOVUPS      GR3(AX), Y8
	VFMADD213PS  GR2(AX), Y6, Y8
	VMOVUPS      GQ3(AX), Y9
	VFMADD213PS  GQ2(AX), Y6, Y9
	VMULPS       GNL2E(AX), Y6, Y0    // −s·log2(e)/2
	VFMADD213PS  GR1(AX), Y6, Y8
	VFMADD213PS  GQ1(AX), Y6, Y9
	VMULPS       Y6, Y0, Y0           // w = −s²·log2(e)/2
	VFMADD213PS  GR0(AX), Y6, Y8      // numerator
	VFMADD213PS  Y15, Y6, Y9          // denominator
	VCMPPS       $13, GWLOW(AX), Y0, Y4 // w ≥ −124
	VADDPS       GMAGIC(AX), Y0, Y1   // n in the low bits
	VDIVPS       Y9, Y8, Y11          // M
	VSUBPS       GMAGIC(AX), Y1, Y2   // n
	VSUBPS       Y2, Y0, Y0           // r = w − n
	VMOVUPS      GP5(AX), Y3
	VFMADD213PS  GP4(AX), Y0, Y3
	VFMADD213PS  GP3(AX), Y0, Y3
	VFMADD213PS  GP2(AX), Y0, Y3
	VFMADD213PS  GP1(AX), Y0, Y3
	VFMADD213PS  GP0(AX), Y0, Y3      // P(r)
	VPSLLD       $23, Y1, Y1
	VPADDD       Y1, Y3, Y3           // P(r)·2ⁿ
	VANDPS       Y4, Y3, Y3           // φ
	VMULPS       Y3, Y11, Y11         // q = Φ(−|x|)
	VSUBPS       Y11, Y15, Y12        // 1 − q
	VBLENDVPS    Y5, Y11, Y12, Y12    // Φ(x): q where x < 0, else 1 − q
	VMULPS       Y12, Y5, Y13         // x·Φ(x)
	VMOVUPS      Y13, (DI)(R10*1)
	TESTQ        SI, SI
	JZ           gnext
	VFMADD231PS  Y5, Y3, Y12          // Φ(x) + x·φ(x)
	VMOVUPS      Y12, (SI)(R10*1)

gnext:
	ADDQ $32, R10
	DECQ CX
	JNZ  gloop

gdone:
	VZEROUPPER
	RET

// func geluAVX512(y, d, x, b *float32, n int)
//
// geluAVX2 on 16 lanes, n a multiple of 16, two vectors a step (their chains
// interleaved) while 32 remain, then one. AVX-512 computes φ with a table of 32
// in two registers (VPERMI2PS), so that a polynomial of degree 2 does, and
// VSCALEFPS scales by 2ⁿ without the exponent bits or a mask (0 far enough
// below 2^−126: s ≤ 16 keeps w ≥ −185).
TEXT ·geluAVX512(SB), NOSPLIT, $0-40
	MOVQ         y+0(FP), DI
	MOVQ         d+8(FP), SI
	MOVQ         x+16(FP), DX
	MOVQ         b+24(FP), R8
	MOVQ         n+32(FP), CX
	LEAQ         ·vconsts(SB), AX
	VBROADCASTSS ONE(AX), Z15
	VMOVUPS      GTAB(AX), Z28
	VMOVUPS      GTAB+64(AX), Z29
	XORQ         R10, R10 // byte offset
	SHRQ         $4, CX
	JZ           zdone

zpair:
	CMPQ    CX, $2
	JLT     zloop
	VMOVUPS (DX)(R10*1), Z5 // x
	VMOVUPS 64(DX)(R10*1), Z19
	TESTQ   R8, R8
	JZ      zpnobias
	VADDPS  (R8)(R10*1), Z5, Z5
	VADDPS  64(R8)(R10*1), Z19, Z19

zpnobias:
	VANDPS.BCST      ABS(AX), Z5, Z6     // |x|
	VANDPS.BCST      ABS(AX), Z19, Z20
	VMINPS.BCST      GSMAX(AX), Z6, Z6   // s = min(|x|, 16) (NaN: 16)
	VMINPS.BCST      GSMAX(AX), Z20, Z20
	VBROADCASTSS     GR3(AX), Z8
	VBROADCASTSS     GR3(AX), Z21
	VFMADD213PS.BCST GR2(AX), Z6, Z8
	VFMADD213PS.BCST GR2(AX), Z20, Z21
	VBROADCASTSS     GQ3(AX), Z9
	VBROADCASTSS     GQ3(AX), Z22
	VFMADD213PS.BCST GQ2(AX), Z6, Z9
	VFMADD213PS.BCST GQ2(AX), Z20, Z22
	VMULPS.BCST      GNL2E(AX), Z6, Z0   // −s·log2(e)/2
	VMULPS.BCST      GNL2E(AX), Z20, Z16
	VFMADD213PS.BCST GR1(AX), Z6, Z8
	VFMADD213PS.BCST GR1(AX), Z20, Z21
	VFMADD213PS.BCST GQ1(AX), Z6, Z9
	VFMADD213PS.BCST GQ1(AX), Z20, Z22
	VMULPS           Z6, Z0, Z0          // w = −s²·log2(e)/2 ≥ −185
	VMULPS           Z20, Z16, Z16
	VFMADD213PS.BCST GR0(AX), Z6, Z8     // numerator
	VFMADD213PS.BCST GR0(AX), Z20, Z21
	VFMADD213PS      Z15, Z6, Z9         // denominator
	VFMADD213PS      Z15, Z20, Z22
	VADDPS.BCST      GMAG32(AX), Z0, Z1  // m = round(32·w) in the low bits
	VADDPS.BCST      GMAG32(AX), Z16, Z26
	VDIVPS           Z9, Z8, Z11         // M
	VDIVPS           Z22, Z21, Z24
	VSUBPS.BCST      GMAG32(AX), Z1, Z2  // m/32
	VSUBPS.BCST      GMAG32(AX), Z26, Z17
	VPERMI2PS        Z29, Z28, Z1        // 2^((m mod 32)/32)/√(2π)
	VPERMI2PS        Z29, Z28, Z26
	VSUBPS           Z2, Z0, Z0          // r = w − m/32
	VSUBPS           Z17, Z16, Z16
	VBROADCASTSS     GE2(AX), Z7
	VBROADCASTSS     GE2(AX), Z30
	VFMADD213PS.BCST GE1(AX), Z0, Z7     // Q = GE1 + GE2·r
	VFMADD213PS.BCST GE1(AX), Z16, Z30
	VMULPS           Z1, Z0, Z0          // table·r
	VMULPS           Z26, Z16, Z16
	VFMADD213PS      Z1, Z7, Z0          // table·(1 + r·Q)
	VFMADD213PS      Z26, Z30, Z16
	VSCALEFPS        Z2, Z0, Z3          // φ: times 2^⌊m/32⌋ (0 for m/32 < −150)
	VSCALEFPS        Z17, Z16, Z18
	VMULPS           Z3, Z11, Z11        // q = Φ(−|x|)
	VMULPS           Z18, Z24, Z24
	VPTESTNMD.BCST   SIGN(AX), Z5, K1    // x ≥ 0 (sign bit clear)
	VPTESTNMD.BCST   SIGN(AX), Z19, K2
	VSUBPS           Z11, Z15, K1, Z11   // Φ(x): 1 − q there, else q
	VSUBPS           Z24, Z15, K2, Z24
	VMULPS           Z11, Z5, Z13        // x·Φ(x)
	VMULPS           Z24, Z19, Z25
	VMOVUPS          Z13, (DI)(R10*1)
	VMOVUPS          Z25, 64(DI)(R10*1)
	TESTQ            SI, SI
	JZ               zpnext
	VFMADD231PS      Z5, Z3, Z11         // Φ(x) + x·φ(x)
	VFMADD231PS      Z19, Z18, Z24
	VMOVUPS          Z11, (SI)(R10*1)
	VMOVUPS          Z24, 64(SI)(R10*1)

zpnext:
	ADDQ $128, R10
	SUBQ $2, CX
	JNZ  zpair
	JMP  zdone

zloop:
	VMOVUPS (DX)(R10*1), Z5 // x
	TESTQ   R8, R8
	JZ      znobias
	VADDPS  (R8)(R10*1), Z5, Z5

znobias:
	VANDPS.BCST      ABS(AX), Z5, Z6     // |x|
	VMINPS.BCST      GSMAX(AX), Z6, Z6   // s = min(|x|, 16) (NaN: 16)
	VBROADCASTSS     GR3(AX), Z8
	VFMADD213PS.BCST GR2(AX), Z6, Z8
	VBROADCASTSS     GQ3(AX), Z9
	VFMADD213PS.BCST GQ2(AX), Z6, Z9
	VMULPS.BCST      GNL2E(AX), Z6, Z0   // −s·log2(e)/2
	VFMADD213PS.BCST GR1(AX), Z6, Z8
	VFMADD213PS.BCST GQ1(AX), Z6, Z9
	VMULPS           Z6, Z0, Z0          // w = −s²·log2(e)/2 ≥ −185
	VFMADD213PS.BCST GR0(AX), Z6, Z8     // numerator
	VFMADD213PS      Z15, Z6, Z9         // denominator
	VADDPS.BCST      GMAG32(AX), Z0, Z1  // m = round(32·w) in the low bits
	VDIVPS           Z9, Z8, Z11         // M
	VSUBPS.BCST      GMAG32(AX), Z1, Z2  // m/32
	VPERMI2PS        Z29, Z28, Z1        // 2^((m mod 32)/32)/√(2π)
	VSUBPS           Z2, Z0, Z0          // r = w − m/32
	VBROADCASTSS     GE2(AX), Z7
	VFMADD213PS.BCST GE1(AX), Z0, Z7     // Q = GE1 + GE2·r
	VMULPS           Z1, Z0, Z0          // table·r
	VFMADD213PS      Z1, Z7, Z0          // table·(1 + r·Q)
	VSCALEFPS        Z2, Z0, Z3          // φ: times 2^⌊m/32⌋ (0 for m/32 < −150)
	VMULPS           Z3, Z11, Z11        // q = Φ(−|x|)
	VPTESTNMD.BCST   SIGN(AX), Z5, K1    // x ≥ 0 (sign bit clear)
	VSUBPS           Z11, Z15, K1, Z11   // Φ(x): 1 − q there, else q
	VMULPS           Z11, Z5, Z13        // x·Φ(x)
	VMOVUPS          Z13, (DI)(R10*1)
	TESTQ            SI, SI
	JZ               znext
	VFMADD231PS      Z5, Z3, Z11         // Φ(x) + x·φ(x)
	VMOVUPS          Z11, (SI)(R10*1)

znext:
	ADDQ $64, R10
	DECQ CX
	JNZ  zloop

zdone:
	VZEROUPPER
	RET

// func softmaxRowAVX2(s *float32, n int, mOld float32) (m, sum float32)
//
// m = max(mOld, max s), s[j] = e^(s[j] − m), sum = Σ s[j]; n a multiple of 8,
// at least 8.
TEXT ·softmaxRowAVX2(SB), NOSPLIT, $0-32
	MOVQ         s+0(FP), DI
	MOVQ         n+8(FP), CX
	LEAQ         ·vconsts(SB), AX
	SHRQ         $3, CX
	VBROADCASTSS mOld+16(FP), Y5
	MOVQ         DI, SI
	MOVQ         CX, DX

smax:
	VMAXPS (SI), Y5, Y5
	ADDQ   $32, SI
	DECQ   DX
	JNZ    smax
	HREDUCE(VMAXPS, Y5, X5)
	VBROADCASTSS X5, Y5 // m
	VMOVSS       X5, m+24(FP)
	VXORPS       Y6, Y6, Y6 // sum

sexp:
	VMOVUPS (DI), Y0
	VSUBPS  Y5, Y0, Y0
	EXP
	VMOVUPS Y1, (DI)
	VADDPS  Y1, Y6, Y6
	ADDQ    $32, DI
	DECQ    CX
	JNZ     sexp
	HREDUCE(VADDPS, Y6, X6)
	VMOVSS  X6, sum+28(FP)
	VZEROUPPER
	RET

// func softmaxGradRowAVX2(p, ds *float32, n int, lse, delta, scale float32)
//
// p[j] = e^(p[j] − lse), ds[j] = p[j]·(ds[j] − delta)·scale; n a multiple of 8,
// at least 8.
TEXT ·softmaxGradRowAVX2(SB), NOSPLIT, $0-36
	MOVQ         p+0(FP), DI
	MOVQ         ds+8(FP), SI
	MOVQ         n+16(FP), CX
	LEAQ         ·vconsts(SB), AX
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

// func dotAVX2(x, y *float32, n int) float32
//
// Σ x[i]·y[i] for i < n, a nonzero multiple of 8, in two lane-wise partial sums.
TEXT ·dotAVX2(SB), NOSPLIT, $0-28
	MOVQ   x+0(FP), SI
	MOVQ   y+8(FP), DI
	MOVQ   n+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	SHRQ   $3, CX

dpair:
	CMPQ        CX, $2
	JLT         dlast
	VMOVUPS     (SI), Y2
	VFMADD231PS (DI), Y2, Y0
	VMOVUPS     32(SI), Y3
	VFMADD231PS 32(DI), Y3, Y1
	ADDQ        $64, SI
	ADDQ        $64, DI
	SUBQ        $2, CX
	JMP         dpair

dlast:
	TESTQ       CX, CX
	JZ          dsum
	VMOVUPS     (SI), Y2
	VFMADD231PS (DI), Y2, Y0

dsum:
	VADDPS  Y1, Y0, Y0
	HREDUCE(VADDPS, Y0, X0)
	VMOVSS  X0, ret+24(FP)
	VZEROUPPER
	RET

// func scaleAVX2(dst, x *float32, n int, a float32)
//
// dst[i] = a·x[i] for i < n (a multiple of 8).
TEXT ·scaleAVX2(SB), NOSPLIT, $0-28
	MOVQ         dst+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS a+24(FP), Y1
	SHRQ         $3, CX
	JZ           sdone

sloop:
	VMULPS  (SI), Y1, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, DI
	ADDQ    $32, SI
	DECQ    CX
	JNZ     sloop

sdone:
	VZEROUPPER
	RET

// func addScaledAVX2(dst, x *float32, n int, a float32)
//
// dst[i] += a·x[i] for i < n (a multiple of 8), one fused multiply-add each.
TEXT ·addScaledAVX2(SB), NOSPLIT, $0-28
	MOVQ         dst+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS a+24(FP), Y1
	SHRQ         $3, CX
	JZ           xdone

xloop:
	VMOVUPS     (DI), Y0
	VFMADD231PS (SI), Y1, Y0
	VMOVUPS     Y0, (DI)
	ADDQ        $32, DI
	ADDQ        $32, SI
	DECQ        CX
	JNZ         xloop

xdone:
	VZEROUPPER
	RET

// func prefetchAVX(p *float32, n int)
//
// PREFETCHT0 on every 64-byte line of p[:n] (n > 0).
TEXT ·prefetchAVX(SB), NOSPLIT, $0-16
	MOVQ p+0(FP), SI
	MOVQ n+8(FP), CX
	LEAQ (SI)(CX*4), DX

ploop:
	PREFETCHT0 (SI)
	ADDQ       $64, SI
	CMPQ       SI, DX
	JB         ploop
	RET
