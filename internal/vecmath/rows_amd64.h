// Macros shared by the package's amd64 kernels.

// HREDUCE(op, Y, X) folds the eight lanes of Y with op into the low lane of X
// (X is Y's low half), through X15: ((l0 op l4) op (l2 op l6)) op ((l1 op l5) op (l3 op l7)).
#define HREDUCE(op, Y, X) \
	VEXTRACTF128 $1, Y, X15    \
	op           X15, X, X     \
	VPERMILPS    $0x4e, X, X15 \
	op           X15, X, X     \
	VPERMILPS    $0xb1, X, X15 \
	op           X15, X, X

// DELTA4(loop) sets delta[r] = Σ p·ds over rows r < 4 (p at DI, ds at SI, rows R8
// bytes apart, R9 = 3·R8, CX steps of 8 floats, delta at DX) in 8-lane fused
// sums, then the lanes (HREDUCE), leaving delta[r] in the low lane of X6..X9.
#define DELTA4(loop) \
	VXORPS       Y6, Y6, Y6; \
	VXORPS       Y7, Y7, Y7; \
	VXORPS       Y8, Y8, Y8; \
	VXORPS       Y9, Y9, Y9; \
	MOVQ         DI, R10; \
	MOVQ         SI, R11; \
	MOVQ         CX, R12; \
loop:; \
	VMOVUPS     (R10), Y0; \
	VFMADD231PS (R11), Y0, Y6; \
	VMOVUPS     (R10)(R8*1), Y1; \
	VFMADD231PS (R11)(R8*1), Y1, Y7; \
	VMOVUPS     (R10)(R8*2), Y2; \
	VFMADD231PS (R11)(R8*2), Y2, Y8; \
	VMOVUPS     (R10)(R9*1), Y3; \
	VFMADD231PS (R11)(R9*1), Y3, Y9; \
	ADDQ        $32, R10; \
	ADDQ        $32, R11; \
	DECQ        R12; \
	JNZ         loop; \
	HREDUCE(VADDPS, Y6, X6); \
	HREDUCE(VADDPS, Y7, X7); \
	HREDUCE(VADDPS, Y8, X8); \
	HREDUCE(VADDPS, Y9, X9); \
	VMOVSS       X6, 0(DX); \
	VMOVSS       X7, 4(DX); \
	VMOVSS       X8, 8(DX); \
	VMOVSS       X9, 12(DX)

// The exponential's constants: byte offsets in ·vconsts (kernels_amd64.s), each
// value repeated over 8 lanes.
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

// EXPBODY sets Y1 = e^Y0 for lanes with −87.3 ≤ Y0 ≤ 0 (e^−87.3, about 1e-38,
// below), with AX at ·vconsts: Y0 = n·ln2 + r, e^r by its Taylor polynomial of
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

