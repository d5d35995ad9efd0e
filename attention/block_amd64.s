//go:build amd64

#include "textflag.h"

// A strip's four output rows are at DI, DI+R8, DI+2·R8 and DI+SI (3·R8).
// SCALE4x2 multiplies a two-register-wide strip (row i in ai, bi; bi w bytes on)
// by s; ACC4x2 adds the rows' old values; STORE4x2 stores it. SCALE4, ACC4 and
// STORE4 do the same for a one-register-wide strip.
#define SCALE4x2(s, a0, b0, a1, b1, a2, b2, a3, b3) \
	VMULPS s, a0, a0; VMULPS s, b0, b0; VMULPS s, a1, a1; VMULPS s, b1, b1; \
	VMULPS s, a2, a2; VMULPS s, b2, b2; VMULPS s, a3, a3; VMULPS s, b3, b3

#define ACC4x2(w, a0, b0, a1, b1, a2, b2, a3, b3) \
	VADDPS (DI), a0, a0;        VADDPS w(DI), b0, b0;        \
	VADDPS (DI)(R8*1), a1, a1;  VADDPS w(DI)(R8*1), b1, b1;  \
	VADDPS (DI)(R8*2), a2, a2;  VADDPS w(DI)(R8*2), b2, b2;  \
	VADDPS (DI)(SI*1), a3, a3;  VADDPS w(DI)(SI*1), b3, b3

#define STORE4x2(w, a0, b0, a1, b1, a2, b2, a3, b3) \
	VMOVUPS a0, (DI);        VMOVUPS b0, w(DI);        \
	VMOVUPS a1, (DI)(R8*1);  VMOVUPS b1, w(DI)(R8*1);  \
	VMOVUPS a2, (DI)(R8*2);  VMOVUPS b2, w(DI)(R8*2);  \
	VMOVUPS a3, (DI)(SI*1);  VMOVUPS b3, w(DI)(SI*1)

#define SCALE4(s, a0, a1, a2, a3) \
	VMULPS s, a0, a0; VMULPS s, a1, a1; VMULPS s, a2, a2; VMULPS s, a3, a3

#define ACC4(a0, a1, a2, a3) \
	VADDPS (DI), a0, a0;       VADDPS (DI)(R8*1), a1, a1; \
	VADDPS (DI)(R8*2), a2, a2; VADDPS (DI)(SI*1), a3, a3

#define STORE4(a0, a1, a2, a3) \
	VMOVUPS a0, (DI);       VMOVUPS a1, (DI)(R8*1); \
	VMOVUPS a2, (DI)(R8*2); VMOVUPS a3, (DI)(SI*1)

// STRIP8(done, k, store, t2, t3) is a strip's last 8 columns (one ymm per row)
// when at least 8 remain (BX), else a jump to done: A's rows broadcast against
// B's row at R13 over CX steps, scaled by Y12, added to the old rows when acc is
// set, stored. k and store are its labels, t2 and t3 two broadcast temporaries.
#define STRIP8(done, k, store, t2, t3) \
	CMPQ   BX, $8; \
	JLT    done; \
	VXORPS Y0, Y0, Y0; \
	VXORPS Y2, Y2, Y2; \
	VXORPS Y4, Y4, Y4; \
	VXORPS Y6, Y6, Y6; \
	MOVQ   a+16(FP), AX; \
	MOVQ   DX, R13; \
	MOVQ   CX, R14; \
k:; \
	VMOVUPS      (R13), Y8; \
	VBROADCASTSS (AX), Y10; \
	VFMADD231PS  Y8, Y10, Y0; \
	VBROADCASTSS (AX)(R9*1), Y11; \
	VFMADD231PS  Y8, Y11, Y2; \
	VBROADCASTSS (AX)(R9*2), t2; \
	VFMADD231PS  Y8, t2, Y4; \
	VBROADCASTSS (AX)(R12*1), t3; \
	VFMADD231PS  Y8, t3, Y6; \
	ADDQ         R10, AX; \
	ADDQ         R11, R13; \
	DECQ         R14; \
	JNZ          k; \
	SCALE4(Y12, Y0, Y2, Y4, Y6); \
	CMPQ         acc+80(FP), $0; \
	JEQ          store; \
	ACC4(Y0, Y2, Y4, Y6); \
store:; \
	STORE4(Y0, Y2, Y4, Y6)

// func tileStrip4(c *float32, ldc int, a *float32, ars, acs int, b *float32, ldb, n, k int, alpha float32, acc int)
//
// Rows 0..3 of C (row stride ldc) get alpha·Σ_p A(i, p)·B[p][:n] (plus their old
// value when acc ≠ 0), A(i, p) at a + i·ars + p·acs, B rows ldb apart; strides in
// elements, n a multiple of 8, k ≥ 1. Blocks of 16 columns keep 8 accumulators;
// a last block of 8 keeps 4.
TEXT ·tileStrip4(SB), NOSPLIT, $0-88
	MOVQ         c+0(FP), DI
	MOVQ         ldc+8(FP), R8
	SHLQ         $2, R8
	MOVQ         ars+24(FP), R9
	SHLQ         $2, R9
	MOVQ         acs+32(FP), R10
	SHLQ         $2, R10
	MOVQ         b+40(FP), DX
	MOVQ         ldb+48(FP), R11
	SHLQ         $2, R11
	MOVQ         n+56(FP), BX
	MOVQ         k+64(FP), CX
	VBROADCASTSS alpha+72(FP), Y12
	LEAQ         (R9)(R9*2), R12 // 3·ars
	LEAQ         (R8)(R8*2), SI  // 3·ldc

block16:
	CMPQ   BX, $16
	JLT    block8
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	MOVQ   a+16(FP), AX
	MOVQ   DX, R13
	MOVQ   CX, R14

k16:
	VMOVUPS      (R13), Y8
	VMOVUPS      32(R13), Y9
	VBROADCASTSS (AX), Y10
	VFMADD231PS  Y8, Y10, Y0
	VFMADD231PS  Y9, Y10, Y1
	VBROADCASTSS (AX)(R9*1), Y11
	VFMADD231PS  Y8, Y11, Y2
	VFMADD231PS  Y9, Y11, Y3
	VBROADCASTSS (AX)(R9*2), Y10
	VFMADD231PS  Y8, Y10, Y4
	VFMADD231PS  Y9, Y10, Y5
	VBROADCASTSS (AX)(R12*1), Y11
	VFMADD231PS  Y8, Y11, Y6
	VFMADD231PS  Y9, Y11, Y7
	ADDQ         R10, AX
	ADDQ         R11, R13
	DECQ         R14
	JNZ          k16
	SCALE4x2(Y12, Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7)
	CMPQ         acc+80(FP), $0
	JEQ          store16
	ACC4x2(32, Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7)

store16:
	STORE4x2(32, Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7)
	ADDQ    $64, DI
	ADDQ    $64, DX
	SUBQ    $16, BX
	JMP     block16

block8:
	STRIP8(stripdone, k8, store8, Y10, Y11)

stripdone:
	VZEROUPPER
	RET

// func transpose8x8(dst *float32, ldd int, src *float32, lds int)
//
// dst[c·ldd + r] = src[r·lds + c] for r, c < 8 (strides in elements).
TEXT ·transpose8x8(SB), NOSPLIT, $0-32
	MOVQ    dst+0(FP), DI
	MOVQ    ldd+8(FP), R8
	SHLQ    $2, R8
	MOVQ    src+16(FP), SI
	MOVQ    lds+24(FP), R9
	SHLQ    $2, R9
	LEAQ    (R9)(R9*2), R10 // 3·lds
	LEAQ    (R8)(R8*2), R11 // 3·ldd
	VMOVUPS (SI), Y0
	VMOVUPS (SI)(R9*1), Y1
	VMOVUPS (SI)(R9*2), Y2
	VMOVUPS (SI)(R10*1), Y3
	LEAQ    (SI)(R9*4), SI
	VMOVUPS (SI), Y4
	VMOVUPS (SI)(R9*1), Y5
	VMOVUPS (SI)(R9*2), Y6
	VMOVUPS (SI)(R10*1), Y7
	VUNPCKLPS Y1, Y0, Y8  // a0 b0 a1 b1 | a4 b4 a5 b5
	VUNPCKHPS Y1, Y0, Y9  // a2 b2 a3 b3 | a6 b6 a7 b7
	VUNPCKLPS Y3, Y2, Y10
	VUNPCKHPS Y3, Y2, Y11
	VUNPCKLPS Y5, Y4, Y12
	VUNPCKHPS Y5, Y4, Y13
	VUNPCKLPS Y7, Y6, Y14
	VUNPCKHPS Y7, Y6, Y15
	VSHUFPS $0x44, Y10, Y8, Y0  // a0 b0 c0 d0 | a4 b4 c4 d4
	VSHUFPS $0xee, Y10, Y8, Y1  // a1 b1 c1 d1 | a5 ...
	VSHUFPS $0x44, Y11, Y9, Y2  // a2 ...
	VSHUFPS $0xee, Y11, Y9, Y3  // a3 ...
	VSHUFPS $0x44, Y14, Y12, Y4 // e0 f0 g0 h0 | e4 ...
	VSHUFPS $0xee, Y14, Y12, Y5
	VSHUFPS $0x44, Y15, Y13, Y6
	VSHUFPS $0xee, Y15, Y13, Y7
	VPERM2F128 $0x20, Y4, Y0, Y8  // column 0
	VPERM2F128 $0x20, Y5, Y1, Y9  // column 1
	VPERM2F128 $0x20, Y6, Y2, Y10 // column 2
	VPERM2F128 $0x20, Y7, Y3, Y11 // column 3
	VPERM2F128 $0x31, Y4, Y0, Y12 // column 4
	VPERM2F128 $0x31, Y5, Y1, Y13 // column 5
	VPERM2F128 $0x31, Y6, Y2, Y14 // column 6
	VPERM2F128 $0x31, Y7, Y3, Y15 // column 7
	VMOVUPS Y8, (DI)
	VMOVUPS Y9, (DI)(R8*1)
	VMOVUPS Y10, (DI)(R8*2)
	VMOVUPS Y11, (DI)(R11*1)
	LEAQ    (DI)(R8*4), DI
	VMOVUPS Y12, (DI)
	VMOVUPS Y13, (DI)(R8*1)
	VMOVUPS Y14, (DI)(R8*2)
	VMOVUPS Y15, (DI)(R11*1)
	VZEROUPPER
	RET

// func copyRowsAVX(dst *float32, ldd int, src *float32, lds, width, rows int)
//
// Copies rows rows of width floats (a multiple of 8) from src, rows lds floats
// apart, to dst, rows ldd apart, prefetching the source and destination rows
// four ahead (their first and last cache lines): the kernels gather tiles from,
// and scatter them to, tensors in L3 or memory, and a copy that waits for each
// miss in turn leaves the core idle. (Go's assembler has no PREFETCHW; a read
// prefetch still saves the store's miss.)
TEXT ·copyRowsAVX(SB), NOSPLIT, $0-48
	MOVQ  dst+0(FP), DI
	MOVQ  ldd+8(FP), R11
	SHLQ  $2, R11 // bytes between destination rows
	MOVQ  src+16(FP), SI
	MOVQ  lds+24(FP), DX
	SHLQ  $2, DX // bytes between source rows
	MOVQ  width+32(FP), BX
	SHLQ  $2, BX // bytes per row
	MOVQ  rows+40(FP), CX
	TESTQ CX, CX
	JZ    cdone

crow:
	LEAQ       (SI)(DX*4), R9 // four rows ahead
	PREFETCHT0 (R9)
	PREFETCHT0 -4(R9)(BX*1)
	LEAQ       (DI)(R11*4), R9
	PREFETCHT0 (R9)
	PREFETCHT0 -4(R9)(BX*1)
	XORQ       AX, AX

ccol:
	VMOVUPS (SI)(AX*1), Y0
	VMOVUPS Y0, (DI)(AX*1)
	ADDQ    $32, AX
	CMPQ    AX, BX
	JLT     ccol
	ADDQ    R11, DI
	ADDQ    DX, SI
	DECQ    CX
	JNZ     crow

cdone:
	VZEROUPPER
	RET

// func prefetchRows(p *float32, stride, rows, width int)
//
// Prefetches the first and last cache line of rows rows of width floats, stride
// floats apart from p (a hint: it reads nothing and cannot fault).
TEXT ·prefetchRows(SB), NOSPLIT, $0-32
	MOVQ  p+0(FP), SI
	MOVQ  stride+8(FP), DX
	SHLQ  $2, DX
	MOVQ  rows+16(FP), CX
	MOVQ  width+24(FP), BX
	LEAQ  -4(BX*4), BX // offset of the last float
	TESTQ CX, CX
	JZ    pdone

prow:
	PREFETCHT0 (SI)
	PREFETCHT0 (SI)(BX*1)
	ADDQ       DX, SI
	DECQ       CX
	JNZ        prow

pdone:
	RET

// func tileStrip4Z(c *float32, ldc int, a *float32, ars, acs int, b *float32, ldb, n, k int, alpha float32, acc int)
//
// tileStrip4 on AVX-512: blocks of 32 columns keep 8 ZMM accumulators (two
// 16-lane vectors of each of the 4 rows), then a block of 16 keeps 4 and a last
// block of 8 keeps 4 YMM ones. Same arguments and result as tileStrip4 (the
// blocks of 32 and 16 skip the product by alpha when it is 1).
TEXT ·tileStrip4Z(SB), NOSPLIT, $0-88
	MOVQ         c+0(FP), DI
	MOVQ         ldc+8(FP), R8
	SHLQ         $2, R8
	MOVQ         ars+24(FP), R9
	SHLQ         $2, R9
	MOVQ         acs+32(FP), R10
	SHLQ         $2, R10
	MOVQ         b+40(FP), DX
	MOVQ         ldb+48(FP), R11
	SHLQ         $2, R11
	MOVQ         n+56(FP), BX
	MOVQ         k+64(FP), CX
	VBROADCASTSS alpha+72(FP), Z12
	LEAQ         (R9)(R9*2), R12 // 3·ars
	LEAQ         (R8)(R8*2), SI  // 3·ldc

zblock32:
	CMPQ   BX, $32
	JLT    zblock16
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	MOVQ   a+16(FP), AX
	MOVQ   DX, R13
	MOVQ   CX, R14

zk32:
	VMOVUPS      (R13), Z8
	VMOVUPS      64(R13), Z9
	VBROADCASTSS (AX), Z10
	VFMADD231PS  Z8, Z10, Z0
	VFMADD231PS  Z9, Z10, Z1
	VBROADCASTSS (AX)(R9*1), Z11
	VFMADD231PS  Z8, Z11, Z2
	VFMADD231PS  Z9, Z11, Z3
	VBROADCASTSS (AX)(R9*2), Z13
	VFMADD231PS  Z8, Z13, Z4
	VFMADD231PS  Z9, Z13, Z5
	VBROADCASTSS (AX)(R12*1), Z14
	VFMADD231PS  Z8, Z14, Z6
	VFMADD231PS  Z9, Z14, Z7
	ADDQ         R10, AX
	ADDQ         R11, R13
	DECQ         R14
	JNZ          zk32
	CMPL         alpha+72(FP), $0x3f800000 // alpha = 1: no scaling
	JEQ          zacc32
	SCALE4x2(Z12, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7)

zacc32:
	CMPQ         acc+80(FP), $0
	JEQ          zstore32
	ACC4x2(64, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7)

zstore32:
	STORE4x2(64, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7)
	ADDQ    $128, DI
	ADDQ    $128, DX
	SUBQ    $32, BX
	JMP     zblock32

zblock16:
	CMPQ   BX, $16
	JLT    zblock8
	VPXORD Z0, Z0, Z0
	VPXORD Z2, Z2, Z2
	VPXORD Z4, Z4, Z4
	VPXORD Z6, Z6, Z6
	MOVQ   a+16(FP), AX
	MOVQ   DX, R13
	MOVQ   CX, R14

zk16:
	VMOVUPS      (R13), Z8
	VBROADCASTSS (AX), Z10
	VFMADD231PS  Z8, Z10, Z0
	VBROADCASTSS (AX)(R9*1), Z11
	VFMADD231PS  Z8, Z11, Z2
	VBROADCASTSS (AX)(R9*2), Z13
	VFMADD231PS  Z8, Z13, Z4
	VBROADCASTSS (AX)(R12*1), Z14
	VFMADD231PS  Z8, Z14, Z6
	ADDQ         R10, AX
	ADDQ         R11, R13
	DECQ         R14
	JNZ          zk16
	CMPL         alpha+72(FP), $0x3f800000
	JEQ          zacc16
	SCALE4(Z12, Z0, Z2, Z4, Z6)

zacc16:
	CMPQ         acc+80(FP), $0
	JEQ          zstore16
	ACC4(Z0, Z2, Z4, Z6)

zstore16:
	STORE4(Z0, Z2, Z4, Z6)
	ADDQ    $64, DI
	ADDQ    $64, DX
	SUBQ    $16, BX

zblock8:
	STRIP8(zdone, zk8, zstore8, Y13, Y14)

zdone:
	VZEROUPPER
	RET

// func prefetchL2Rows(p *float32, stride, rows, width int)
//
// Prefetches into L2 every cache line of rows rows of width floats (width ≥ 1),
// stride floats apart from p (a hint: it reads nothing and cannot fault).
TEXT ·prefetchL2Rows(SB), NOSPLIT, $0-32
	MOVQ  p+0(FP), SI
	MOVQ  stride+8(FP), DX
	SHLQ  $2, DX
	MOVQ  rows+16(FP), CX
	MOVQ  width+24(FP), BX
	LEAQ  -4(BX*4), BX // offset of the last float
	TESTQ CX, CX
	JZ    l2done

l2row:
	XORQ AX, AX

l2line:
	PREFETCHT1 (SI)(AX*1)
	ADDQ       $64, AX
	CMPQ       AX, BX
	JLE        l2line
	PREFETCHT1 (SI)(BX*1)
	ADDQ       DX, SI
	DECQ       CX
	JNZ        l2row

l2done:
	RET

// func prefetchL2Addr(p uintptr, stride, rows, width int)
//
// prefetchL2Rows with the address as an integer.
TEXT ·prefetchL2Addr(SB), NOSPLIT, $0-32
	JMP ·prefetchL2Rows(SB)
