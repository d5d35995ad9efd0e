package metal

import "fmt"

// QuantMatrix describes a quantized matrix in device buffers, MLX's affine
// layout (see shaders/quant.metal and package quant): N rows of K values, each
// row a little-endian bit stream of Bits-wide integers in K·Bits/32 uint32
// words (Packed), with one float32 scale and bias per GroupSize consecutive
// values (Scales, Biases: N × K/GroupSize).
type QuantMatrix struct {
	Packed, Scales, Biases *Buffer
	N, K, Bits, GroupSize  int
}

type quantParams struct{ Rows, N, K, Bits, Group, Stride uint32 }

// QuantMatVecMaxRows is the largest number of rows of x [RunQuantMatMulT] runs
// with the matrix-vector kernel (a SIMD group per output); more rows take the
// tiled kernel, which reads each weight once per 16 rows.
const QuantMatVecMaxRows = 4

func (w *QuantMatrix) check(kernel string, rows int) (quantParams, error) {
	switch w.Bits {
	case 2, 3, 4, 5, 6, 8:
	default:
		return quantParams{}, fmt.Errorf("%s: %d bits (want 2, 3, 4, 5, 6 or 8)", kernel, w.Bits)
	}
	if w.GroupSize < 16 || w.GroupSize%16 != 0 || w.K%w.GroupSize != 0 || w.K*w.Bits%32 != 0 {
		return quantParams{}, fmt.Errorf("%s: %d columns in groups of %d: want a group size that is a multiple of 16 and divides the columns", kernel, w.K, w.GroupSize)
	}
	if err := checkCount(kernel, rows, w.N); err != nil {
		return quantParams{}, err
	}
	if err := checkCount(kernel, max(rows, w.N), w.K); err != nil {
		return quantParams{}, err
	}
	stride := w.K * w.Bits / 32
	ng := w.K / w.GroupSize
	if err := checkBuffers(kernel, need{"packed", w.Packed, w.N * stride, false},
		need{"scales", w.Scales, w.N * ng, false}, need{"biases", w.Biases, w.N * ng, false}); err != nil {
		return quantParams{}, err
	}
	return quantParams{uint32(rows), uint32(w.N), uint32(w.K), uint32(w.Bits), uint32(w.GroupSize), uint32(stride)}, nil
}

func (w *QuantMatrix) args(first Arg, second Arg, p quantParams) []Arg {
	return []Arg{first, second, In(2, w.Packed), In(3, w.Scales), In(4, w.Biases), Params(5, p)}
}

// RunQuantMatMulT writes y = x·Wᵀ for x (rows × K) and y (rows × N), float32
// row-major: up to QuantMatVecMaxRows rows with qmv_t_f32, more with qmm_t_f32.
func RunQuantMatMulT(d Compute, y, x *Buffer, w *QuantMatrix, rows int) error {
	kernel := "qmm_t_f32"
	if rows <= QuantMatVecMaxRows {
		kernel = "qmv_t_f32"
	}
	p, err := w.check(kernel, rows)
	if err != nil {
		return err
	}
	if err := checkBuffers(kernel, need{"y", y, rows * w.N, false}, need{"x", x, rows * w.K, false}); err != nil {
		return err
	}
	if rows == 0 || w.N == 0 {
		return nil
	}
	if w.K == 0 {
		return fmt.Errorf("%s: no columns", kernel)
	}
	l := &Launch{Kernel: kernel, Args: w.args(Out(0, y), In(1, x), p)}
	if kernel == "qmv_t_f32" {
		l.Groups, l.Threads = [3]int{groupsFor(w.N, 8), rows, 1}, [3]int{256, 1, 1}
	} else {
		l.Groups, l.Threads = [3]int{groupsFor(w.N, 16), groupsFor(rows, 16), 1}, [3]int{16, 16, 1}
	}
	return d.Dispatch(l)
}

// RunQuantMatMul writes dx = g·W for g (rows × N) and dx (rows × K): the input
// gradient of [RunQuantMatMulT]. One launch (qmm_f32).
func RunQuantMatMul(d Compute, dx, g *Buffer, w *QuantMatrix, rows int) error {
	const kernel = "qmm_f32"
	p, err := w.check(kernel, rows)
	if err != nil {
		return err
	}
	if err := checkBuffers(kernel, need{"dx", dx, rows * w.K, false}, need{"g", g, rows * w.N, false}); err != nil {
		return err
	}
	if rows == 0 || w.K == 0 {
		return nil
	}
	return d.Dispatch(&Launch{
		Kernel: kernel, Args: w.args(Out(0, dx), In(1, g), p),
		Groups: [3]int{groupsFor(w.K, 16), groupsFor(rows, 16), 1}, Threads: [3]int{16, 16, 1},
	})
}

// RunQuantGather writes out[i, :] = W[ids[i], :] (dequantized) for the tokens
// int32 ids: the quantized embedding lookup. An id outside [0, N) gives a row
// of NaN: check ids first. One launch (qgather_f32).
func RunQuantGather(d Compute, out, ids *Buffer, w *QuantMatrix, tokens int) error {
	const kernel = "qgather_f32"
	p, err := w.check(kernel, tokens)
	if err != nil {
		return err
	}
	if err := checkBuffers(kernel, need{"out", out, tokens * w.K, false}, need{"ids", ids, tokens, false}); err != nil {
		return err
	}
	if tokens == 0 || w.K == 0 {
		return nil
	}
	return d.Dispatch(&Launch{
		Kernel: kernel, Args: w.args(Out(0, out), In(1, ids), p),
		Groups: [3]int{groupsFor(w.K, 256), tokens, 1}, Threads: [3]int{256, 1, 1},
	})
}
