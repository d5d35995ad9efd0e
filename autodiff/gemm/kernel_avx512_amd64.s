#include "textflag.h"
#include "zmm_amd64.h"

// The AVX-512 micro-kernels: a 6×32 tile of C in twelve zmm accumulators (Z0..Z11,
// row i in Z(2i) and Z(2i+1)), from one 6-row panel of A and two adjacent packed
// 16-column panels of B (the second 64·k bytes after the first): one zmm is one
// row of a B panel. Each step loads two B rows and broadcasts six A values for
// twelve FMAs of 16 lanes, half the loads per FMA of the 6×16 AVX2 kernel. The
// sums run in the same order as the AVX2 kernel's, so the results are the same.

// The 6×32 tiles' accumulators Z0–Z11 (row i in Z(2i), Z(2i+1)): cleared,
// scaled by α (in Z16), and stored at DX (rows R8 bytes apart, DX moving on
// a row each) with β (in Z17) or without.
#define Z6_PFC \
	PFC32; PFC32; PFC32; PFC32; PFC32; \
	PFC32_ROW

#define Z6_ZERO \
	VPXORD Z0, Z0, Z0; \
	VPXORD Z1, Z1, Z1; \
	VPXORD Z2, Z2, Z2; \
	VPXORD Z3, Z3, Z3; \
	VPXORD Z4, Z4, Z4; \
	VPXORD Z5, Z5, Z5; \
	VPXORD Z6, Z6, Z6; \
	VPXORD Z7, Z7, Z7; \
	VPXORD Z8, Z8, Z8; \
	VPXORD Z9, Z9, Z9; \
	VPXORD Z10, Z10, Z10; \
	VPXORD Z11, Z11, Z11

#define Z6_SCALE \
	VMULPS Z16, Z0, Z0; \
	VMULPS Z16, Z1, Z1; \
	VMULPS Z16, Z2, Z2; \
	VMULPS Z16, Z3, Z3; \
	VMULPS Z16, Z4, Z4; \
	VMULPS Z16, Z5, Z5; \
	VMULPS Z16, Z6, Z6; \
	VMULPS Z16, Z7, Z7; \
	VMULPS Z16, Z8, Z8; \
	VMULPS Z16, Z9, Z9; \
	VMULPS Z16, Z10, Z10; \
	VMULPS Z16, Z11, Z11

#define Z6_STORE_BETA \
	VFMADD231PS (DX), Z17, Z0; \
	VFMADD231PS 64(DX), Z17, Z1; \
	VMOVUPS Z0, (DX); \
	VMOVUPS Z1, 64(DX); \
	ADDQ R8, DX; \
	VFMADD231PS (DX), Z17, Z2; \
	VFMADD231PS 64(DX), Z17, Z3; \
	VMOVUPS Z2, (DX); \
	VMOVUPS Z3, 64(DX); \
	ADDQ R8, DX; \
	VFMADD231PS (DX), Z17, Z4; \
	VFMADD231PS 64(DX), Z17, Z5; \
	VMOVUPS Z4, (DX); \
	VMOVUPS Z5, 64(DX); \
	ADDQ R8, DX; \
	VFMADD231PS (DX), Z17, Z6; \
	VFMADD231PS 64(DX), Z17, Z7; \
	VMOVUPS Z6, (DX); \
	VMOVUPS Z7, 64(DX); \
	ADDQ R8, DX; \
	VFMADD231PS (DX), Z17, Z8; \
	VFMADD231PS 64(DX), Z17, Z9; \
	VMOVUPS Z8, (DX); \
	VMOVUPS Z9, 64(DX); \
	ADDQ R8, DX; \
	VFMADD231PS (DX), Z17, Z10; \
	VFMADD231PS 64(DX), Z17, Z11; \
	VMOVUPS Z10, (DX); \
	VMOVUPS Z11, 64(DX); \
	ADDQ R8, DX

#define Z6_STORE \
	VMOVUPS Z0, (DX); \
	VMOVUPS Z1, 64(DX); \
	ADDQ R8, DX; \
	VMOVUPS Z2, (DX); \
	VMOVUPS Z3, 64(DX); \
	ADDQ R8, DX; \
	VMOVUPS Z4, (DX); \
	VMOVUPS Z5, 64(DX); \
	ADDQ R8, DX; \
	VMOVUPS Z6, (DX); \
	VMOVUPS Z7, 64(DX); \
	ADDQ R8, DX; \
	VMOVUPS Z8, (DX); \
	VMOVUPS Z9, 64(DX); \
	ADDQ R8, DX; \
	VMOVUPS Z10, (DX); \
	VMOVUPS Z11, 64(DX); \
	ADDQ R8, DX

// Z6_STEP(boff, aoff) is one k step of the packed-A kernel: B's row pair at
// boff(DI) and boff(DI)(BX*1), A's six values from aoff(SI), twelve FMAs.
#define Z6_STEP(boff, aoff) \
	VMOVUPS     boff(DI), Z12;          \
	VMOVUPS     boff(DI)(BX*1), Z13;    \
	VBROADCASTSS (aoff+0)(SI), Z14;     \
	VFMADD231PS Z12, Z14, Z0;           \
	VFMADD231PS Z13, Z14, Z1;           \
	VBROADCASTSS (aoff+4)(SI), Z15;     \
	VFMADD231PS Z12, Z15, Z2;           \
	VFMADD231PS Z13, Z15, Z3;           \
	VBROADCASTSS (aoff+8)(SI), Z14;     \
	VFMADD231PS Z12, Z14, Z4;           \
	VFMADD231PS Z13, Z14, Z5;           \
	VBROADCASTSS (aoff+12)(SI), Z15;    \
	VFMADD231PS Z12, Z15, Z6;           \
	VFMADD231PS Z13, Z15, Z7;           \
	VBROADCASTSS (aoff+16)(SI), Z14;    \
	VFMADD231PS Z12, Z14, Z8;           \
	VFMADD231PS Z13, Z14, Z9;           \
	VBROADCASTSS (aoff+20)(SI), Z15;    \
	VFMADD231PS Z12, Z15, Z10;          \
	VFMADD231PS Z13, Z15, Z11

// func sgemmPanels6x32Z(k int, a, b, c *float32, ldc int, alpha, beta float32, panels int)
//
// Tiles t < panels down a 32-column strip of C: rows 6t..6t+5 of c (ldc floats
// apart) = alpha·(packed A panel t, at a + 6·k·t)·(B panels b and b + 16·k) +
// beta·C; C is not read when beta is ±0. k > 0.
TEXT ·sgemmPanels6x32Z(SB), NOSPLIT, $0-56
	MOVQ a+8(FP), SI
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8
	MOVQ c+24(FP), R15
	MOVQ panels+48(FP), R13
	MOVQ k+0(FP), BX
	SHLQ $6, BX
	VBROADCASTSS alpha+40(FP), Z16
	VBROADCASTSS beta+44(FP), Z17
	MOVL beta+44(FP), AX
	SHLL $1, AX
	TESTQ R13, R13
	JEQ pz_alldone
pz_tile:
	MOVQ k+0(FP), CX
	MOVQ b+16(FP), DI
	MOVQ R15, DX
	MOVQ DX, R9
	Z6_PFC
	Z6_ZERO
	CMPQ CX, $4
	JLT pz_tail
pz_loop4:
	PREFETCHT0 384(SI)
	Z6_STEP(0, 0)
	Z6_STEP(64, 24)
	PREFETCHT0 448(SI)
	Z6_STEP(128, 48)
	Z6_STEP(192, 72)
	ADDQ $96, SI
	ADDQ $256, DI
	SUBQ $4, CX
	CMPQ CX, $4
	JGE pz_loop4
pz_tail:
	TESTQ CX, CX
	JEQ pz_done
pz_tail1:
	Z6_STEP(0, 0)
	ADDQ $24, SI
	ADDQ $64, DI
	DECQ CX
	JNE pz_tail1
pz_done:
	CMPL alpha+40(FP), $0x3f800000 // alpha = 1: nothing to scale
	JEQ pz_scaled
	Z6_SCALE
pz_scaled:
	TESTL AX, AX
	JEQ pz_nobeta
	Z6_STORE_BETA
	JMP pz_next
pz_nobeta:
	Z6_STORE
pz_next:
	MOVQ R8, R9
	LEAQ (R9)(R9*2), R9
	LEAQ (R15)(R9*2), R15
	DECQ R13
	JNE pz_tile
pz_alldone:
	VZEROUPPER
	RET

// Z6A_STEP(boff, aoff) is Z6_STEP with A's six values read in place: aoff(SI)
// on the six rows SI, SI+R10, SI+2·R10, SI+R11 (3·R10), SI+4·R10, SI+R12 (5·R10).
#define Z6A_STEP(boff, aoff) \
	VMOVUPS     boff(DI), Z12;             \
	VMOVUPS     boff(DI)(BX*1), Z13;       \
	VBROADCASTSS aoff(SI), Z14;            \
	VFMADD231PS Z12, Z14, Z0;              \
	VFMADD231PS Z13, Z14, Z1;              \
	VBROADCASTSS aoff(SI)(R10*1), Z15;     \
	VFMADD231PS Z12, Z15, Z2;              \
	VFMADD231PS Z13, Z15, Z3;              \
	VBROADCASTSS aoff(SI)(R10*2), Z14;     \
	VFMADD231PS Z12, Z14, Z4;              \
	VFMADD231PS Z13, Z14, Z5;              \
	VBROADCASTSS aoff(SI)(R11*1), Z15;     \
	VFMADD231PS Z12, Z15, Z6;              \
	VFMADD231PS Z13, Z15, Z7;              \
	VBROADCASTSS aoff(SI)(R10*4), Z14;     \
	VFMADD231PS Z12, Z14, Z8;              \
	VFMADD231PS Z13, Z14, Z9;              \
	VBROADCASTSS aoff(SI)(R12*1), Z15;     \
	VFMADD231PS Z12, Z15, Z10;             \
	VFMADD231PS Z13, Z15, Z11

// func sgemmPanels6x32ZA(k int, a *float32, lda int, b, c *float32, ldc int, alpha, beta float32, panels int)
//
// sgemmPanels6x32Z reading six rows of a row-major A in place (lda floats apart):
// tile t reads rows 6t..6t+5 of a.
TEXT ·sgemmPanels6x32ZA(SB), NOSPLIT, $0-64
	MOVQ lda+16(FP), R10
	SHLQ $2, R10
	LEAQ (R10)(R10*2), R11
	LEAQ (R10)(R10*4), R12
	MOVQ ldc+40(FP), R8
	SHLQ $2, R8
	MOVQ a+8(FP), R14
	MOVQ c+32(FP), R15
	MOVQ panels+56(FP), R13
	MOVQ k+0(FP), BX
	SHLQ $6, BX
	VBROADCASTSS alpha+48(FP), Z16
	VBROADCASTSS beta+52(FP), Z17
	MOVL beta+52(FP), AX
	SHLL $1, AX
	TESTQ R13, R13
	JEQ az_alldone
az_tile:
	MOVQ k+0(FP), CX
	MOVQ R14, SI
	MOVQ b+24(FP), DI
	MOVQ R15, DX
	MOVQ DX, R9
	Z6_PFC
	Z6_ZERO
	CMPQ CX, $4
	JLT az_tail
az_loop4:
	PREFETCHT0 192(SI)
	PREFETCHT0 192(SI)(R10*1)
	PREFETCHT0 192(SI)(R10*2)
	Z6A_STEP(0, 0)
	Z6A_STEP(64, 4)
	PREFETCHT0 192(SI)(R11*1)
	PREFETCHT0 192(SI)(R10*4)
	PREFETCHT0 192(SI)(R12*1)
	Z6A_STEP(128, 8)
	Z6A_STEP(192, 12)
	ADDQ $16, SI
	ADDQ $256, DI
	SUBQ $4, CX
	CMPQ CX, $4
	JGE az_loop4
az_tail:
	TESTQ CX, CX
	JEQ az_done
az_tail1:
	Z6A_STEP(0, 0)
	ADDQ $4, SI
	ADDQ $64, DI
	DECQ CX
	JNE az_tail1
az_done:
	CMPL alpha+48(FP), $0x3f800000 // alpha = 1: nothing to scale
	JEQ az_scaled
	Z6_SCALE
az_scaled:
	TESTL AX, AX
	JEQ az_nobeta
	Z6_STORE_BETA
	JMP az_next
az_nobeta:
	Z6_STORE
az_next:
	LEAQ (R14)(R11*2), R14
	MOVQ R8, R9
	LEAQ (R9)(R9*2), R9
	LEAQ (R15)(R9*2), R15
	DECQ R13
	JNE az_tile
az_alldone:
	VZEROUPPER
	RET

// The edge kernel: rows < 6 of a 32-column strip, for the last, partial A panel of
// a block (m = 128 or 512 leaves 2 rows; an expert's row count, 0 to 5), which the
// 6×32 kernel would compute as a whole tile. Row i lives in Z(2i), Z(2i+1) as
// there, and sums in the same order, so its rows equal the 6×32 kernel's.

// One row of an edge step: the A value at off(SI) times the B rows in Z12, Z13.
#define EZ_ROW(off, acc0, acc1) \
	VBROADCASTSS off(SI), Z14;  \
	VFMADD231PS Z12, Z14, acc0; \
	VFMADD231PS Z13, Z14, acc1

// The two B rows of an edge step (at DI and DI+BX).
#define EZ_LOADB \
	VMOVUPS (DI), Z12;        \
	VMOVUPS (DI)(BX*1), Z13

// The end of an edge step: the next A panel column (6 floats) and B row (16).
#define EZ_NEXT \
	ADDQ $24, SI; \
	ADDQ $64, DI; \
	DECQ CX

// Row i of C (at DX) = row + beta (Z17) · C row, then DX moves to the next row.
#define EZ_STORE_BETA(acc0, acc1) \
	VFMADD231PS (DX), Z17, acc0;   \
	VFMADD231PS 64(DX), Z17, acc1; \
	VMOVUPS acc0, (DX);            \
	VMOVUPS acc1, 64(DX);          \
	ADDQ R8, DX

#define EZ_STORE(acc0, acc1) \
	VMOVUPS acc0, (DX);   \
	VMOVUPS acc1, 64(DX); \
	ADDQ R8, DX

// func sgemmEdge32Z(k int, a, b, c *float32, ldc int, alpha, beta float32, rows int)
//
// Rows i < rows (1 to 5) of a 32-column strip of C (ldc floats apart) = alpha·(packed
// 6-row A panel a, of which rows [0, rows) are read)·(B panels b and b + 16·k) +
// beta·C; C is not read when beta is ±0, and rows past rows are not touched. k > 0.
TEXT ·sgemmEdge32Z(SB), NOSPLIT, $0-56
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8
	MOVQ k+0(FP), CX
	MOVQ CX, BX
	SHLQ $6, BX
	MOVQ rows+48(FP), R13
	VBROADCASTSS alpha+40(FP), Z16
	VBROADCASTSS beta+44(FP), Z17
	MOVL beta+44(FP), AX
	SHLL $1, AX
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	CMPQ R13, $1
	JEQ ez_loop1
	CMPQ R13, $2
	JEQ ez_loop2
	CMPQ R13, $3
	JEQ ez_loop3
	CMPQ R13, $4
	JEQ ez_loop4
ez_loop5:
	EZ_LOADB
	EZ_ROW(0, Z0, Z1)
	EZ_ROW(4, Z2, Z3)
	EZ_ROW(8, Z4, Z5)
	EZ_ROW(12, Z6, Z7)
	EZ_ROW(16, Z8, Z9)
	EZ_NEXT
	JNE ez_loop5
	JMP ez_done
ez_loop4:
	EZ_LOADB
	EZ_ROW(0, Z0, Z1)
	EZ_ROW(4, Z2, Z3)
	EZ_ROW(8, Z4, Z5)
	EZ_ROW(12, Z6, Z7)
	EZ_NEXT
	JNE ez_loop4
	JMP ez_done
ez_loop3:
	EZ_LOADB
	EZ_ROW(0, Z0, Z1)
	EZ_ROW(4, Z2, Z3)
	EZ_ROW(8, Z4, Z5)
	EZ_NEXT
	JNE ez_loop3
	JMP ez_done
ez_loop2:
	EZ_LOADB
	EZ_ROW(0, Z0, Z1)
	EZ_ROW(4, Z2, Z3)
	EZ_NEXT
	JNE ez_loop2
	JMP ez_done
ez_loop1:
	EZ_LOADB
	EZ_ROW(0, Z0, Z1)
	EZ_NEXT
	JNE ez_loop1
	JMP ez_done
ez_done:
	CMPL alpha+40(FP), $0x3f800000 // alpha = 1: nothing to scale
	JEQ ez_scaled
	VMULPS Z16, Z0, Z0
	VMULPS Z16, Z1, Z1
	VMULPS Z16, Z2, Z2
	VMULPS Z16, Z3, Z3
	VMULPS Z16, Z4, Z4
	VMULPS Z16, Z5, Z5
	VMULPS Z16, Z6, Z6
	VMULPS Z16, Z7, Z7
	VMULPS Z16, Z8, Z8
	VMULPS Z16, Z9, Z9
ez_scaled:
	TESTL AX, AX
	JEQ ez_nobeta
	EZ_STORE_BETA(Z0, Z1)
	CMPQ R13, $1
	JEQ ez_end
	EZ_STORE_BETA(Z2, Z3)
	CMPQ R13, $2
	JEQ ez_end
	EZ_STORE_BETA(Z4, Z5)
	CMPQ R13, $3
	JEQ ez_end
	EZ_STORE_BETA(Z6, Z7)
	CMPQ R13, $4
	JEQ ez_end
	EZ_STORE_BETA(Z8, Z9)
	JMP ez_end
ez_nobeta:
	EZ_STORE(Z0, Z1)
	CMPQ R13, $1
	JEQ ez_end
	EZ_STORE(Z2, Z3)
	CMPQ R13, $2
	JEQ ez_end
	EZ_STORE(Z4, Z5)
	CMPQ R13, $3
	JEQ ez_end
	EZ_STORE(Z6, Z7)
	CMPQ R13, $4
	JEQ ez_end
	EZ_STORE(Z8, Z9)
ez_end:
	VZEROUPPER
	RET
