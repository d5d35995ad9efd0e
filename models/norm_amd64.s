//go:build amd64

#include "textflag.h"

// HSUM adds the 8 lanes of Y into the low lane of X (clobbers X15).
#define HSUM(Y, X) \
	VEXTRACTF128 $1, Y, X15 \
	VADDPS       X15, X, X  \
	VPERMILPS    $0x4e, X, X15 \
	VADDPS       X15, X, X  \
	VPERMILPS    $0xb1, X, X15 \
	VADDPS       X15, X, X

// func lnForwardAVX2(y, x, w, b *float32, n int, eps float32) (mean, rstd float32)
TEXT ·lnForwardAVX2(SB), NOSPLIT, $0-56
	MOVQ y+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ w+16(FP), R8
	MOVQ b+24(FP), R9
	MOVQ n+32(FP), CX
	VCVTSI2SSQ CX, X14, X14        // n as float
	SHRQ $3, CX                    // vectors of 8
	// The sums on four accumulators (four vectors a step, then one at a
	// time), so the additions' latencies overlap.
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	MOVQ SI, AX
	MOVQ CX, DX
	SHRQ $2, DX
	JZ   sumtail

sum4:
	VADDPS (AX), Y0, Y0
	VADDPS 32(AX), Y5, Y5
	VADDPS 64(AX), Y6, Y6
	VADDPS 96(AX), Y7, Y7
	ADDQ   $128, AX
	DECQ   DX
	JNZ    sum4

sumtail:
	MOVQ CX, DX
	ANDQ $3, DX
	JZ   sumdone

sum1:
	VADDPS (AX), Y0, Y0
	ADDQ   $32, AX
	DECQ   DX
	JNZ    sum1

sumdone:
	VADDPS Y5, Y0, Y0
	VADDPS Y7, Y6, Y6
	VADDPS Y6, Y0, Y0
	HSUM(Y0, X0)
	VDIVSS X14, X0, X0            // mean
	VMOVSS X0, mean+48(FP)
	VBROADCASTSS X0, Y2
	MOVQ SI, AX
	MOVQ CX, DX
	SHRQ $2, DX
	JZ   sqtail

sq4:
	VMOVUPS     (AX), Y3
	VMOVUPS     32(AX), Y4
	VMOVUPS     64(AX), Y11
	VMOVUPS     96(AX), Y12
	VSUBPS      Y2, Y3, Y3
	VSUBPS      Y2, Y4, Y4
	VSUBPS      Y2, Y11, Y11
	VSUBPS      Y2, Y12, Y12
	VFMADD231PS Y3, Y3, Y1
	VFMADD231PS Y4, Y4, Y8
	VFMADD231PS Y11, Y11, Y9
	VFMADD231PS Y12, Y12, Y10
	ADDQ        $128, AX
	DECQ        DX
	JNZ         sq4

sqtail:
	MOVQ CX, DX
	ANDQ $3, DX
	JZ   sqdone

sq1:
	VMOVUPS     (AX), Y3
	VSUBPS      Y2, Y3, Y3
	VFMADD231PS Y3, Y3, Y1
	ADDQ        $32, AX
	DECQ        DX
	JNZ         sq1

sqdone:
	VADDPS   Y8, Y1, Y1
	VADDPS   Y10, Y9, Y9
	VADDPS   Y9, Y1, Y1
	HSUM(Y1, X1)
	VDIVSS   X14, X1, X1          // variance
	VMOVSS   eps+40(FP), X4
	VADDSS   X4, X1, X1
	VSQRTSS  X1, X1, X1
	MOVL     $0x3f800000, AX
	VMOVD    AX, X4
	VDIVSS   X1, X4, X1           // rstd
	VMOVSS   X1, rstd+52(FP)
	VBROADCASTSS X1, Y1

norm:
	VMOVUPS     (SI), Y3
	VSUBPS      Y2, Y3, Y3
	VMULPS      Y1, Y3, Y3        // x̂
	VMOVUPS     (R9), Y4
	VFMADD231PS (R8), Y3, Y4      // x̂·w + b
	VMOVUPS     Y4, (DI)
	ADDQ        $32, SI
	ADDQ        $32, DI
	ADDQ        $32, R8
	ADDQ        $32, R9
	DECQ        CX
	JNZ         norm
	VZEROUPPER
	RET

// func lnBackwardAVX2(dx, dw, db, grad, x, w *float32, n int, mean, rstd float32, add bool)
TEXT ·lnBackwardAVX2(SB), NOSPLIT, $0-65
	MOVQ dx+0(FP), DI
	MOVQ dw+8(FP), R10
	MOVQ db+16(FP), R11
	MOVQ grad+24(FP), SI
	MOVQ x+32(FP), DX
	MOVQ w+40(FP), R8
	MOVQ n+48(FP), CX
	VCVTSI2SSQ CX, X14, X14
	SHRQ $3, CX
	VBROADCASTSS mean+56(FP), Y2
	VBROADCASTSS rstd+60(FP), Y1
	VXORPS Y5, Y5, Y5             // Σ ĝ
	VXORPS Y6, Y6, Y6             // Σ ĝ·x̂
	MOVQ CX, BX
	MOVQ SI, R12
	MOVQ DX, R13
	MOVQ R8, R9

pass1:
	VMOVUPS     (R13), Y3
	VSUBPS      Y2, Y3, Y3
	VMULPS      Y1, Y3, Y3        // x̂
	VMOVUPS     (R12), Y7         // g
	VMULPS      (R9), Y7, Y8     // ĝ = g·w
	VADDPS      Y8, Y5, Y5
	VFMADD231PS Y8, Y3, Y6
	VMOVUPS     (R10), Y9
	VFMADD231PS Y7, Y3, Y9        // dw += g·x̂
	VMOVUPS     Y9, (R10)
	VADDPS      (R11), Y7, Y9     // db += g
	VMOVUPS     Y9, (R11)
	ADDQ        $32, R10
	ADDQ        $32, R11
	ADDQ        $32, R12
	ADDQ        $32, R13
	ADDQ        $32, R9
	DECQ        BX
	JNZ         pass1
	HSUM(Y5, X5)
	HSUM(Y6, X6)
	VDIVSS X14, X5, X5
	VDIVSS X14, X6, X6
	VBROADCASTSS X5, Y5           // c1
	VBROADCASTSS X6, Y6           // c2

	MOVBLZX add+64(FP), AX
	TESTL   AX, AX
	JNZ     pass2add

pass2:
	VMOVUPS      (DX), Y3
	VSUBPS       Y2, Y3, Y3
	VMULPS       Y1, Y3, Y3       // x̂
	VMOVUPS      (SI), Y7
	VMULPS       (R8), Y7, Y8     // ĝ
	VSUBPS       Y5, Y8, Y8       // ĝ − c1
	VFNMADD231PS Y6, Y3, Y8       // − x̂·c2
	VMULPS       Y1, Y8, Y8
	VMOVUPS      Y8, (DI)
	ADDQ         $32, DI
	ADDQ         $32, SI
	ADDQ         $32, DX
	ADDQ         $32, R8
	DECQ         CX
	JNZ          pass2
	VZEROUPPER
	RET

// pass2 adding dx to what the row holds (rounded as dx then the sum).
pass2add:
	VMOVUPS      (DX), Y3
	VSUBPS       Y2, Y3, Y3
	VMULPS       Y1, Y3, Y3       // x̂
	VMOVUPS      (SI), Y7
	VMULPS       (R8), Y7, Y8     // ĝ
	VSUBPS       Y5, Y8, Y8       // ĝ − c1
	VFNMADD231PS Y6, Y3, Y8       // − x̂·c2
	VMULPS       Y1, Y8, Y8
	VADDPS       (DI), Y8, Y8
	VMOVUPS      Y8, (DI)
	ADDQ         $32, DI
	ADDQ         $32, SI
	ADDQ         $32, DX
	ADDQ         $32, R8
	DECQ         CX
	JNZ          pass2add
	VZEROUPPER
	RET
