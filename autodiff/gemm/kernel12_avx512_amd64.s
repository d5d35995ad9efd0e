#include "textflag.h"
#include "zmm_amd64.h"

// The 12×32 AVX-512 kernel for a transposed A read in place (the weight
// gradients C = Aᵀ·B): two 6-row panels per tile, 24 zmm accumulators (row i in
// Z(2i), Z(2i+1)), the two B rows of a step in Z24, Z25, and A's broadcasts in
// Z26..Z31. Each step loads one B row pair for 24 FMAs (the 6×32 kernel loads
// one per 12) and reads twelve side-by-side floats of one row of the stored A.
// Every element of C sums over k in the same order as in the 6×32 kernels.

// One row of a step: the A value at off(SI) times the B rows in Z24, Z25.
#define T12_ROW(off, tmp, acc0, acc1) \
	VBROADCASTSS off(SI), tmp;  \
	VFMADD231PS Z24, tmp, acc0; \
	VFMADD231PS Z25, tmp, acc1

// One step p: B rows at boff(DI) and boff(DI)(BX), A's row p at SI (12 floats),
// then SI moves to row p+1. The prefetches fetch A's row 8 steps ahead (R12).
#define T12_STEP(boff) \
	PREFETCHT0 (SI)(R12*1);                \
	PREFETCHT0 47(SI)(R12*1);              \
	VMOVUPS boff(DI), Z24;                 \
	VMOVUPS boff(DI)(BX*1), Z25;           \
	T12_ROW(0, Z26, Z0, Z1);               \
	T12_ROW(4, Z27, Z2, Z3);               \
	T12_ROW(8, Z28, Z4, Z5);               \
	T12_ROW(12, Z29, Z6, Z7);              \
	T12_ROW(16, Z30, Z8, Z9);              \
	T12_ROW(20, Z31, Z10, Z11);            \
	T12_ROW(24, Z26, Z12, Z13);            \
	T12_ROW(28, Z27, Z14, Z15);            \
	T12_ROW(32, Z28, Z16, Z17);            \
	T12_ROW(36, Z29, Z18, Z19);            \
	T12_ROW(40, Z30, Z20, Z21);            \
	T12_ROW(44, Z31, Z22, Z23);            \
	ADDQ R10, SI

// Row i of C (at DX) = row + beta (Z25) · C row; DX moves to the next row.
#define T12_STORE_BETA(acc0, acc1) \
	VFMADD231PS (DX), Z25, acc0;   \
	VFMADD231PS 64(DX), Z25, acc1; \
	VMOVUPS acc0, (DX);            \
	VMOVUPS acc1, 64(DX);          \
	ADDQ R8, DX

#define T12_STORE(acc0, acc1) \
	VMOVUPS acc0, (DX);   \
	VMOVUPS acc1, 64(DX); \
	ADDQ R8, DX

// func sgemmPanels12x32ZT(k int, a *float32, lda int, b, c *float32, ldc int, alpha, beta float32, pairs int)
//
// Tiles t < pairs down a 32-column strip of C: rows 12t..12t+11 of c (ldc floats
// apart) = alpha·Aᵀ·(B panels b and b + 16·k) + beta·C, where step p of tile t
// broadcasts the twelve floats a[p·lda+12t .. p·lda+12t+11]; C is not read when
// beta is ±0. k > 0.
// The edge kernels' accumulators Z0–Z21 (rows < 12, row i in Z(2i), Z(2i+1)):
// cleared, scaled by α (in Z24), and the first R13 rows stored with β (in Z25)
// or without, then a jump to end.
#define T12E_ZERO \
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
	VPXORD Z11, Z11, Z11; \
	VPXORD Z12, Z12, Z12; \
	VPXORD Z13, Z13, Z13; \
	VPXORD Z14, Z14, Z14; \
	VPXORD Z15, Z15, Z15; \
	VPXORD Z16, Z16, Z16; \
	VPXORD Z17, Z17, Z17; \
	VPXORD Z18, Z18, Z18; \
	VPXORD Z19, Z19, Z19; \
	VPXORD Z20, Z20, Z20; \
	VPXORD Z21, Z21, Z21

#define T12E_SCALE \
	VMULPS Z24, Z0, Z0; \
	VMULPS Z24, Z1, Z1; \
	VMULPS Z24, Z2, Z2; \
	VMULPS Z24, Z3, Z3; \
	VMULPS Z24, Z4, Z4; \
	VMULPS Z24, Z5, Z5; \
	VMULPS Z24, Z6, Z6; \
	VMULPS Z24, Z7, Z7; \
	VMULPS Z24, Z8, Z8; \
	VMULPS Z24, Z9, Z9; \
	VMULPS Z24, Z10, Z10; \
	VMULPS Z24, Z11, Z11; \
	VMULPS Z24, Z12, Z12; \
	VMULPS Z24, Z13, Z13; \
	VMULPS Z24, Z14, Z14; \
	VMULPS Z24, Z15, Z15; \
	VMULPS Z24, Z16, Z16; \
	VMULPS Z24, Z17, Z17; \
	VMULPS Z24, Z18, Z18; \
	VMULPS Z24, Z19, Z19; \
	VMULPS Z24, Z20, Z20; \
	VMULPS Z24, Z21, Z21

#define T12E_STORES_BETA(end) \
	T12_STORE_BETA(Z0, Z1); \
	CMPQ R13, $1; \
	JEQ end; \
	T12_STORE_BETA(Z2, Z3); \
	CMPQ R13, $2; \
	JEQ end; \
	T12_STORE_BETA(Z4, Z5); \
	CMPQ R13, $3; \
	JEQ end; \
	T12_STORE_BETA(Z6, Z7); \
	CMPQ R13, $4; \
	JEQ end; \
	T12_STORE_BETA(Z8, Z9); \
	CMPQ R13, $5; \
	JEQ end; \
	T12_STORE_BETA(Z10, Z11); \
	CMPQ R13, $6; \
	JEQ end; \
	T12_STORE_BETA(Z12, Z13); \
	CMPQ R13, $7; \
	JEQ end; \
	T12_STORE_BETA(Z14, Z15); \
	CMPQ R13, $8; \
	JEQ end; \
	T12_STORE_BETA(Z16, Z17); \
	CMPQ R13, $9; \
	JEQ end; \
	T12_STORE_BETA(Z18, Z19); \
	CMPQ R13, $10; \
	JEQ end; \
	T12_STORE_BETA(Z20, Z21)

#define T12E_STORES(end) \
	T12_STORE(Z0, Z1); \
	CMPQ R13, $1; \
	JEQ end; \
	T12_STORE(Z2, Z3); \
	CMPQ R13, $2; \
	JEQ end; \
	T12_STORE(Z4, Z5); \
	CMPQ R13, $3; \
	JEQ end; \
	T12_STORE(Z6, Z7); \
	CMPQ R13, $4; \
	JEQ end; \
	T12_STORE(Z8, Z9); \
	CMPQ R13, $5; \
	JEQ end; \
	T12_STORE(Z10, Z11); \
	CMPQ R13, $6; \
	JEQ end; \
	T12_STORE(Z12, Z13); \
	CMPQ R13, $7; \
	JEQ end; \
	T12_STORE(Z14, Z15); \
	CMPQ R13, $8; \
	JEQ end; \
	T12_STORE(Z16, Z17); \
	CMPQ R13, $9; \
	JEQ end; \
	T12_STORE(Z18, Z19); \
	CMPQ R13, $10; \
	JEQ end; \
	T12_STORE(Z20, Z21)

// T12E_ROWSn: one step's FMAs for the first n rows (B's row pair in Z24, Z25).
#define T12E_ROWS1 \
	T12_ROW(0, Z26, Z0, Z1)

#define T12E_ROWS2 \
	T12E_ROWS1; \
	T12_ROW(4, Z27, Z2, Z3)

#define T12E_ROWS3 \
	T12E_ROWS2; \
	T12_ROW(8, Z28, Z4, Z5)

#define T12E_ROWS4 \
	T12E_ROWS3; \
	T12_ROW(12, Z29, Z6, Z7)

#define T12E_ROWS5 \
	T12E_ROWS4; \
	T12_ROW(16, Z30, Z8, Z9)

#define T12E_ROWS6 \
	T12E_ROWS5; \
	T12_ROW(20, Z31, Z10, Z11)

#define T12E_ROWS7 \
	T12E_ROWS6; \
	T12_ROW(24, Z26, Z12, Z13)

#define T12E_ROWS8 \
	T12E_ROWS7; \
	T12_ROW(28, Z27, Z14, Z15)

#define T12E_ROWS9 \
	T12E_ROWS8; \
	T12_ROW(32, Z28, Z16, Z17)

#define T12E_ROWS10 \
	T12E_ROWS9; \
	T12_ROW(36, Z29, Z18, Z19)

#define T12E_ROWS11 \
	T12E_ROWS10; \
	T12_ROW(40, Z30, Z20, Z21)

// The 12×32 tiles' 24 accumulators Z0–Z23 (row i in Z(2i), Z(2i+1)): cleared,
// scaled by α (in Z24), stored with β (in Z25) and stored.
#define T12_ZERO \
	T12E_ZERO; \
	VPXORD Z22, Z22, Z22; \
	VPXORD Z23, Z23, Z23

#define T12_SCALE \
	T12E_SCALE; \
	VMULPS Z24, Z22, Z22; \
	VMULPS Z24, Z23, Z23

#define T12_STORE_BETA_ALL \
	T12_STORE_BETA(Z0, Z1); \
	T12_STORE_BETA(Z2, Z3); \
	T12_STORE_BETA(Z4, Z5); \
	T12_STORE_BETA(Z6, Z7); \
	T12_STORE_BETA(Z8, Z9); \
	T12_STORE_BETA(Z10, Z11); \
	T12_STORE_BETA(Z12, Z13); \
	T12_STORE_BETA(Z14, Z15); \
	T12_STORE_BETA(Z16, Z17); \
	T12_STORE_BETA(Z18, Z19); \
	T12_STORE_BETA(Z20, Z21); \
	T12_STORE_BETA(Z22, Z23)

#define T12_STORE_ALL \
	T12_STORE(Z0, Z1); \
	T12_STORE(Z2, Z3); \
	T12_STORE(Z4, Z5); \
	T12_STORE(Z6, Z7); \
	T12_STORE(Z8, Z9); \
	T12_STORE(Z10, Z11); \
	T12_STORE(Z12, Z13); \
	T12_STORE(Z14, Z15); \
	T12_STORE(Z16, Z17); \
	T12_STORE(Z18, Z19); \
	T12_STORE(Z20, Z21); \
	T12_STORE(Z22, Z23)

TEXT ·sgemmPanels12x32ZT(SB), NOSPLIT, $0-64
	MOVQ lda+16(FP), R10
	SHLQ $2, R10
	MOVQ R10, R12
	SHLQ $3, R12 // eight rows ahead
	MOVQ a+8(FP), R14
	MOVQ ldc+40(FP), R8
	SHLQ $2, R8
	MOVQ c+32(FP), R15
	MOVQ pairs+56(FP), R13
	MOVQ k+0(FP), BX
	SHLQ $6, BX
	MOVL beta+52(FP), AX
	SHLL $1, AX
	TESTQ R13, R13
	JEQ t12_alldone

t12_tile:
	MOVQ k+0(FP), CX
	MOVQ R14, SI
	MOVQ b+24(FP), DI
	MOVQ R15, DX
	MOVQ DX, R9
	PFC32
	PFC32
	PFC32
	PFC32
	PFC32
	PFC32
	PFC32
	PFC32
	PFC32
	PFC32
	PFC32
	PFC32
	T12_ZERO
	CMPQ CX, $4
	JLT t12_tail

t12_loop4:
	T12_STEP(0)
	T12_STEP(64)
	T12_STEP(128)
	T12_STEP(192)
	ADDQ $256, DI
	SUBQ $4, CX
	CMPQ CX, $4
	JGE t12_loop4

t12_tail:
	TESTQ CX, CX
	JEQ t12_done

t12_tail1:
	T12_STEP(0)
	ADDQ $64, DI
	DECQ CX
	JNE t12_tail1

t12_done:
	CMPL alpha+48(FP), $0x3f800000 // alpha = 1: nothing to scale
	JEQ t12_scaled
	VBROADCASTSS alpha+48(FP), Z24
	T12_SCALE

t12_scaled:
	TESTL AX, AX
	JEQ t12_nobeta
	VBROADCASTSS beta+52(FP), Z25
	T12_STORE_BETA_ALL
	JMP t12_next

t12_nobeta:
	T12_STORE_ALL

t12_next:
	MOVQ DX, R15 // DX is twelve rows on
	ADDQ $48, R14
	DECQ R13
	JNE t12_tile

t12_alldone:
	VZEROUPPER
	RET

// The edge kernel for a transposed A in place: rows < 12 of a 32-column strip,
// the rows past a block's last 12-row tile (m = 128 or 512 leaves 8), read in
// place like the tiles' (no packed, zero-padded panel), row i in Z(2i), Z(2i+1),
// summing in the same order as the 12×32 and 6×32 kernels.

// The two B rows of an edge step (at DI and DI+BX) and the prefetch of A's row
// eight steps ahead.
#define TE_LOADB \
	PREFETCHT0 (SI)(R12*1);   \
	PREFETCHT0 47(SI)(R12*1); \
	VMOVUPS (DI), Z24;        \
	VMOVUPS (DI)(BX*1), Z25

// The end of an edge step: A's next row and B's next row pair.
#define TE_NEXT \
	ADDQ R10, SI; \
	ADDQ $64, DI; \
	DECQ CX

// func sgemmEdge32ZT(k int, a *float32, lda int, b, c *float32, ldc int, alpha, beta float32, rows int)
//
// Rows i < rows (1 to 11) of a 32-column strip of C (ldc floats apart) =
// alpha·Aᵀ·(B panels b and b + 16·k) + beta·C, step p broadcasting
// a[p·lda+i] for i < rows (nothing past them is read); C is not read when beta
// is ±0, and rows past rows are not touched. k > 0.
TEXT ·sgemmEdge32ZT(SB), NOSPLIT, $0-64
	MOVQ lda+16(FP), R10
	SHLQ $2, R10
	MOVQ R10, R12
	SHLQ $3, R12 // eight rows ahead
	MOVQ a+8(FP), SI
	MOVQ b+24(FP), DI
	MOVQ c+32(FP), DX
	MOVQ ldc+40(FP), R8
	SHLQ $2, R8
	MOVQ k+0(FP), CX
	MOVQ CX, BX
	SHLQ $6, BX
	MOVQ rows+56(FP), R13
	MOVL beta+52(FP), AX
	SHLL $1, AX
	T12E_ZERO
	CMPQ R13, $1
	JEQ te_loop1
	CMPQ R13, $2
	JEQ te_loop2
	CMPQ R13, $3
	JEQ te_loop3
	CMPQ R13, $4
	JEQ te_loop4
	CMPQ R13, $5
	JEQ te_loop5
	CMPQ R13, $6
	JEQ te_loop6
	CMPQ R13, $7
	JEQ te_loop7
	CMPQ R13, $8
	JEQ te_loop8
	CMPQ R13, $9
	JEQ te_loop9
	CMPQ R13, $10
	JEQ te_loop10
te_loop11:
	TE_LOADB
	T12E_ROWS11
	TE_NEXT
	JNE te_loop11
	JMP te_done
te_loop10:
	TE_LOADB
	T12E_ROWS10
	TE_NEXT
	JNE te_loop10
	JMP te_done
te_loop9:
	TE_LOADB
	T12E_ROWS9
	TE_NEXT
	JNE te_loop9
	JMP te_done
te_loop8:
	TE_LOADB
	T12E_ROWS8
	TE_NEXT
	JNE te_loop8
	JMP te_done
te_loop7:
	TE_LOADB
	T12E_ROWS7
	TE_NEXT
	JNE te_loop7
	JMP te_done
te_loop6:
	TE_LOADB
	T12E_ROWS6
	TE_NEXT
	JNE te_loop6
	JMP te_done
te_loop5:
	TE_LOADB
	T12E_ROWS5
	TE_NEXT
	JNE te_loop5
	JMP te_done
te_loop4:
	TE_LOADB
	T12E_ROWS4
	TE_NEXT
	JNE te_loop4
	JMP te_done
te_loop3:
	TE_LOADB
	T12E_ROWS3
	TE_NEXT
	JNE te_loop3
	JMP te_done
te_loop2:
	TE_LOADB
	T12E_ROWS2
	TE_NEXT
	JNE te_loop2
	JMP te_done
te_loop1:
	TE_LOADB
	T12E_ROWS1
	TE_NEXT
	JNE te_loop1
	JMP te_done
te_done:
	CMPL alpha+48(FP), $0x3f800000 // alpha = 1: nothing to scale
	JEQ te_scaled
	VBROADCASTSS alpha+48(FP), Z24
	T12E_SCALE
te_scaled:
	TESTL AX, AX
	JEQ te_nobeta
	VBROADCASTSS beta+52(FP), Z25
	T12E_STORES_BETA(te_end)
	JMP te_end
te_nobeta:
	T12E_STORES(te_end)
te_end:
	VZEROUPPER
	RET

// The same kernels reading B in place too (rows ldb floats apart, the 32 columns
// side by side in each), for weight gradients whose B is a stored activation
// read once from memory: packing it first cost a pass over it (a 1 MiB hidden
// layer per expert) with the FMA units idle; here its lines arrive while the
// first tile computes, and later tiles find them in L2.

// A step reading B in place: B's row p at DI (32 floats), A's at SI; both move
// on a row. The prefetches fetch A's and B's rows sixteen steps ahead (R12,
// R11), as both may come from memory (eight did 1-2 % worse there).
#define T12B_STEP \
	PREFETCHT0 (SI)(R12*1);                \
	PREFETCHT0 47(SI)(R12*1);              \
	PREFETCHT0 (DI)(R11*1);                \
	PREFETCHT0 127(DI)(R11*1);             \
	VMOVUPS (DI), Z24;                     \
	VMOVUPS 64(DI), Z25;                   \
	T12_ROW(0, Z26, Z0, Z1);               \
	T12_ROW(4, Z27, Z2, Z3);               \
	T12_ROW(8, Z28, Z4, Z5);               \
	T12_ROW(12, Z29, Z6, Z7);              \
	T12_ROW(16, Z30, Z8, Z9);              \
	T12_ROW(20, Z31, Z10, Z11);            \
	T12_ROW(24, Z26, Z12, Z13);            \
	T12_ROW(28, Z27, Z14, Z15);            \
	T12_ROW(32, Z28, Z16, Z17);            \
	T12_ROW(36, Z29, Z18, Z19);            \
	T12_ROW(40, Z30, Z20, Z21);            \
	T12_ROW(44, Z31, Z22, Z23);            \
	ADDQ R10, SI;                          \
	ADDQ BX, DI

// func sgemmPanels12x32ZTB(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, pairs int)
//
// sgemmPanels12x32ZT with step p reading b[p·ldb .. p·ldb+31].
TEXT ·sgemmPanels12x32ZTB(SB), NOSPLIT, $0-72
	MOVQ lda+16(FP), R10
	SHLQ $2, R10
	MOVQ R10, R12
	SHLQ $4, R12 // sixteen rows ahead
	MOVQ a+8(FP), R14
	MOVQ ldc+48(FP), R8
	SHLQ $2, R8
	MOVQ c+40(FP), R15
	MOVQ pairs+64(FP), R13
	MOVQ ldb+32(FP), BX
	SHLQ $2, BX
	MOVQ BX, R11
	SHLQ $4, R11 // sixteen rows ahead
	MOVL beta+60(FP), AX
	SHLL $1, AX
	TESTQ R13, R13
	JEQ b12_alldone

b12_tile:
	MOVQ k+0(FP), CX
	MOVQ R14, SI
	MOVQ b+24(FP), DI
	MOVQ R15, DX
	MOVQ DX, R9
	PFC32
	PFC32
	PFC32
	PFC32
	PFC32
	PFC32
	PFC32
	PFC32
	PFC32
	PFC32
	PFC32
	PFC32
	T12_ZERO
	CMPQ CX, $4
	JLT b12_tail

b12_loop4:
	T12B_STEP
	T12B_STEP
	T12B_STEP
	T12B_STEP
	SUBQ $4, CX
	CMPQ CX, $4
	JGE b12_loop4

b12_tail:
	TESTQ CX, CX
	JEQ b12_done

b12_tail1:
	T12B_STEP
	DECQ CX
	JNE b12_tail1

b12_done:
	CMPL alpha+56(FP), $0x3f800000 // alpha = 1: nothing to scale
	JEQ b12_scaled
	VBROADCASTSS alpha+56(FP), Z24
	T12_SCALE

b12_scaled:
	TESTL AX, AX
	JEQ b12_nobeta
	VBROADCASTSS beta+60(FP), Z25
	T12_STORE_BETA_ALL
	JMP b12_next

b12_nobeta:
	T12_STORE_ALL

b12_next:
	MOVQ DX, R15 // DX is twelve rows on
	ADDQ $48, R14
	DECQ R13
	JNE b12_tile

b12_alldone:
	VZEROUPPER
	RET

// The edge kernel's step start with B in place (see T12B_STEP) and its end.
#define TB_LOADB \
	PREFETCHT0 (SI)(R12*1);    \
	PREFETCHT0 47(SI)(R12*1);  \
	PREFETCHT0 (DI)(R11*1);    \
	PREFETCHT0 127(DI)(R11*1); \
	VMOVUPS (DI), Z24;         \
	VMOVUPS 64(DI), Z25

#define TB_NEXT \
	ADDQ R10, SI; \
	ADDQ BX, DI;  \
	DECQ CX

// func sgemmEdge32ZTB(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32, rows int)
//
// sgemmEdge32ZT with step p reading b[p·ldb .. p·ldb+31].
TEXT ·sgemmEdge32ZTB(SB), NOSPLIT, $0-72
	MOVQ lda+16(FP), R10
	SHLQ $2, R10
	MOVQ R10, R12
	SHLQ $4, R12 // sixteen rows ahead
	MOVQ a+8(FP), SI
	MOVQ b+24(FP), DI
	MOVQ c+40(FP), DX
	MOVQ ldc+48(FP), R8
	SHLQ $2, R8
	MOVQ k+0(FP), CX
	MOVQ ldb+32(FP), BX
	SHLQ $2, BX
	MOVQ BX, R11
	SHLQ $4, R11 // sixteen rows ahead
	MOVQ rows+64(FP), R13
	MOVL beta+60(FP), AX
	SHLL $1, AX
	T12E_ZERO
	CMPQ R13, $1
	JEQ be_loop1
	CMPQ R13, $2
	JEQ be_loop2
	CMPQ R13, $3
	JEQ be_loop3
	CMPQ R13, $4
	JEQ be_loop4
	CMPQ R13, $5
	JEQ be_loop5
	CMPQ R13, $6
	JEQ be_loop6
	CMPQ R13, $7
	JEQ be_loop7
	CMPQ R13, $8
	JEQ be_loop8
	CMPQ R13, $9
	JEQ be_loop9
	CMPQ R13, $10
	JEQ be_loop10
be_loop11:
	TB_LOADB
	T12E_ROWS11
	TB_NEXT
	JNE be_loop11
	JMP be_done
be_loop10:
	TB_LOADB
	T12E_ROWS10
	TB_NEXT
	JNE be_loop10
	JMP be_done
be_loop9:
	TB_LOADB
	T12E_ROWS9
	TB_NEXT
	JNE be_loop9
	JMP be_done
be_loop8:
	TB_LOADB
	T12E_ROWS8
	TB_NEXT
	JNE be_loop8
	JMP be_done
be_loop7:
	TB_LOADB
	T12E_ROWS7
	TB_NEXT
	JNE be_loop7
	JMP be_done
be_loop6:
	TB_LOADB
	T12E_ROWS6
	TB_NEXT
	JNE be_loop6
	JMP be_done
be_loop5:
	TB_LOADB
	T12E_ROWS5
	TB_NEXT
	JNE be_loop5
	JMP be_done
be_loop4:
	TB_LOADB
	T12E_ROWS4
	TB_NEXT
	JNE be_loop4
	JMP be_done
be_loop3:
	TB_LOADB
	T12E_ROWS3
	TB_NEXT
	JNE be_loop3
	JMP be_done
be_loop2:
	TB_LOADB
	T12E_ROWS2
	TB_NEXT
	JNE be_loop2
	JMP be_done
be_loop1:
	TB_LOADB
	T12E_ROWS1
	TB_NEXT
	JNE be_loop1
	JMP be_done
be_done:
	CMPL alpha+56(FP), $0x3f800000 // alpha = 1: nothing to scale
	JEQ be_scaled
	VBROADCASTSS alpha+56(FP), Z24
	T12E_SCALE
be_scaled:
	TESTL AX, AX
	JEQ be_nobeta
	VBROADCASTSS beta+60(FP), Z25
	T12E_STORES_BETA(be_end)
	JMP be_end
be_nobeta:
	T12E_STORES(be_end)
be_end:
	VZEROUPPER
	RET
