#include "textflag.h"
#include "rows_amd64.h"

// The four-row softmax kernels (see rows4.go) on AVX2 + FMA. The constants and
// the exponential are those of kernels_amd64.s (Go assembly keeps macros and
// <> symbols to their file), so each lane computes exactly what SoftmaxRow and
// SoftmaxGradRow compute.

// SPLAT repeats a 32-bit constant over the 8 lanes at byte offset off of consts.
#define SPLAT(off, bits) \
	DATA rconsts<>+(off+0)(SB)/4, bits; DATA rconsts<>+(off+4)(SB)/4, bits; \
	DATA rconsts<>+(off+8)(SB)/4, bits; DATA rconsts<>+(off+12)(SB)/4, bits; \
	DATA rconsts<>+(off+16)(SB)/4, bits; DATA rconsts<>+(off+20)(SB)/4, bits; \
	DATA rconsts<>+(off+24)(SB)/4, bits; DATA rconsts<>+(off+28)(SB)/4, bits

#define LOW    0
#define LOG2E  32
#define LN2HI  64
#define LN2LO  96
#define C7     128
#define C6     160
#define C5     192
#define C4     224
#define C3     256
#define HALF   288
#define ONE    320
#define BIAS   352
#define ABS    384
#define SIGN   416
#define ISQ2   448
#define ERFP   480
#define A5     512
#define A4     544
#define A3     576
#define A2     608
#define A1     640
#define ISQ2PI 672
#define TWO    704

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
SPLAT(ISQ2, $0x3f3504f3)   // 1/√2
SPLAT(ERFP, $0x3ea7ba05)   // p of Abramowitz and Stegun 7.1.26
SPLAT(A5, $0x3f87dc22)
SPLAT(A4, $0xbfba00e3)
SPLAT(A3, $0x3fb5f0e3)
SPLAT(A2, $0xbe91a98e)
SPLAT(A1, $0x3e827906)
SPLAT(ISQ2PI, $0x3ecc422a) // 1/√(2π)
SPLAT(TWO, $0x40000000)
GLOBL rconsts<>(SB), RODATA|NOPTR, $736

// EXPBODY sets Y1 = e^Y0 for lanes with −87.3 ≤ Y0 ≤ 0 (e^−87.3, about 1e-38,
// below), with AX at consts: Y0 = n·ln2 + r, e^r by its Taylor polynomial of
// degree 7 in Estrin's form (a shorter chain of dependent operations than
// Horner's), 2ⁿ built in the exponent bits. It uses Y0, Y2 and the six
// temporaries named.
#define EXPBODY(R2, Q0, Q1, Q2, Q3, R4) \
	VMAXPS       LOW(AX), Y0, Y0   \
	VMULPS       LOG2E(AX), Y0, Y2 \
	VROUNDPS     $0, Y2, Y2        \
	VFNMADD231PS LN2HI(AX), Y2, Y0 \
	VFNMADD231PS LN2LO(AX), Y2, Y0 \
	VMULPS       Y0, Y0, R2        \
	VADDPS       ONE(AX), Y0, Q0   \
	VMOVUPS      C3(AX), Q1        \
	VFMADD213PS  HALF(AX), Y0, Q1  \
	VMOVUPS      C5(AX), Q2        \
	VFMADD213PS  C4(AX), Y0, Q2    \
	VMOVUPS      C7(AX), Q3        \
	VFMADD213PS  C6(AX), Y0, Q3    \
	VMULPS       R2, R2, R4        \
	VFMADD213PS  Q2, R2, Q3        \
	VFMADD213PS  Q0, R2, Q1        \
	VFMADD231PS  R4, Q3, Q1        \
	VCVTPS2DQ    Y2, Y2            \
	VPADDD       BIAS(AX), Y2, Y2  \
	VPSLLD       $23, Y2, Y2       \
	VMULPS       Y2, Q1, Y1

// EXP sets Y1 = e^Y0 for lanes with Y0 ≤ 0, exactly 0 where Y0 < −87.3 (−Inf
// and NaN included; see Exp), as the softmax rows need. It uses Y0, Y2, Y4 and
// Y8-Y13.
#define EXP \
	VCMPPS $13, LOW(AX), Y0, Y4         \
	EXPBODY(Y8, Y9, Y10, Y11, Y12, Y13) \
	VANDPS Y4, Y1, Y1

// HREDUCE reduces the 8 lanes of Y reg into the low lane of X reg with op.

// EXPROW(row, moff, msum) does one vector of a row of softmaxRows4AVX2: the 8
// scores at row, less the row's maximum (broadcast from moff(BX)), become their
// exponentials, stored back and added to msum.
#define EXPROW(row, moff, msum) \
	VBROADCASTSS moff(BX), Y3 \
	VMOVUPS      row, Y0      \
	VSUBPS       Y3, Y0, Y0   \
	EXP                       \
	VMOVUPS      Y1, row      \
	VADDPS       Y1, msum, msum

// func softmaxRows4AVX2(s *float32, lds, n int, m, sum *[4]float32)
//
// For rows r < 4 of s (lds floats apart, n floats, n a nonzero multiple of 8):
// m[r] = max(m[r], max row), row[j] = e^(row[j] − m[r]), sum[r] = Σ row[j].
TEXT ·softmaxRows4AVX2(SB), NOSPLIT, $0-40
	MOVQ         s+0(FP), DI
	MOVQ         lds+8(FP), R8
	SHLQ         $2, R8
	LEAQ         (R8)(R8*2), R9 // 3·lds
	MOVQ         n+16(FP), CX
	SHRQ         $3, CX
	MOVQ         m+24(FP), BX
	MOVQ         sum+32(FP), DX
	LEAQ         rconsts<>(SB), AX
	VBROADCASTSS 0(BX), Y5
	VBROADCASTSS 4(BX), Y6
	VBROADCASTSS 8(BX), Y7
	VBROADCASTSS 12(BX), Y14
	MOVQ         DI, SI
	MOVQ         CX, R10

rmax:
	VMAXPS (SI), Y5, Y5
	VMAXPS (SI)(R8*1), Y6, Y6
	VMAXPS (SI)(R8*2), Y7, Y7
	VMAXPS (SI)(R9*1), Y14, Y14
	ADDQ   $32, SI
	DECQ   R10
	JNZ    rmax
	HREDUCE(VMAXPS, Y5, X5)
	HREDUCE(VMAXPS, Y6, X6)
	HREDUCE(VMAXPS, Y7, X7)
	HREDUCE(VMAXPS, Y14, X14)
	VMOVSS       X5, 0(BX)
	VMOVSS       X6, 4(BX)
	VMOVSS       X7, 8(BX)
	VMOVSS       X14, 12(BX)
	VXORPS       Y5, Y5, Y5
	VXORPS       Y6, Y6, Y6
	VXORPS       Y7, Y7, Y7
	VXORPS       Y14, Y14, Y14
	MOVQ         DI, SI

rexp:
	EXPROW((SI), 0, Y5)
	EXPROW((SI)(R8*1), 4, Y6)
	EXPROW((SI)(R8*2), 8, Y7)
	EXPROW((SI)(R9*1), 12, Y14)
	ADDQ $32, SI
	DECQ CX
	JNZ  rexp
	HREDUCE(VADDPS, Y5, X5)
	HREDUCE(VADDPS, Y6, X6)
	HREDUCE(VADDPS, Y7, X7)
	HREDUCE(VADDPS, Y14, X14)
	VMOVSS  X5, 0(DX)
	VMOVSS  X6, 4(DX)
	VMOVSS  X7, 8(DX)
	VMOVSS  X14, 12(DX)
	VZEROUPPER
	RET

// GRADROW(poff, doff, r) does one vector of row r of softmaxGradRows4AVX2: p at
// poff becomes e^(p − lse[r]) and ds at doff becomes p·(ds − delta[r])·scale
// (scale in Y5), with lse and delta at BX and DX.
#define GRADROW(prow, drow, r) \
	VBROADCASTSS r(BX), Y3 \
	VMOVUPS      prow, Y0  \
	VSUBPS       Y3, Y0, Y0 \
	EXP                    \
	VMOVUPS      Y1, prow  \
	VBROADCASTSS r(DX), Y6 \
	VMOVUPS      drow, Y7  \
	VSUBPS       Y6, Y7, Y7 \
	VMULPS       Y5, Y1, Y1 \
	VMULPS       Y7, Y1, Y1 \
	VMOVUPS      Y1, drow

// func softmaxGradRows4AVX2(p, ds *float32, lds, n int, lse, delta *[4]float32, scale float32)
//
// For rows r < 4 of p and ds (lds floats apart, n floats, n a nonzero multiple
// of 8): p[j] = e^(p[j] − lse[r]), ds[j] = p[j]·(ds[j] − delta[r])·scale.
TEXT ·softmaxGradRows4AVX2(SB), NOSPLIT, $0-52
	MOVQ         p+0(FP), DI
	MOVQ         ds+8(FP), SI
	MOVQ         lds+16(FP), R8
	SHLQ         $2, R8
	LEAQ         (R8)(R8*2), R9 // 3·lds
	MOVQ         n+24(FP), CX
	SHRQ         $3, CX
	MOVQ         lse+32(FP), BX
	MOVQ         delta+40(FP), DX
	VBROADCASTSS scale+48(FP), Y5
	LEAQ         rconsts<>(SB), AX

rgrad:
	GRADROW((DI), (SI), 0)
	GRADROW((DI)(R8*1), (SI)(R8*1), 4)
	GRADROW((DI)(R8*2), (SI)(R8*2), 8)
	GRADROW((DI)(R9*1), (SI)(R9*1), 12)
	ADDQ $32, DI
	ADDQ $32, SI
	DECQ CX
	JNZ  rgrad
	VZEROUPPER
	RET

// GRADPROW(prow, drow, dreg) does one vector of a row of gradPRows4AVX2.
#define GRADPROW(prow, drow, dreg) \
	VMOVUPS prow, Y1       \
	VMULPS  Y5, Y1, Y1     \
	VMOVUPS drow, Y0       \
	VSUBPS  dreg, Y0, Y0   \
	VMULPS  Y0, Y1, Y1     \
	VMOVUPS Y1, drow

// func gradPRows4AVX2(p, ds *float32, lds, n int, delta *[4]float32, scale float32)
//
// For rows r < 4 of p and ds (lds floats apart, n floats, n a nonzero multiple
// of 8): ds[j] = p[j]·scale·(ds[j] − delta[r]).
TEXT ·gradPRows4AVX2(SB), NOSPLIT, $0-44
	MOVQ         p+0(FP), DI
	MOVQ         ds+8(FP), SI
	MOVQ         lds+16(FP), R8
	SHLQ         $2, R8
	LEAQ         (R8)(R8*2), R9 // 3·lds
	MOVQ         n+24(FP), CX
	SHRQ         $3, CX
	MOVQ         delta+32(FP), DX
	VBROADCASTSS scale+40(FP), Y5
	VBROADCASTSS 0(DX), Y6
	VBROADCASTSS 4(DX), Y7
	VBROADCASTSS 8(DX), Y8
	VBROADCASTSS 12(DX), Y9

rgradp:
	GRADPROW((DI), (SI), Y6)
	GRADPROW((DI)(R8*1), (SI)(R8*1), Y7)
	GRADPROW((DI)(R8*2), (SI)(R8*2), Y8)
	GRADPROW((DI)(R9*1), (SI)(R9*1), Y9)
	ADDQ $32, DI
	ADDQ $32, SI
	DECQ CX
	JNZ  rgradp
	VZEROUPPER
	RET

// func scaleRows4AVX2(dst *float32, ldd int, src *float32, lds, n int, a *[4]float32)
//
// Row r < 4 of dst (ldd floats apart) = a[r]·row r of src (lds apart), n floats
// a row, n a nonzero multiple of 8.
TEXT ·scaleRows4AVX2(SB), NOSPLIT, $0-48
	MOVQ         dst+0(FP), DI
	MOVQ         ldd+8(FP), R10
	SHLQ         $2, R10
	LEAQ         (R10)(R10*2), R11 // 3·ldd
	MOVQ         src+16(FP), SI
	MOVQ         lds+24(FP), R8
	SHLQ         $2, R8
	LEAQ         (R8)(R8*2), R9 // 3·lds
	MOVQ         n+32(FP), CX
	SHRQ         $3, CX
	MOVQ         a+40(FP), DX
	VBROADCASTSS 0(DX), Y6
	VBROADCASTSS 4(DX), Y7
	VBROADCASTSS 8(DX), Y8
	VBROADCASTSS 12(DX), Y9

rscale:
	VMULPS  (SI), Y6, Y0
	VMOVUPS Y0, (DI)
	VMULPS  (SI)(R8*1), Y7, Y1
	VMOVUPS Y1, (DI)(R10*1)
	VMULPS  (SI)(R8*2), Y8, Y2
	VMOVUPS Y2, (DI)(R10*2)
	VMULPS  (SI)(R9*1), Y9, Y3
	VMOVUPS Y3, (DI)(R11*1)
	ADDQ    $32, DI
	ADDQ    $32, SI
	DECQ    CX
	JNZ     rscale
	VZEROUPPER
	RET

// func gradPDeltaRows4AVX2(p, ds *float32, lds, n int, delta *[4]float32, scale float32)
//
// For rows r < 4 of p and ds (lds floats apart, n floats, n a nonzero multiple
// of 8): delta[r] = Σ p[j]·ds[j] (lane-wise fused sums, then the lanes), then
// ds[j] = p[j]·scale·(ds[j] − delta[r]).
TEXT ·gradPDeltaRows4AVX2(SB), NOSPLIT, $0-44
	MOVQ         p+0(FP), DI
	MOVQ         ds+8(FP), SI
	MOVQ         lds+16(FP), R8
	SHLQ         $2, R8
	LEAQ         (R8)(R8*2), R9 // 3·lds
	MOVQ         n+24(FP), CX
	SHRQ         $3, CX
	MOVQ         delta+32(FP), DX
	VBROADCASTSS scale+40(FP), Y5
	DELTA4(rdelta)
	VBROADCASTSS X6, Y6
	VBROADCASTSS X7, Y7
	VBROADCASTSS X8, Y8
	VBROADCASTSS X9, Y9

rgradpd:
	GRADPROW((DI), (SI), Y6)
	GRADPROW((DI)(R8*1), (SI)(R8*1), Y7)
	GRADPROW((DI)(R8*2), (SI)(R8*2), Y8)
	GRADPROW((DI)(R9*1), (SI)(R9*1), Y9)
	ADDQ $32, DI
	ADDQ $32, SI
	DECQ CX
	JNZ  rgradpd
	VZEROUPPER
	RET
