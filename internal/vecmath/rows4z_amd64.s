#include "textflag.h"
#include "rows_amd64.h"

// The four-row softmax kernels of rows4z.go on AVX-512: the lanes compute what
// the AVX2 kernels of rows4_amd64.s compute (the same operations in the same
// order, the exponential's constants broadcast from one float each), and each
// row's sum still adds its 8-lane vectors in column order, so the results are
// the AVX2 kernels' bit for bit.

// ZEXP sets Z1 = e^Z0 for lanes with Z0 ≤ 0, exactly 0 where Z0 < −87.3 (−Inf
// and NaN included), as EXP of rows4_amd64.s does on 8 lanes. It uses Z0, Z2,
// Z8-Z13 and K1; AX is at ·vconsts.
#define ZEXP \
	VCMPPS.BCST       $13, LOW(AX), Z0, K1 \
	VMAXPS.BCST       LOW(AX), Z0, Z0      \
	VMULPS.BCST       LOG2E(AX), Z0, Z2    \
	VRNDSCALEPS       $0, Z2, Z2            \
	VFNMADD231PS.BCST LN2HI(AX), Z2, Z0    \
	VFNMADD231PS.BCST LN2LO(AX), Z2, Z0    \
	VMULPS            Z0, Z0, Z8            \
	VADDPS.BCST       ONE(AX), Z0, Z9      \
	VBROADCASTSS      C3(AX), Z10          \
	VFMADD213PS.BCST  HALF(AX), Z0, Z10    \
	VBROADCASTSS      C5(AX), Z11          \
	VFMADD213PS.BCST  C4(AX), Z0, Z11      \
	VBROADCASTSS      C7(AX), Z12          \
	VFMADD213PS.BCST  C6(AX), Z0, Z12      \
	VMULPS            Z8, Z8, Z13           \
	VFMADD213PS       Z11, Z8, Z12          \
	VFMADD213PS       Z9, Z8, Z10           \
	VFMADD231PS       Z13, Z12, Z10         \
	VCVTPS2DQ         Z2, Z2                \
	VPADDD.BCST       BIAS(AX), Z2, Z2     \
	VPSLLD            $23, Z2, Z2           \
	VMULPS.Z          Z2, Z10, K1, Z1

// ZEXPROW(row, mreg, msum) does 16 columns of a row of softmaxRows4AVX512: the
// scores at row less the row's maximum (in mreg) become their exponentials,
// stored back; their two halves of 8 are added to the 8-lane msum in column
// order.
#define ZEXPROW(row, mreg, msum) \
	VMOVUPS       row, Z0        \
	VSUBPS        mreg, Z0, Z0   \
	ZEXP                         \
	VMOVUPS       Z1, row        \
	VADDPS        Y1, msum, msum \
	VEXTRACTF64X4 $1, Z1, Y15    \
	VADDPS        Y15, msum, msum

// ZEXPROW8 is ZEXPROW on 8 columns (the low half of the registers).
#define ZEXPROW8(row, mreg, msum) \
	VMOVUPS  row, Y0      \
	VSUBPS   mreg, Z0, Z0 \
	ZEXP                  \
	VMOVUPS  Y1, row      \
	VADDPS   Y1, msum, msum

// func softmaxRows4AVX512(s *float32, lds, n int, m, sum *[4]float32)
//
// For rows r < 4 of s (lds floats apart, n floats, n a nonzero multiple of 8):
// m[r] = max(m[r], max row), row[j] = e^(row[j] − m[r]), sum[r] = Σ row[j].
TEXT ·softmaxRows4AVX512(SB), NOSPLIT, $0-40
	MOVQ         s+0(FP), DI
	MOVQ         lds+8(FP), R8
	SHLQ         $2, R8
	LEAQ         (R8)(R8*2), R9 // 3·lds
	MOVQ         n+16(FP), CX
	SHRQ         $3, CX         // vectors of 8
	MOVQ         m+24(FP), BX
	MOVQ         sum+32(FP), DX
	LEAQ         ·vconsts(SB), AX
	VBROADCASTSS 0(BX), Z20
	VBROADCASTSS 4(BX), Z21
	VBROADCASTSS 8(BX), Z22
	VBROADCASTSS 12(BX), Z23
	MOVQ         DI, SI
	MOVQ         CX, R10
	SHRQ         $1, R10
	JZ           zmax8

zmax16:
	VMAXPS (SI), Z20, Z20
	VMAXPS (SI)(R8*1), Z21, Z21
	VMAXPS (SI)(R8*2), Z22, Z22
	VMAXPS (SI)(R9*1), Z23, Z23
	ADDQ   $64, SI
	DECQ   R10
	JNZ    zmax16

zmax8:
	VEXTRACTF64X4 $1, Z20, Y24
	VEXTRACTF64X4 $1, Z21, Y25
	VEXTRACTF64X4 $1, Z22, Y26
	VEXTRACTF64X4 $1, Z23, Y27
	VMAXPS        Y24, Y20, Y20
	VMAXPS        Y25, Y21, Y21
	VMAXPS        Y26, Y22, Y22
	VMAXPS        Y27, Y23, Y23
	TESTQ         $1, CX
	JZ            zmaxdone
	VMAXPS        (SI), Y20, Y20
	VMAXPS        (SI)(R8*1), Y21, Y21
	VMAXPS        (SI)(R8*2), Y22, Y22
	VMAXPS        (SI)(R9*1), Y23, Y23

zmaxdone:
	VMOVUPS      Y20, Y5
	VMOVUPS      Y21, Y6
	VMOVUPS      Y22, Y7
	VMOVUPS      Y23, Y14
	HREDUCE(VMAXPS, Y5, X5)
	HREDUCE(VMAXPS, Y6, X6)
	HREDUCE(VMAXPS, Y7, X7)
	HREDUCE(VMAXPS, Y14, X14)
	VMOVSS       X5, 0(BX)
	VMOVSS       X6, 4(BX)
	VMOVSS       X7, 8(BX)
	VMOVSS       X14, 12(BX)
	VBROADCASTSS X5, Z20
	VBROADCASTSS X6, Z21
	VBROADCASTSS X7, Z22
	VBROADCASTSS X14, Z23
	VXORPS       Y5, Y5, Y5
	VXORPS       Y6, Y6, Y6
	VXORPS       Y7, Y7, Y7
	VXORPS       Y14, Y14, Y14
	MOVQ         DI, SI
	MOVQ         CX, R10
	SHRQ         $1, R10
	JZ           zexp8

zexp16:
	ZEXPROW((SI), Z20, Y5)
	ZEXPROW((SI)(R8*1), Z21, Y6)
	ZEXPROW((SI)(R8*2), Z22, Y7)
	ZEXPROW((SI)(R9*1), Z23, Y14)
	ADDQ $64, SI
	DECQ R10
	JNZ  zexp16

zexp8:
	TESTQ $1, CX
	JZ    zexpdone
	ZEXPROW8((SI), Z20, Y5)
	ZEXPROW8((SI)(R8*1), Z21, Y6)
	ZEXPROW8((SI)(R8*2), Z22, Y7)
	ZEXPROW8((SI)(R9*1), Z23, Y14)

zexpdone:
	HREDUCE(VADDPS, Y5, X5)
	HREDUCE(VADDPS, Y6, X6)
	HREDUCE(VADDPS, Y7, X7)
	HREDUCE(VADDPS, Y14, X14)
	VMOVSS X5, 0(DX)
	VMOVSS X6, 4(DX)
	VMOVSS X7, 8(DX)
	VMOVSS X14, 12(DX)
	VZEROUPPER
	RET

// ZGRADPROW(prow, drow, dreg) does 16 columns of a row of
// gradPDeltaRows4AVX512's second pass: ds = p·scale·(ds − delta), scale in Z5.
#define ZGRADPROW(prow, drow, dreg) \
	VMOVUPS prow, Z1     \
	VMULPS  Z5, Z1, Z1   \
	VMOVUPS drow, Z0     \
	VSUBPS  dreg, Z0, Z0 \
	VMULPS  Z0, Z1, Z1   \
	VMOVUPS Z1, drow

// ZGRADPROW8 is ZGRADPROW on 8 columns.
#define ZGRADPROW8(prow, drow, dreg) \
	VMOVUPS prow, Y1     \
	VMULPS  Y5, Y1, Y1   \
	VMOVUPS drow, Y0     \
	VSUBPS  dreg, Y0, Y0 \
	VMULPS  Y0, Y1, Y1   \
	VMOVUPS Y1, drow

// func gradPDeltaRows4AVX512(p, ds *float32, lds, n int, delta *[4]float32, scale float32)
//
// gradPDeltaRows4AVX2: delta[r] = Σ p·ds over row r (8 lanes, as there), then
// ds = p·scale·(ds − delta[r]) 16 lanes a step.
TEXT ·gradPDeltaRows4AVX512(SB), NOSPLIT, $0-44
	MOVQ         p+0(FP), DI
	MOVQ         ds+8(FP), SI
	MOVQ         lds+16(FP), R8
	SHLQ         $2, R8
	LEAQ         (R8)(R8*2), R9 // 3·lds
	MOVQ         n+24(FP), CX
	SHRQ         $3, CX
	MOVQ         delta+32(FP), DX
	VBROADCASTSS scale+40(FP), Z5
	DELTA4(zdelta)
	VBROADCASTSS X6, Z6
	VBROADCASTSS X7, Z7
	VBROADCASTSS X8, Z8
	VBROADCASTSS X9, Z9
	MOVQ         CX, R12
	SHRQ         $1, R12
	JZ           zgrad8

zgrad16:
	ZGRADPROW((DI), (SI), Z6)
	ZGRADPROW((DI)(R8*1), (SI)(R8*1), Z7)
	ZGRADPROW((DI)(R8*2), (SI)(R8*2), Z8)
	ZGRADPROW((DI)(R9*1), (SI)(R9*1), Z9)
	ADDQ $64, DI
	ADDQ $64, SI
	DECQ R12
	JNZ  zgrad16

zgrad8:
	TESTQ $1, CX
	JZ    zgraddone
	ZGRADPROW8((DI), (SI), Y6)
	ZGRADPROW8((DI)(R8*1), (SI)(R8*1), Y7)
	ZGRADPROW8((DI)(R8*2), (SI)(R8*2), Y8)
	ZGRADPROW8((DI)(R9*1), (SI)(R9*1), Y9)

zgraddone:
	VZEROUPPER
	RET

// func scaleRows4AVX512(dst *float32, ldd int, src *float32, lds, n int, a *[4]float32)
//
// Row r < 4 of dst (ldd floats apart) = a[r]·row r of src (lds apart), n a
// nonzero multiple of 8.
TEXT ·scaleRows4AVX512(SB), NOSPLIT, $0-48
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
	VBROADCASTSS 0(DX), Z6
	VBROADCASTSS 4(DX), Z7
	VBROADCASTSS 8(DX), Z8
	VBROADCASTSS 12(DX), Z9
	MOVQ         CX, R12
	SHRQ         $1, R12
	JZ           zscale8

zscale16:
	VMULPS  (SI), Z6, Z0
	VMOVUPS Z0, (DI)
	VMULPS  (SI)(R8*1), Z7, Z1
	VMOVUPS Z1, (DI)(R10*1)
	VMULPS  (SI)(R8*2), Z8, Z2
	VMOVUPS Z2, (DI)(R10*2)
	VMULPS  (SI)(R9*1), Z9, Z3
	VMOVUPS Z3, (DI)(R11*1)
	ADDQ    $64, DI
	ADDQ    $64, SI
	DECQ    R12
	JNZ     zscale16

zscale8:
	TESTQ   $1, CX
	JZ      zscaledone
	VMULPS  (SI), Y6, Y0
	VMOVUPS Y0, (DI)
	VMULPS  (SI)(R8*1), Y7, Y1
	VMOVUPS Y1, (DI)(R10*1)
	VMULPS  (SI)(R8*2), Y8, Y2
	VMOVUPS Y2, (DI)(R10*2)
	VMULPS  (SI)(R9*1), Y9, Y3
	VMOVUPS Y3, (DI)(R11*1)

zscaledone:
	VZEROUPPER
	RET
