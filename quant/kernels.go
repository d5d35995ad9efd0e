package quant

import (
	"fmt"
	"time"

	"github.com/mlxtrain/mlxtrain/autodiff/gemm"
	"github.com/mlxtrain/mlxtrain/metal"
)

// matmulFunc is the signature of every implementation of the quantized product
// y = x·Wᵀ: x is rows×m.Cols, y rows×m.Rows, row-major float32; y is overwritten.
type matmulFunc func(y, x []float32, rows int, m *Matrix)

// The "quantized_matmul" op, dims M (rows of x: tokens), N (rows of W: outputs)
// and K (the shared width). Its implementations, fastest first:
//
//   - blas: dequantize W a block of rows at a time into a float32 tile that
//     stays in cache and multiply it with gemm.Sgemm (BLAS or the packed
//     assembly): for batches, where each weight serves many rows of x and the
//     product is compute-bound;
//   - asm: one row of x at a time, every output a dot product that unpacks the
//     weights in AVX2 registers (decode: memory-bound, so reading a quarter or an
//     eighth of the bytes of float32 weights is the whole gain); 4 and 8 bits
//     have their own kernels, the other widths one that finds each run of eight
//     values with two dword loads and variable shifts;
//   - go: the same row products in Go;
//   - reference: dequantize all of W and a triple loop accumulating in float64.
//
// Thresholds (MLXTRAIN_QUANTIZED_MATMUL_MIN_M_BLAS...) choose between the tiles
// and the row kernels: below blasMinM rows, the row kernels read the packed
// weights once per row of x, which costs less than dequantizing them and
// having the GEMM pack each tile. Measured in CPU time for 4096×4096 at 4 bits
// on one Zen3 thread (rows: asm / tiles): 1: 0.9 / 2.1 ms (sgemv), 4: 3.2 /
// 15, 16: 13 / 19, 32: 26 / 27, 64: 53 / 36-43 ms; at 8 bits 1: 1.6 / 2.7,
// 4: 4.3 / 15, 16: 17 / 22, 32: 34 / 27-30. OpenBLAS packs the 256-row tile
// on every call, which a few rows of x do not repay.
var (
	blasMinM = 32
	qmmOp    *metal.Op
)

func init() {
	qmmOp = metal.Kernels.Register("quantized_matmul", []string{"M", "N", "K"},
		qmmDeviceImpl(),
		&metal.Impl{Path: metal.PathBLAS, Min: []int{blasMinM}, Fn: matmulFunc(tiledMatMul)},
		&metal.Impl{Path: metal.PathAsm, Available: asmAvailable, Fn: matmulFunc(asmMatMul)},
		&metal.Impl{Path: metal.PathGo, Fn: matmulFunc(goMatMul)},
		&metal.Impl{Path: metal.PathReference, Fn: matmulFunc(referenceMatMul)},
	)
}

// MatMulT computes y = x·Wᵀ for x rows×m.Cols and y rows×m.Rows (row-major
// float32), W the dequantized m, through the fastest implementation the
// "quantized_matmul" op picks. y is overwritten.
func MatMulT(y, x []float32, rows int, m *Matrix) {
	checkMatMul("MatMulT", y, x, rows, m)
	if rows == 0 || m.Rows == 0 {
		return
	}
	im := cpuImpl(qmmOp, rows, m.Rows, m.Cols)
	runMatMul(im.Path, im.Fn.(matmulFunc), y, x, rows, m)
}

// MatMulTPath is MatMulT on the given path, whatever the thresholds say (tests
// and benchmarks compare paths with it). It panics if the path is not available.
func MatMulTPath(path metal.Path, y, x []float32, rows int, m *Matrix) {
	checkMatMul("MatMulTPath", y, x, rows, m)
	for _, im := range qmmOp.Impls {
		if im.Path == path {
			if im.Fn == nil || im.Available != nil && !im.Available() {
				panic(fmt.Sprintf("quant: MatMulTPath: path %s is not available here", path))
			}
			if rows > 0 {
				runMatMul(path, im.Fn.(matmulFunc), y, x, rows, m)
			}
			return
		}
	}
	panic(fmt.Sprintf("quant: MatMulTPath: no %s implementation", path))
}

func runMatMul(path metal.Path, fn matmulFunc, y, x []float32, rows int, m *Matrix) {
	if !metal.Profiling() {
		fn(y, x, rows, m)
		return
	}
	start := time.Now()
	fn(y, x, rows, m)
	metal.RecordOp("quantized_matmul", path, time.Since(start), 4*int64(rows*(m.Cols+m.Rows))+m.Bytes())
}

func checkMatMul(fn string, y, x []float32, rows int, m *Matrix) {
	if rows < 0 || len(x) != rows*m.Cols || len(y) != rows*m.Rows {
		panic(fmt.Sprintf("quant: %s: x %d values and y %d for %d rows of a %d×%d quantized matrix", fn, len(x), len(y), rows, m.Rows, m.Cols))
	}
}

// tileRows is the number of weight rows dequantized at once: up to 1 M floats.
// Thin tiles make thin GEMMs: with K = 4096, 64-row tiles measured 1.40× the
// float32 GEMM's CPU time for 128 tokens and 256-row tiles 1.30×.
func tileRows(cols int) int { return min(256, max(16, (1<<20)/cols/16*16)) }

// tiledMatMul dequantizes W a block of rows at a time and multiplies each block
// with gemm.Sgemm, which splits the work across the workers.
func tiledMatMul(y, x []float32, rows int, m *Matrix) {
	K, N := m.Cols, m.Rows
	nb := min(tileRows(K), N)
	tile := make([]float32, nb*K)
	q := make([]uint8, K)
	for o0 := 0; o0 < N; o0 += nb {
		n := min(nb, N-o0)
		for r := range n {
			if !dequantizeRowFast(tile[r*K:(r+1)*K], m, o0+r) {
				m.dequantizeRow(tile[r*K:(r+1)*K], q, o0+r)
			}
		}
		gemm.Sgemm(false, true, rows, n, K, 1, x, K, tile, K, 0, y[o0:], N)
	}
}

// MatMul computes dx = g·W for g rows×m.Rows and dx rows×m.Cols, the input
// gradient of y = x·Wᵀ: W is dequantized a block of rows at a time and each
// block's product added with gemm.Sgemm. dx is overwritten.
func MatMul(dx, g []float32, rows int, m *Matrix) {
	K, N := m.Cols, m.Rows
	if rows < 0 || len(g) != rows*N || len(dx) != rows*K {
		panic(fmt.Sprintf("quant: MatMul: g %d values and dx %d for %d rows of a %d×%d quantized matrix", len(g), len(dx), rows, N, K))
	}
	clear(dx)
	if rows == 0 {
		return
	}
	nb := min(tileRows(K), N)
	tile := make([]float32, nb*K)
	q := make([]uint8, K)
	for o0 := 0; o0 < N; o0 += nb {
		n := min(nb, N-o0)
		for r := range n {
			if !dequantizeRowFast(tile[r*K:(r+1)*K], m, o0+r) {
				m.dequantizeRow(tile[r*K:(r+1)*K], q, o0+r)
			}
		}
		gemm.Sgemm(false, false, rows, K, n, 1, g[o0:], N, tile, K, 1, dx, K)
	}
}

// rowKernel computes the dot products of one row of x with rows [lo, hi) of W.
type rowKernel func(y []float32, x []float32, m *Matrix, lo, hi int, s *rowScratch)

// rowScratch is what a row of x needs prepared once for all outputs.
type rowScratch struct {
	xsums []float32 // the sum of x over each group
	xperm []float32 // x in the order the 4-bit asm kernel unpacks
	q     []uint8   // one unpacked weight row (generic kernel)
	wf    []float32 // one dequantized group (generic kernel)
}

func (s *rowScratch) prepare(x []float32, m *Matrix, permute bool) {
	G, ng := m.GroupSize, m.Groups()
	s.xsums = grow(s.xsums, ng)
	for g := range ng {
		var t float32
		for _, v := range x[g*G : (g+1)*G] {
			t += v
		}
		s.xsums[g] = t
	}
	if permute {
		s.xperm = grow(s.xperm, len(x))
		permuteNibbleOrder(s.xperm, x)
	}
}

// permuteNibbleOrder puts x in the order the 4-bit kernels unpack weights: in
// each run of 16, the 8 values at even offsets, then the 8 at odd offsets (a
// byte's low and high nibbles).
func permuteNibbleOrder(dst, x []float32) {
	for c := 0; c < len(x); c += 16 {
		for i := range 8 {
			dst[c+i] = x[c+2*i]
			dst[c+8+i] = x[c+2*i+1]
		}
	}
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// rowsMatMul runs kern for each row of x, the outputs split across workers.
func rowsMatMul(y, x []float32, rows int, m *Matrix, kern rowKernel, permute bool) {
	K, N := m.Cols, m.Rows
	var s rowScratch
	for r := range rows {
		xr := x[r*K : (r+1)*K]
		s.prepare(xr, m, permute)
		yr := y[r*N : (r+1)*N]
		// About 64 K weights per chunk keeps the hand-off cost small.
		grain := max(1, (1<<16)/K)
		metal.ParallelFor(N, grain, func(lo, hi int) {
			ws := rowScratch{xsums: s.xsums, xperm: s.xperm}
			kern(yr, xr, m, lo, hi, &ws)
		})
	}
}

// asmMatMul runs four rows of x at a time through the four-row kernels (4 and
// 8 bits: each weight unpacked once serves four FMAs), the rest one by one.
func asmMatMul(y, x []float32, rows int, m *Matrix) {
	K, N, G, ng := m.Cols, m.Rows, m.GroupSize, m.Groups()
	r := 0
	if m.Bits == 4 || m.Bits == 8 {
		var xp []float32
		xsums4 := make([]float32, 4*ng)
		for ; r+4 <= rows; r += 4 {
			xb := x[r*K : (r+4)*K]
			if m.Bits == 4 {
				xp = grow(xp, 4*K)
				for i := range 4 {
					permuteNibbleOrder(xp[i*K:(i+1)*K], xb[i*K:(i+1)*K])
				}
				xb = xp
			}
			for i := range 4 {
				for g := range ng {
					var t float32
					for _, v := range xb[i*K+g*G : i*K+(g+1)*G] {
						t += v
					}
					xsums4[4*g+i] = t
				}
			}
			stride := m.Stride()
			metal.ParallelFor(N, max(1, (1<<15)/K), func(lo, hi int) {
				var out [4]float32
				for o := lo; o < hi; o++ {
					asmRowDot4(m.Bits, xb, K, m.Scales[o*ng:(o+1)*ng], m.Biases[o*ng:(o+1)*ng], xsums4, m.Packed[o*stride:(o+1)*stride], &out, ng, G)
					for i := range 4 {
						y[(r+i)*N+o] = out[i]
					}
				}
			})
		}
	}
	if r < rows {
		rowsMatMul(y[r*N:], x[r*K:], rows-r, m, asmRows, m.Bits == 4)
	}
}

func asmRows(y, x []float32, m *Matrix, lo, hi int, s *rowScratch) {
	stride, ng := m.Stride(), m.Groups()
	xin := x
	if m.Bits == 4 {
		xin = s.xperm
	}
	for o := lo; o < hi; o++ {
		y[o] = asmRowDot(m.Bits, xin, m.Scales[o*ng:(o+1)*ng], m.Biases[o*ng:(o+1)*ng], s.xsums, m.Packed[o*stride:(o+1)*stride], ng, m.GroupSize, o == m.Rows-1)
	}
}

func goMatMul(y, x []float32, rows int, m *Matrix) {
	switch m.Bits {
	case 4:
		rowsMatMul(y, x, rows, m, goRows4, false)
	case 8:
		rowsMatMul(y, x, rows, m, goRows8, false)
	default:
		rowsMatMul(y, x, rows, m, goRowsGeneric, false)
	}
}

// goRows4: Σ_g scale·Σ x·q + bias·Σ x, nibbles taken from each word in turn.
func goRows4(y, x []float32, m *Matrix, lo, hi int, s *rowScratch) {
	stride, ng, G := m.Stride(), m.Groups(), m.GroupSize
	for o := lo; o < hi; o++ {
		w := m.Packed[o*stride : (o+1)*stride]
		var acc float32
		for g := range ng {
			var d0, d1 float32
			xs := x[g*G : (g+1)*G]
			ws := w[g*G/8 : (g+1)*G/8]
			for i, v := range ws {
				xx := xs[8*i : 8*i+8 : 8*i+8]
				d0 += xx[0]*float32(v&15) + xx[2]*float32(v>>8&15) + xx[4]*float32(v>>16&15) + xx[6]*float32(v>>24&15)
				d1 += xx[1]*float32(v>>4&15) + xx[3]*float32(v>>12&15) + xx[5]*float32(v>>20&15) + xx[7]*float32(v>>28)
			}
			acc += m.Scales[o*ng+g]*(d0+d1) + m.Biases[o*ng+g]*s.xsums[g]
		}
		y[o] = acc
	}
}

func goRows8(y, x []float32, m *Matrix, lo, hi int, s *rowScratch) {
	stride, ng, G := m.Stride(), m.Groups(), m.GroupSize
	for o := lo; o < hi; o++ {
		w := m.Packed[o*stride : (o+1)*stride]
		var acc float32
		for g := range ng {
			var d0, d1 float32
			xs := x[g*G : (g+1)*G]
			ws := w[g*G/4 : (g+1)*G/4]
			for i, v := range ws {
				xx := xs[4*i : 4*i+4 : 4*i+4]
				d0 += xx[0]*float32(v&255) + xx[2]*float32(v>>16&255)
				d1 += xx[1]*float32(v>>8&255) + xx[3]*float32(v>>24)
			}
			acc += m.Scales[o*ng+g]*(d0+d1) + m.Biases[o*ng+g]*s.xsums[g]
		}
		y[o] = acc
	}
}

// goRowsGeneric unpacks each weight row (any width) and takes the dot products.
func goRowsGeneric(y, x []float32, m *Matrix, lo, hi int, s *rowScratch) {
	stride, ng, G := m.Stride(), m.Groups(), m.GroupSize
	s.q = grow(s.q, m.Cols)
	for o := lo; o < hi; o++ {
		Unpack(s.q, m.Packed[o*stride:(o+1)*stride], m.Bits)
		var acc float32
		for g := range ng {
			var d float32
			xs, qs := x[g*G:(g+1)*G], s.q[g*G:(g+1)*G]
			for j, v := range qs {
				d += xs[j] * float32(v)
			}
			acc += m.Scales[o*ng+g]*d + m.Biases[o*ng+g]*s.xsums[g]
		}
		y[o] = acc
	}
}

// referenceMatMul dequantizes all of W and accumulates each output in float64.
func referenceMatMul(y, x []float32, rows int, m *Matrix) {
	w := m.Dequantize()
	K, N := m.Cols, m.Rows
	for r := range rows {
		for o := range N {
			var s float64
			for k := range K {
				s += float64(x[r*K+k]) * float64(w[o*K+k])
			}
			y[r*N+o] = float32(s)
		}
	}
}

// Gather writes the dequantized rows ids of m into dst (len(ids)×m.Cols): the
// quantized embedding lookup. Ids must be in [0, m.Rows).
func Gather(dst []float32, m *Matrix, ids []int32) {
	K := m.Cols
	if len(dst) != len(ids)*K {
		panic(fmt.Sprintf("quant: Gather: dst %d values for %d ids of width %d", len(dst), len(ids), K))
	}
	q := make([]uint8, K)
	for i, id := range ids {
		if id < 0 || int(id) >= m.Rows {
			panic(fmt.Sprintf("quant: Gather: id %d outside [0, %d)", id, m.Rows))
		}
		m.dequantizeRow(dst[i*K:(i+1)*K], q, int(id))
	}
}
