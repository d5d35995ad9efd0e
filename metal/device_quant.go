package metal

import "fmt"

// QuantMatrix describes a quantized matrix in device buffers, MLX's affine
// layout (see shaders/quant.metal and package quant): N rows of K values, each
// row a little-endian bit stream of Bits-wide integers in K·Bits/32 uint32
// words (Packed), with one float32 scale and bias per GroupSize consecutive
// values (Scales, Biases: N × K/GroupSize).
//
// PackedOff and GroupOff are element offsets into Packed and into Scales and
// Biases: one matrix of a stack (a mixture of experts' weights).
type QuantMatrix struct {
	Packed, Scales, Biases *Buffer
	N, K, Bits, GroupSize  int
	PackedOff, GroupOff    int
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
	if w.PackedOff < 0 || w.GroupOff < 0 {
		return quantParams{}, fmt.Errorf("%s: negative offsets", kernel)
	}
	if err := checkBuffers(kernel, need{"packed", w.Packed, w.PackedOff + w.N*stride, false},
		need{"scales", w.Scales, w.GroupOff + w.N*ng, false}, need{"biases", w.Biases, w.GroupOff + w.N*ng, false}); err != nil {
		return quantParams{}, err
	}
	return quantParams{uint32(rows), uint32(w.N), uint32(w.K), uint32(w.Bits), uint32(w.GroupSize), uint32(stride)}, nil
}

func (w *QuantMatrix) args(first Arg, second Arg, p quantParams) []Arg {
	pk, sc, bi := In(2, w.Packed), In(3, w.Scales), In(4, w.Biases)
	pk.Offset, sc.Offset, bi.Offset = 4*w.PackedOff, 4*w.GroupOff, 4*w.GroupOff
	return []Arg{first, second, pk, sc, bi, Params(5, p)}
}

func at(a Arg, off int) Arg {
	a.Offset = 4 * off
	return a
}

// RunQuantMatMulT writes y = x·Wᵀ for x (rows × K) and y (rows × N), float32
// row-major: up to QuantMatVecMaxRows rows with qmv_t_f32, more with qmm_t_f32.
func RunQuantMatMulT(d Compute, y, x *Buffer, w *QuantMatrix, rows int) error {
	return RunQuantMatMulTAt(d, y, x, 0, 0, w, rows)
}

// RunQuantMatMulTAt is [RunQuantMatMulT] on y and x from element offsets yOff
// and xOff on.
func RunQuantMatMulTAt(d Compute, y, x *Buffer, yOff, xOff int, w *QuantMatrix, rows int) error {
	kernel := "qmm_t_f32"
	if rows <= QuantMatVecMaxRows {
		kernel = "qmv_t_f32"
	}
	p, err := w.check(kernel, rows)
	if err != nil {
		return err
	}
	if yOff < 0 || xOff < 0 {
		return fmt.Errorf("%s: negative offsets", kernel)
	}
	if err := checkBuffers(kernel, need{"y", y, yOff + rows*w.N, false}, need{"x", x, xOff + rows*w.K, false}); err != nil {
		return err
	}
	if rows == 0 || w.N == 0 {
		return nil
	}
	if w.K == 0 {
		return fmt.Errorf("%s: no columns", kernel)
	}
	l := &Launch{Kernel: kernel, Args: w.args(at(Out(0, y), yOff), at(In(1, x), xOff), p)}
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
	return RunQuantMatMulAt(d, dx, g, 0, 0, w, rows)
}

// RunQuantMatMulAt is [RunQuantMatMul] on dx and g from element offsets dxOff
// and gOff on.
func RunQuantMatMulAt(d Compute, dx, g *Buffer, dxOff, gOff int, w *QuantMatrix, rows int) error {
	const kernel = "qmm_f32"
	p, err := w.check(kernel, rows)
	if err != nil {
		return err
	}
	if dxOff < 0 || gOff < 0 {
		return fmt.Errorf("%s: negative offsets", kernel)
	}
	if err := checkBuffers(kernel, need{"dx", dx, dxOff + rows*w.K, false}, need{"g", g, gOff + rows*w.N, false}); err != nil {
		return err
	}
	if rows == 0 || w.K == 0 {
		return nil
	}
	return d.Dispatch(&Launch{
		Kernel: kernel, Args: w.args(at(Out(0, dx), dxOff), at(In(1, g), gOff), p),
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

func init() {
	// (rows, out): rows of every expert, outputs of each
	Tunings["quantized_grouped_linear"] = Tuning{0: {64, 64}, 9: {32, 64}}
}

type quantGatherParams struct{ Rows, N, K, Bits, Group, Stride, Experts, Flags uint32 }

// stack checks w as the first of experts stacked matrices (expert e's from
// PackedOff + e·N·stride and GroupOff + e·N·K/GroupSize on) and offsets.
func (w *QuantMatrix) stack(kernel string, offsets *Buffer, rows, experts int) (quantGatherParams, error) {
	if experts < 1 {
		return quantGatherParams{}, fmt.Errorf("%s: %d experts", kernel, experts)
	}
	all := *w
	all.N *= experts
	p, err := all.check(kernel, rows)
	if err != nil {
		return quantGatherParams{}, err
	}
	if err := checkBuffers(kernel, need{"offsets", offsets, experts + 1, false}); err != nil {
		return quantGatherParams{}, err
	}
	return quantGatherParams{p.Rows, uint32(w.N), p.K, p.Bits, p.Group, p.Stride, uint32(experts), 0}, nil
}

func (w *QuantMatrix) gatherLaunch(d Compute, kernel string, out, in, offsets, b *Buffer, p quantGatherParams, cols int) error {
	args := w.args(Out(0, out), In(1, in), quantParams{})[:5]
	args = append(args, In(5, offsets))
	if b != nil {
		args = append(args, In(6, b))
	}
	args = append(args, Params(len(args), p))
	return d.Dispatch(&Launch{Kernel: kernel, Args: args,
		Groups: [3]int{groupsFor(cols, 16), groupsFor(int(p.Rows), 16) + int(p.Experts), 1}, Threads: [3]int{16, 16, 1}})
}

// RunQuantGatherMM writes y = x_e·W_eᵀ + b_e for the rows of each expert e,
// rows [offsets[e], offsets[e+1]) of x (rows × K) and y (rows × N): MLX's
// gather_qmm over sorted rows, one launch over every expert
// (qgather_mm_t_f32). w is expert 0's matrix of a stack of experts (expert e's
// packed words, scales and biases follow at e·N rows); offsets holds
// experts+1 int32 row offsets (non-decreasing, from 0 to rows; the kernel
// trusts them); b (experts × N) may be nil.
func RunQuantGatherMM(d Compute, y, x, offsets, b *Buffer, w *QuantMatrix, rows, experts int) error {
	const kernel = "qgather_mm_t_f32"
	p, err := w.stack(kernel, offsets, rows, experts)
	if err != nil {
		return err
	}
	if err := checkBuffers(kernel, need{"y", y, rows * w.N, false}, need{"x", x, rows * w.K, false}, need{"b", b, experts * w.N, true}); err != nil {
		return err
	}
	if rows == 0 || w.N == 0 {
		return nil
	}
	var keep []*Buffer
	defer func() { releaseBuffers(keep) }()
	if b != nil {
		p.Flags = 1
	} else if b, err = placeholder(d, b, &keep); err != nil {
		return err
	}
	return w.gatherLaunch(d, kernel, y, x, offsets, b, p, w.N)
}

// RunQuantGatherMMBackward writes dx = g_e·W_e for the rows of each expert
// (g rows × N, dx rows × K): the input gradient of [RunQuantGatherMM], one
// launch over every expert (qgather_mm_f32).
func RunQuantGatherMMBackward(d Compute, dx, g, offsets *Buffer, w *QuantMatrix, rows, experts int) error {
	const kernel = "qgather_mm_f32"
	p, err := w.stack(kernel, offsets, rows, experts)
	if err != nil {
		return err
	}
	if err := checkBuffers(kernel, need{"dx", dx, rows * w.K, false}, need{"g", g, rows * w.N, false}); err != nil {
		return err
	}
	if rows == 0 || w.K == 0 {
		return nil
	}
	return w.gatherLaunch(d, kernel, dx, g, offsets, nil, p, w.K)
}
