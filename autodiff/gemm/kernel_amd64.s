#include "textflag.h"

// One step of the k loop: a row of the B panel (16 floats at boff(DI)) times the six
// A values of that step (at aoff(SI)), added to the 6×16 tile in Y0..Y11.
#define STEP(aoff, boff) \
	VMOVUPS     boff(DI), Y12;      \
	VMOVUPS     (boff+32)(DI), Y13; \
	VBROADCASTSS aoff(SI), Y14;     \
	VFMADD231PS Y12, Y14, Y0;       \
	VFMADD231PS Y13, Y14, Y1;       \
	VBROADCASTSS (aoff+4)(SI), Y15; \
	VFMADD231PS Y12, Y15, Y2;       \
	VFMADD231PS Y13, Y15, Y3;       \
	VBROADCASTSS (aoff+8)(SI), Y14; \
	VFMADD231PS Y12, Y14, Y4;       \
	VFMADD231PS Y13, Y14, Y5;       \
	VBROADCASTSS (aoff+12)(SI), Y15; \
	VFMADD231PS Y12, Y15, Y6;       \
	VFMADD231PS Y13, Y15, Y7;       \
	VBROADCASTSS (aoff+16)(SI), Y14; \
	VFMADD231PS Y12, Y14, Y8;       \
	VFMADD231PS Y13, Y14, Y9;       \
	VBROADCASTSS (aoff+20)(SI), Y15; \
	VFMADD231PS Y12, Y15, Y10;      \
	VFMADD231PS Y13, Y15, Y11

// Row r of C (at DX) = tile row + beta (Y15) · C row, then DX moves to the next row.
#define STORE_BETA(acc0, acc1) \
	VFMADD231PS (DX), Y15, acc0;   \
	VFMADD231PS 32(DX), Y15, acc1; \
	VMOVUPS     acc0, (DX);        \
	VMOVUPS     acc1, 32(DX);      \
	ADDQ        R8, DX

#define STORE(acc0, acc1) \
	VMOVUPS acc0, (DX);   \
	VMOVUPS acc1, 32(DX); \
	ADDQ    R8, DX

// The end of both kernels: scale the tile by alpha (Y14) and store it to C (DX,
// rows R8 bytes apart), adding beta (Y15; its bits in AX) times C unless beta is ±0.
#define EPILOGUE \
	VMULPS     Y14, Y0, Y0;   \
	VMULPS     Y14, Y1, Y1;   \
	VMULPS     Y14, Y2, Y2;   \
	VMULPS     Y14, Y3, Y3;   \
	VMULPS     Y14, Y4, Y4;   \
	VMULPS     Y14, Y5, Y5;   \
	VMULPS     Y14, Y6, Y6;   \
	VMULPS     Y14, Y7, Y7;   \
	VMULPS     Y14, Y8, Y8;   \
	VMULPS     Y14, Y9, Y9;   \
	VMULPS     Y14, Y10, Y10; \
	VMULPS     Y14, Y11, Y11; \
	SHLL       $1, AX;        \
	JEQ        nobeta;        \
	STORE_BETA(Y0, Y1);       \
	STORE_BETA(Y2, Y3);       \
	STORE_BETA(Y4, Y5);       \
	STORE_BETA(Y6, Y7);       \
	STORE_BETA(Y8, Y9);       \
	STORE_BETA(Y10, Y11);     \
	VZEROUPPER;               \
	RET;                      \
nobeta:                       \
	STORE(Y0, Y1);            \
	STORE(Y2, Y3);            \
	STORE(Y4, Y5);            \
	STORE(Y6, Y7);            \
	STORE(Y8, Y9);            \
	STORE(Y10, Y11);          \
	VZEROUPPER;               \
	RET

// One step of the strided kernel: B's row at DI (R10 bytes to the next), then the
// same six broadcasts and twelve FMAs as STEP.
#define STEP_STRIDED(aoff) \
	VMOVUPS      (DI), Y12;         \
	VMOVUPS      32(DI), Y13;       \
	ADDQ         R10, DI;           \
	VBROADCASTSS aoff(SI), Y14;     \
	VFMADD231PS  Y12, Y14, Y0;      \
	VFMADD231PS  Y13, Y14, Y1;      \
	VBROADCASTSS (aoff+4)(SI), Y15; \
	VFMADD231PS  Y12, Y15, Y2;      \
	VFMADD231PS  Y13, Y15, Y3;      \
	VBROADCASTSS (aoff+8)(SI), Y14; \
	VFMADD231PS  Y12, Y14, Y4;      \
	VFMADD231PS  Y13, Y14, Y5;      \
	VBROADCASTSS (aoff+12)(SI), Y15; \
	VFMADD231PS  Y12, Y15, Y6;      \
	VFMADD231PS  Y13, Y15, Y7;      \
	VBROADCASTSS (aoff+16)(SI), Y14; \
	VFMADD231PS  Y12, Y14, Y8;      \
	VFMADD231PS  Y13, Y14, Y9;      \
	VBROADCASTSS (aoff+20)(SI), Y15; \
	VFMADD231PS  Y12, Y15, Y10;     \
	VFMADD231PS  Y13, Y15, Y11

// func sgemmKernel6x16(k int, a, b, c *float32, ldc int, alpha, beta float32)
//
// C[0:6][0:16] = alpha·Σ_p a[6p+i]·b[16p+j] + beta·C[i][j], C's rows ldc floats
// apart: a is a packed 6-row panel of A, b a packed 16-column panel of B, k ≥ 0.
// When beta is ±0, C is not read.
TEXT ·sgemmKernel6x16(SB), NOSPLIT, $0-48
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8

	// Bring the C tile towards L1 while the products run.
	MOVQ       DX, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)

	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11

	CMPQ CX, $4
	JLT  tail

loop4:
	PREFETCHT0 384(SI)
	STEP(0, 0)
	STEP(24, 64)
	PREFETCHT0 448(SI)
	STEP(48, 128)
	STEP(72, 192)
	ADDQ $96, SI
	ADDQ $256, DI
	SUBQ $4, CX
	CMPQ CX, $4
	JGE  loop4

tail:
	TESTQ CX, CX
	JEQ   done

tail1:
	STEP(0, 0)
	ADDQ $24, SI
	ADDQ $64, DI
	DECQ CX
	JNE  tail1

done:
	VBROADCASTSS alpha+40(FP), Y14
	MOVL         beta+44(FP), AX
	VBROADCASTSS beta+44(FP), Y15
	EPILOGUE

// func sgemmKernel6x16Strided(k int, a, b, c *float32, ldb, ldc int, alpha, beta float32)
//
// sgemmKernel6x16 with B read in place: 16 consecutive floats per row, rows ldb
// floats apart, for products of a few rows where packing B would only double the
// traffic.
TEXT ·sgemmKernel6x16Strided(SB), NOSPLIT, $0-56
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldb+32(FP), R10
	SHLQ $2, R10
	MOVQ ldc+40(FP), R8
	SHLQ $2, R8
	LEAQ (R10)(R10*2), R11
	SHLQ $2, R11            // twelve rows of B ahead

	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11

	CMPQ CX, $4
	JLT  tail

loop4:
	PREFETCHT0 (DI)(R11*1)
	PREFETCHT0 63(DI)(R11*1)
	STEP_STRIDED(0)
	PREFETCHT0 (DI)(R11*1)
	PREFETCHT0 63(DI)(R11*1)
	STEP_STRIDED(24)
	PREFETCHT0 (DI)(R11*1)
	PREFETCHT0 63(DI)(R11*1)
	STEP_STRIDED(48)
	PREFETCHT0 (DI)(R11*1)
	PREFETCHT0 63(DI)(R11*1)
	STEP_STRIDED(72)
	ADDQ $96, SI
	SUBQ $4, CX
	CMPQ CX, $4
	JGE  loop4

tail:
	TESTQ CX, CX
	JEQ   done

tail1:
	STEP_STRIDED(0)
	ADDQ $24, SI
	DECQ CX
	JNE  tail1

done:
	VBROADCASTSS alpha+48(FP), Y14
	MOVL         beta+52(FP), AX
	VBROADCASTSS beta+52(FP), Y15
	EPILOGUE

// One step of the in-place kernel: the same as STEP, the six A values read from
// six rows of A (at SI + aoff, rows R10 bytes apart; R11 = 3 rows, R12 = 5).
#define STEP_A(aoff, boff) \
	VMOVUPS      boff(DI), Y12;           \
	VMOVUPS      (boff+32)(DI), Y13;      \
	VBROADCASTSS aoff(SI), Y14;           \
	VFMADD231PS  Y12, Y14, Y0;            \
	VFMADD231PS  Y13, Y14, Y1;            \
	VBROADCASTSS aoff(SI)(R10*1), Y15;    \
	VFMADD231PS  Y12, Y15, Y2;            \
	VFMADD231PS  Y13, Y15, Y3;            \
	VBROADCASTSS aoff(SI)(R10*2), Y14;    \
	VFMADD231PS  Y12, Y14, Y4;            \
	VFMADD231PS  Y13, Y14, Y5;            \
	VBROADCASTSS aoff(SI)(R11*1), Y15;    \
	VFMADD231PS  Y12, Y15, Y6;            \
	VFMADD231PS  Y13, Y15, Y7;            \
	VBROADCASTSS aoff(SI)(R10*4), Y14;    \
	VFMADD231PS  Y12, Y14, Y8;            \
	VFMADD231PS  Y13, Y14, Y9;            \
	VBROADCASTSS aoff(SI)(R12*1), Y15;    \
	VFMADD231PS  Y12, Y15, Y10;           \
	VFMADD231PS  Y13, Y15, Y11

// func sgemmKernel6x16A(k int, a *float32, lda int, b, c *float32, ldc int, alpha, beta float32)
//
// sgemmKernel6x16 reading A in place: six rows of a row-major A, lda floats
// apart, k consecutive values each (no packing of A).
TEXT ·sgemmKernel6x16A(SB), NOSPLIT, $0-56
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ lda+16(FP), R10
	SHLQ $2, R10
	LEAQ (R10)(R10*2), R11
	LEAQ (R10)(R10*4), R12
	MOVQ b+24(FP), DI
	MOVQ c+32(FP), DX
	MOVQ ldc+40(FP), R8
	SHLQ $2, R8

	MOVQ       DX, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)

	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11

	CMPQ CX, $4
	JLT  tail

loop4:
	// A's rows come from memory on the first panel of B: fetch three lines ahead.
	PREFETCHT0 192(SI)
	PREFETCHT0 192(SI)(R10*1)
	PREFETCHT0 192(SI)(R10*2)
	STEP_A(0, 0)
	STEP_A(4, 64)
	PREFETCHT0 192(SI)(R11*1)
	PREFETCHT0 192(SI)(R10*4)
	PREFETCHT0 192(SI)(R12*1)
	STEP_A(8, 128)
	STEP_A(12, 192)
	ADDQ $16, SI
	ADDQ $256, DI
	SUBQ $4, CX
	CMPQ CX, $4
	JGE  loop4

tail:
	TESTQ CX, CX
	JEQ   done

tail1:
	STEP_A(0, 0)
	ADDQ $4, SI
	ADDQ $64, DI
	DECQ CX
	JNE  tail1

done:
	VBROADCASTSS alpha+48(FP), Y14
	MOVL         beta+52(FP), AX
	VBROADCASTSS beta+52(FP), Y15
	EPILOGUE

// func sgemmPanels6x16A(k int, a *float32, lda int, b, c *float32, ldc int, alpha, beta float32, panels int)
//
// sgemmKernel6x16A on `panels` tiles down a column of C: tile t reads rows
// 6t..6t+5 of A and writes rows 6t..6t+5 of C, all against the same packed B
// panel. One call per column of tiles instead of one per tile.
TEXT ·sgemmPanels6x16A(SB), NOSPLIT, $0-64
	MOVQ lda+16(FP), R10
	SHLQ $2, R10
	LEAQ (R10)(R10*2), R11
	LEAQ (R10)(R10*4), R12
	MOVQ ldc+40(FP), R8
	SHLQ $2, R8
	MOVQ a+8(FP), R14
	MOVQ c+32(FP), R15
	MOVQ panels+56(FP), R13
	TESTQ R13, R13
	JEQ   alldone

tile:
	MOVQ k+0(FP), CX
	MOVQ R14, SI
	MOVQ b+24(FP), DI
	MOVQ R15, DX

	MOVQ       DX, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)

	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11

	CMPQ CX, $4
	JLT  tail

loop4:
	PREFETCHT0 192(SI)
	PREFETCHT0 192(SI)(R10*1)
	PREFETCHT0 192(SI)(R10*2)
	STEP_A(0, 0)
	STEP_A(4, 64)
	PREFETCHT0 192(SI)(R11*1)
	PREFETCHT0 192(SI)(R10*4)
	PREFETCHT0 192(SI)(R12*1)
	STEP_A(8, 128)
	STEP_A(12, 192)
	ADDQ $16, SI
	ADDQ $256, DI
	SUBQ $4, CX
	CMPQ CX, $4
	JGE  loop4

tail:
	TESTQ CX, CX
	JEQ   done

tail1:
	STEP_A(0, 0)
	ADDQ $4, SI
	ADDQ $64, DI
	DECQ CX
	JNE  tail1

done:
	VBROADCASTSS alpha+48(FP), Y14
	MOVL         beta+52(FP), AX
	VBROADCASTSS beta+52(FP), Y15
	VMULPS       Y14, Y0, Y0
	VMULPS       Y14, Y1, Y1
	VMULPS       Y14, Y2, Y2
	VMULPS       Y14, Y3, Y3
	VMULPS       Y14, Y4, Y4
	VMULPS       Y14, Y5, Y5
	VMULPS       Y14, Y6, Y6
	VMULPS       Y14, Y7, Y7
	VMULPS       Y14, Y8, Y8
	VMULPS       Y14, Y9, Y9
	VMULPS       Y14, Y10, Y10
	VMULPS       Y14, Y11, Y11
	SHLL         $1, AX
	JEQ          nobeta
	STORE_BETA(Y0, Y1)
	STORE_BETA(Y2, Y3)
	STORE_BETA(Y4, Y5)
	STORE_BETA(Y6, Y7)
	STORE_BETA(Y8, Y9)
	STORE_BETA(Y10, Y11)
	JMP          next

nobeta:
	STORE(Y0, Y1)
	STORE(Y2, Y3)
	STORE(Y4, Y5)
	STORE(Y6, Y7)
	STORE(Y8, Y9)
	STORE(Y10, Y11)

next:
	LEAQ (R14)(R11*2), R14 // six rows of A down
	MOVQ R8, R9
	LEAQ (R9)(R9*2), R9
	LEAQ (R15)(R9*2), R15  // six rows of C down
	DECQ R13
	JNE  tile

alldone:
	VZEROUPPER
	RET

// func sgemmPanels6x16(k int, a, b, c *float32, ldc int, alpha, beta float32, panels int)
//
// sgemmKernel6x16 on `panels` tiles down a column of C: the packed A panels
// follow each other (6·k floats each), tile t writes rows 6t..6t+5 of C, all
// against the same packed B panel.
TEXT ·sgemmPanels6x16(SB), NOSPLIT, $0-56
	MOVQ a+8(FP), SI
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8
	MOVQ c+24(FP), R15
	MOVQ panels+48(FP), R13
	TESTQ R13, R13
	JEQ   alldone

tile:
	MOVQ k+0(FP), CX
	MOVQ b+16(FP), DI
	MOVQ R15, DX

	MOVQ       DX, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)

	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11

	CMPQ CX, $4
	JLT  tail

loop4:
	PREFETCHT0 384(SI)
	STEP(0, 0)
	STEP(24, 64)
	PREFETCHT0 448(SI)
	STEP(48, 128)
	STEP(72, 192)
	ADDQ $96, SI
	ADDQ $256, DI
	SUBQ $4, CX
	CMPQ CX, $4
	JGE  loop4

tail:
	TESTQ CX, CX
	JEQ   done

tail1:
	STEP(0, 0)
	ADDQ $24, SI
	ADDQ $64, DI
	DECQ CX
	JNE  tail1

done:
	// SI is now at the next panel of A.
	VBROADCASTSS alpha+40(FP), Y14
	MOVL         beta+44(FP), AX
	VBROADCASTSS beta+44(FP), Y15
	VMULPS       Y14, Y0, Y0
	VMULPS       Y14, Y1, Y1
	VMULPS       Y14, Y2, Y2
	VMULPS       Y14, Y3, Y3
	VMULPS       Y14, Y4, Y4
	VMULPS       Y14, Y5, Y5
	VMULPS       Y14, Y6, Y6
	VMULPS       Y14, Y7, Y7
	VMULPS       Y14, Y8, Y8
	VMULPS       Y14, Y9, Y9
	VMULPS       Y14, Y10, Y10
	VMULPS       Y14, Y11, Y11
	SHLL         $1, AX
	JEQ          nobeta
	STORE_BETA(Y0, Y1)
	STORE_BETA(Y2, Y3)
	STORE_BETA(Y4, Y5)
	STORE_BETA(Y6, Y7)
	STORE_BETA(Y8, Y9)
	STORE_BETA(Y10, Y11)
	JMP          next

nobeta:
	STORE(Y0, Y1)
	STORE(Y2, Y3)
	STORE(Y4, Y5)
	STORE(Y6, Y7)
	STORE(Y8, Y9)
	STORE(Y10, Y11)

next:
	MOVQ R8, R9
	LEAQ (R9)(R9*2), R9
	LEAQ (R15)(R9*2), R15 // six rows of C down
	DECQ R13
	JNE  tile

alldone:
	VZEROUPPER
	RET
