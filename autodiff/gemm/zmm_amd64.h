// Macros shared by the AVX-512 micro-kernels.

// PFC32_ROW prefetches the 32 floats of a C row at R9 (two or three lines, as
// the row may straddle); PFC32 does so and moves R9 on a row (R8 bytes).
#define PFC32_ROW \
	PREFETCHT0 (R9);   \
	PREFETCHT0 63(R9); \
	PREFETCHT0 64(R9); \
	PREFETCHT0 127(R9)

#define PFC32 \
	PFC32_ROW; \
	ADDQ R8, R9
