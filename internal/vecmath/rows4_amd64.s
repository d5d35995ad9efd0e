#include "textflag.h"
#include "rows_amd64.h"

// The four-row softmax kernels (see rows4.go) on AVX2 + FMA. The exponential
// (EXP in rows_amd64.h) and its constants (·vconsts of kernels_amd64.s) are
// SoftmaxRow's, so each lane computes exactly what SoftmaxRow and SoftmaxGradRow
// compute.

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
	LEAQ         ·vconsts(SB), AX
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
	LEAQ         ·vconsts(SB), AX

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
