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
