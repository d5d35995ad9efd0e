#include "textflag.h"

// func adamwAVX(p, grad, m, v *float32, n int, c *adamwConsts)
//
// The AdamW update of adamwRange on 8 lanes at a time, n a multiple of 8. The
// operations and their order are adamwRange's, without fused multiply-adds, so
// every element comes out bit for bit as the Go loop computes it.
TEXT ·adamwAVX(SB), NOSPLIT, $0-48
	MOVQ p+0(FP), DI
	MOVQ grad+8(FP), SI
	MOVQ m+16(FP), R8
	MOVQ v+24(FP), R9
	MOVQ n+32(FP), CX
	MOVQ c+40(FP), AX
	VBROADCASTSS 0(AX), Y8   // stepSize
	VBROADCASTSS 4(AX), Y9   // β1
	VBROADCASTSS 8(AX), Y10  // 1-β1
	VBROADCASTSS 12(AX), Y11 // β2
	VBROADCASTSS 16(AX), Y12 // 1-β2
	VBROADCASTSS 20(AX), Y13 // eps
	VBROADCASTSS 24(AX), Y14 // 1/√bc2
	VBROADCASTSS 28(AX), Y15 // 1-lr·wd
	SHRQ $3, CX
	JZ   done

loop:
	VMOVUPS (SI), Y0
	VMULPS  (R8), Y9, Y1  // β1·m
	VMULPS  Y0, Y10, Y2   // (1-β1)·g
	VADDPS  Y2, Y1, Y1    // m'
	VMOVUPS Y1, (R8)
	VMULPS  Y0, Y12, Y3   // (1-β2)·g
	VMULPS  Y0, Y3, Y3    // (1-β2)·g·g
	VMULPS  (R9), Y11, Y4 // β2·v
	VADDPS  Y3, Y4, Y4    // v'
	VMOVUPS Y4, (R9)
	VSQRTPS Y4, Y5
	VMULPS  Y14, Y5, Y5   // √v'/√bc2
	VADDPS  Y13, Y5, Y5   // + eps
	VMULPS  Y1, Y8, Y6    // stepSize·m'
	VDIVPS  Y5, Y6, Y6
	VMULPS  (DI), Y15, Y7 // p·(1-lr·wd)
	VSUBPS  Y6, Y7, Y7
	VMOVUPS Y7, (DI)
	ADDQ    $32, DI
	ADDQ    $32, SI
	ADDQ    $32, R8
	ADDQ    $32, R9
	DECQ    CX
	JNZ     loop

done:
	VZEROUPPER
	RET
