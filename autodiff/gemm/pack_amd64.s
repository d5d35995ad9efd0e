#include "textflag.h"

// Packing routines of the AVX2 path (packed.go): they copy blocks of A and B into
// the panel layouts the micro-kernel reads, with vector moves instead of one float
// at a time.

// func packA6N8(dst, a *float32, lda, blocks int)
//
// Packs 6 rows of A (lda floats apart) × 8·blocks columns into a 6-row panel:
// dst[6p+i] = a[i·lda+p]. Each block of 8 columns is a 6×8 transpose: the first
// four rows by 4×4 transposes within each 128-bit lane, the last two by unpacking.
TEXT ·packA6N8(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ lda+16(FP), R10
	SHLQ $2, R10
	LEAQ (R10)(R10*2), R11 // 3 rows
	LEAQ (R10)(R10*4), R12 // 5 rows
	MOVQ blocks+24(FP), CX
	LEAQ (R11)(R11*1), R13 // 6 rows: the next panel
	TESTQ CX, CX
	JEQ  done

loop:
	// Bring in the next panel's rows while this one is packed: a panel of a
	// short row block reads each row for only a few lines, too few for the
	// hardware prefetcher to catch on.
	LEAQ       (SI)(R13*1), R14
	PREFETCHT0 (R14)
	PREFETCHT0 (R14)(R10*1)
	PREFETCHT0 (R14)(R10*2)
	PREFETCHT0 (R14)(R11*1)
	PREFETCHT0 (R14)(R10*4)
	PREFETCHT0 (R14)(R12*1)

	VMOVUPS (SI), Y0
	VMOVUPS (SI)(R10*1), Y1
	VMOVUPS (SI)(R10*2), Y2
	VMOVUPS (SI)(R11*1), Y3
	VMOVUPS (SI)(R10*4), Y4
	VMOVUPS (SI)(R12*1), Y5

	VUNPCKLPS Y1, Y0, Y6 // r0[0] r1[0] r0[1] r1[1] | r0[4] r1[4] r0[5] r1[5]
	VUNPCKHPS Y1, Y0, Y7 // r0[2] r1[2] r0[3] r1[3] | r0[6] ...
	VUNPCKLPS Y3, Y2, Y8 // r2[0] r3[0] r2[1] r3[1] | ...
	VUNPCKHPS Y3, Y2, Y9
	VSHUFPS   $0x44, Y8, Y6, Y10 // columns 0 | 4 of rows 0-3
	VSHUFPS   $0xEE, Y8, Y6, Y11 // columns 1 | 5
	VSHUFPS   $0x44, Y9, Y7, Y12 // columns 2 | 6
	VSHUFPS   $0xEE, Y9, Y7, Y13 // columns 3 | 7
	VUNPCKLPS Y5, Y4, Y14        // r4[0] r5[0] r4[1] r5[1] | r4[4] r5[4] r4[5] r5[5]
	VUNPCKHPS Y5, Y4, Y15        // r4[2] r5[2] r4[3] r5[3] | r4[6] ...

	VMOVUPS X10, 0(DI)
	VMOVLPS X14, 16(DI)
	VMOVUPS X11, 24(DI)
	VMOVHPS X14, 40(DI)
	VMOVUPS X12, 48(DI)
	VMOVLPS X15, 64(DI)
	VMOVUPS X13, 72(DI)
	VMOVHPS X15, 88(DI)

	VEXTRACTF128 $1, Y10, 96(DI)
	VEXTRACTF128 $1, Y11, 120(DI)
	VEXTRACTF128 $1, Y12, 144(DI)
	VEXTRACTF128 $1, Y13, 168(DI)
	VEXTRACTF128 $1, Y14, X14
	VEXTRACTF128 $1, Y15, X15
	VMOVLPS X14, 112(DI)
	VMOVHPS X14, 136(DI)
	VMOVLPS X15, 160(DI)
	VMOVHPS X15, 184(DI)

	ADDQ $32, SI
	ADDQ $192, DI
	DECQ CX
	JNE  loop

done:
	VZEROUPPER
	RET

// func packA6T(dst, a *float32, lda, kc int)
//
// Packs a 6-row panel of op(A) = Aᵀ, A stored k×m: dst[6p+i] = a[p·lda+i] for
// p < kc, six consecutive floats of each of kc rows lda floats apart.
TEXT ·packA6T(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ lda+16(FP), R10
	SHLQ $2, R10
	MOVQ kc+24(FP), CX
	CMPQ CX, $2
	JLT  tail

loop2:
	VMOVUPS (SI), X0
	VMOVSD  16(SI), X1
	VMOVUPS (SI)(R10*1), X2
	VMOVSD  16(SI)(R10*1), X3
	VMOVUPS X0, 0(DI)
	VMOVSD  X1, 16(DI)
	VMOVUPS X2, 24(DI)
	VMOVSD  X3, 40(DI)
	LEAQ    (SI)(R10*2), SI
	ADDQ    $48, DI
	SUBQ    $2, CX
	CMPQ    CX, $2
	JGE     loop2

tail:
	TESTQ CX, CX
	JEQ   done
	VMOVUPS (SI), X0
	VMOVSD  16(SI), X1
	VMOVUPS X0, 0(DI)
	VMOVSD  X1, 16(DI)

done:
	RET

// func packB16N(dst, b *float32, ldb, kc int)
//
// Packs a 16-column panel of B stored k×n: dst[16p+j] = b[p·ldb+j] for p < kc.
TEXT ·packB16N(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ b+8(FP), SI
	MOVQ ldb+16(FP), R10
	SHLQ $2, R10
	MOVQ kc+24(FP), CX
	CMPQ CX, $2
	JLT  tail

loop2:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS (SI)(R10*1), Y2
	VMOVUPS 32(SI)(R10*1), Y3
	VMOVUPS Y0, 0(DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	LEAQ    (SI)(R10*2), SI
	ADDQ    $128, DI
	SUBQ    $2, CX
	CMPQ    CX, $2
	JGE     loop2

tail:
	TESTQ CX, CX
	JEQ   done
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS Y0, 0(DI)
	VMOVUPS Y1, 32(DI)

done:
	VZEROUPPER
	RET

// func packA6TBlock(dst, a *float32, lda, kc, panels int)
//
// packA6T for `panels` consecutive panels at once (6·panels columns of A, the
// panels 6·kc floats apart in dst), by groups of 8 rows: for each panel, the 8
// rows' six-float pieces fill 192 consecutive bytes of it. Panel by panel, the
// reads would walk down a column of rows lda apart, and row by row the writes
// would hop 24·kc bytes at a time: both strides map onto a few sets of the L1
// cache when they are multiples of 2 KiB.
TEXT ·packA6TBlock(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), R9
	MOVQ a+8(FP), R8
	MOVQ lda+16(FP), R10
	SHLQ $2, R10
	MOVQ kc+24(FP), BX
	LEAQ (BX)(BX*2), R11
	SHLQ $3, R11 // a panel: 24·kc bytes
	MOVQ R10, R15
	SHLQ $3, R15 // 8 rows
	MOVQ panels+32(FP), DX
	TESTQ BX, BX
	JEQ   done
	TESTQ DX, DX
	JEQ   done

group:
	MOVQ $8, R12
	CMPQ BX, R12
	CMOVQLT BX, R12 // rows in this group
	MOVQ R8, AX     // the group's rows, at the current panel's columns
	MOVQ R9, R14    // the current panel, at the group's first row
	MOVQ DX, CX

panel:
	MOVQ AX, SI
	MOVQ R14, DI
	MOVQ R12, R13

piece:
	PREFETCHT0 (SI)(R15*1) // the same columns of the next group of rows
	VMOVUPS    (SI), X0
	VMOVSD     16(SI), X1
	VMOVUPS    X0, 0(DI)
	VMOVSD     X1, 16(DI)
	ADDQ       R10, SI
	ADDQ       $24, DI
	DECQ       R13
	JNE        piece

	ADDQ $24, AX
	ADDQ R11, R14
	DECQ CX
	JNE  panel

	MOVQ  R12, R13
	IMULQ R10, R13
	ADDQ  R13, R8 // the next group of rows
	LEAQ  (R12)(R12*2), R13
	SHLQ  $3, R13
	ADDQ  R13, R9
	SUBQ  R12, BX
	JNE   group

done:
	RET

// func packB16NBlock(dst, b *float32, ldb, kc, panels int)
//
// packB16N for `panels` consecutive panels at once (16·panels columns of B, the
// panels 16·kc floats apart in dst), one row of B at a time: B is read in the
// order it is stored, so that the hardware prefetcher follows one stream (rows
// of the MoE's hidden layer are 2 KiB, all of a block one run of memory), and
// each row leaves 64 bytes in every panel. Reading groups of rows side by side
// instead (four streams of 32 lines each) ran at 60-70 % of a copy's speed from
// memory; this runs at 85-95 %.
TEXT ·packB16NBlock(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), R9
	MOVQ b+8(FP), R8
	MOVQ ldb+16(FP), R10
	SHLQ $2, R10
	MOVQ kc+24(FP), BX
	MOVQ BX, R11
	SHLQ $6, R11 // a panel: 64·kc bytes
	MOVQ panels+32(FP), DX
	TESTQ BX, BX
	JEQ   done
	TESTQ DX, DX
	JEQ   done

row:
	MOVQ R8, SI
	MOVQ R9, DI
	MOVQ DX, CX

panel:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS Y0, 0(DI)
	VMOVUPS Y1, 32(DI)
	ADDQ    $64, SI
	ADDQ    R11, DI
	DECQ    CX
	JNE     panel

	ADDQ R10, R8
	ADDQ $64, R9
	DECQ BX
	JNE  row

done:
	VZEROUPPER
	RET

// TRANSPOSE8 transposes the 8×8 block in Y0..Y7 (row r in Yr) into Y8..Y15
// (column c in Y(8+c)), through Y0..Y7.
#define TRANSPOSE8 \
	VUNPCKLPS  Y1, Y0, Y8;         \
	VUNPCKHPS  Y1, Y0, Y9;         \
	VUNPCKLPS  Y3, Y2, Y10;        \
	VUNPCKHPS  Y3, Y2, Y11;        \
	VUNPCKLPS  Y5, Y4, Y12;        \
	VUNPCKHPS  Y5, Y4, Y13;        \
	VUNPCKLPS  Y7, Y6, Y14;        \
	VUNPCKHPS  Y7, Y6, Y15;        \
	VSHUFPS    $0x44, Y10, Y8, Y0; \
	VSHUFPS    $0xEE, Y10, Y8, Y1; \
	VSHUFPS    $0x44, Y11, Y9, Y2; \
	VSHUFPS    $0xEE, Y11, Y9, Y3; \
	VSHUFPS    $0x44, Y14, Y12, Y4; \
	VSHUFPS    $0xEE, Y14, Y12, Y5; \
	VSHUFPS    $0x44, Y15, Y13, Y6; \
	VSHUFPS    $0xEE, Y15, Y13, Y7; \
	VPERM2F128 $0x20, Y4, Y0, Y8;  \
	VPERM2F128 $0x20, Y5, Y1, Y9;  \
	VPERM2F128 $0x20, Y6, Y2, Y10; \
	VPERM2F128 $0x20, Y7, Y3, Y11; \
	VPERM2F128 $0x31, Y4, Y0, Y12; \
	VPERM2F128 $0x31, Y5, Y1, Y13; \
	VPERM2F128 $0x31, Y6, Y2, Y14; \
	VPERM2F128 $0x31, Y7, Y3, Y15

// LOAD8 loads 8 floats of each of the 8 rows at base (rows R10 bytes apart; R11
// = 3, R12 = 5, R13 = 7 rows) into Y0..Y7.
#define LOAD8(base) \
	VMOVUPS (base), Y0;         \
	VMOVUPS (base)(R10*1), Y1;  \
	VMOVUPS (base)(R10*2), Y2;  \
	VMOVUPS (base)(R11*1), Y3;  \
	VMOVUPS (base)(R10*4), Y4;  \
	VMOVUPS (base)(R12*1), Y5;  \
	VMOVUPS (base)(R11*2), Y6;  \
	VMOVUPS (base)(R13*1), Y7

// STORE8 stores Y8..Y15 to eight rows of the panel, 64 bytes apart, from off(DI).
#define STORE8(off) \
	VMOVUPS Y8, (off)(DI);      \
	VMOVUPS Y9, (off+64)(DI);   \
	VMOVUPS Y10, (off+128)(DI); \
	VMOVUPS Y11, (off+192)(DI); \
	VMOVUPS Y12, (off+256)(DI); \
	VMOVUPS Y13, (off+320)(DI); \
	VMOVUPS Y14, (off+384)(DI); \
	VMOVUPS Y15, (off+448)(DI)

// func packB16T8(dst, b *float32, ldb, blocks int)
//
// Packs a 16-column panel of op(B) = Bᵀ, B stored n×k (column j of the panel is
// row j of B, ldb floats apart), for 8·blocks depths: dst[16p+j] = b[j·ldb+p].
// Each block of 8 depths is two 8×8 transposes.
TEXT ·packB16T8(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ b+8(FP), SI
	MOVQ ldb+16(FP), R10
	SHLQ $2, R10
	LEAQ (R10)(R10*2), R11 // 3 rows
	LEAQ (R10)(R10*4), R12 // 5 rows
	LEAQ (R11)(R10*4), R13 // 7 rows
	LEAQ (SI)(R10*8), R14  // rows 8..15
	MOVQ blocks+24(FP), CX
	TESTQ CX, CX
	JEQ   done

loop:
	LOAD8(SI)
	TRANSPOSE8
	STORE8(0)
	LOAD8(R14)
	TRANSPOSE8
	STORE8(32)
	ADDQ $32, SI
	ADDQ $32, R14
	ADDQ $512, DI
	DECQ CX
	JNE  loop

done:
	VZEROUPPER
	RET
