package metal

import (
	"fmt"
	"math"
)

// The dispatch code of the kernels in package shaders, written once for every
// [Compute] device: it binds the buffers and constants and sizes the grid. Each
// function records its launch and returns; the results are there once the output
// buffer is waited for. Buffers hold float32 elements and come from d.NewBuffer.
// An error means the kernel cannot run on d (the caller uses the CPU instead).

// BinaryOp selects the operation of [RunBinary] (the kernel's BINARY_OP constant).
type BinaryOp uint32

// The binary operations.
const (
	BinaryAdd BinaryOp = iota
	BinarySub
	BinaryMul
	BinaryDiv
)

// UnaryOp selects the operation of [RunUnary] (the kernel's UNARY_OP constant).
type UnaryOp uint32

// The unary operations.
const (
	UnaryGELU UnaryOp = iota // x·Φ(x), the erf form
	UnarySiLU                // x·σ(x)
)

const elementwiseGroup = 256

func groupsFor(n, per int) int { return (n + per - 1) / per }

func checkLen(kernel, name string, b *Buffer, elems int) error {
	if b == nil {
		return fmt.Errorf("%s: %s is nil", kernel, name)
	}
	if need := elems * 4; b.Size() < need {
		return fmt.Errorf("%s: %s holds %d bytes, %d elements need %d", kernel, name, b.Size(), elems, need)
	}
	return nil
}

func checkCount(kernel string, dims ...int) error {
	total := 1
	for _, n := range dims {
		if n < 0 || n > math.MaxUint32 {
			return fmt.Errorf("%s: size %d out of range", kernel, n)
		}
		total *= n
		if total > math.MaxUint32 {
			return fmt.Errorf("%s: %v elements overflow 32-bit indices", kernel, dims)
		}
	}
	return nil
}

// RunBinary writes out[i] = a[i] op b[i mod bn] for i < n: b is a full operand
// (bn = n) or a trailing row repeated over a's rows (n a multiple of bn).
func RunBinary(d Compute, op BinaryOp, out, a, b *Buffer, n, bn int) error {
	const kernel = "binary_f32"
	if op > BinaryDiv {
		return fmt.Errorf("%s: unknown op %d", kernel, op)
	}
	if err := checkCount(kernel, n); err != nil {
		return err
	}
	if bn < 1 || n%bn != 0 {
		if n == 0 {
			return nil
		}
		return fmt.Errorf("%s: b has %d elements, which do not tile %d", kernel, bn, n)
	}
	for _, c := range []struct {
		name  string
		b     *Buffer
		elems int
	}{{"out", out, n}, {"a", a, n}, {"b", b, bn}} {
		if err := checkLen(kernel, c.name, c.b, c.elems); err != nil {
			return err
		}
	}
	if n == 0 {
		return nil
	}
	return d.Dispatch(elementwiseLaunch(kernel, opConst(uint32(op)), n, Out(0, out), In(1, a), In(2, b), Params(3, struct{ N, BN uint32 }{uint32(n), uint32(bn)})))
}

// RunUnary writes out[i] = op(x[i]) for i < n.
func RunUnary(d Compute, op UnaryOp, out, x *Buffer, n int) error {
	const kernel = "unary_f32"
	if op > UnarySiLU {
		return fmt.Errorf("%s: unknown op %d", kernel, op)
	}
	if err := checkCount(kernel, n); err != nil {
		return err
	}
	if err := checkLen(kernel, "out", out, n); err != nil {
		return err
	}
	if err := checkLen(kernel, "x", x, n); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	return d.Dispatch(&Launch{
		Kernel:    kernel,
		Constants: []Constant{{Index: 1, Value: uint32(op)}},
		Groups:    [3]int{groupsFor(n, elementwiseGroup), 1, 1},
		Threads:   [3]int{elementwiseGroup, 1, 1},
		Args:      []Arg{Out(0, out), In(1, x), Params(2, struct{ N uint32 }{uint32(n)})},
	})
}

// RunSoftmax writes the softmax of each of x's rows (rows × cols, row-major) to out.
func RunSoftmax(d Compute, out, x *Buffer, rows, cols int) error {
	const kernel = "softmax_rows_f32"
	if err := checkCount(kernel, rows, cols); err != nil {
		return err
	}
	if err := checkLen(kernel, "out", out, rows*cols); err != nil {
		return err
	}
	if err := checkLen(kernel, "x", x, rows*cols); err != nil {
		return err
	}
	if rows == 0 || cols == 0 {
		return nil
	}
	// One group per row, a SIMD group per 32 columns up to 256 threads: more
	// threads than columns would only idle.
	threads := min(256, groupsFor(cols, 32)*32)
	return d.Dispatch(&Launch{
		Kernel:  kernel,
		Groups:  [3]int{rows, 1, 1},
		Threads: [3]int{threads, 1, 1},
		Args:    []Arg{Out(0, out), In(1, x), Params(2, struct{ Rows, Cols uint32 }{uint32(rows), uint32(cols)})},
	})
}

// MatMulKernel names a matrix-product kernel.
type MatMulKernel string

// The matrix-product kernels: plain tiles, and simdgroup_matrix (Apple7+).
const (
	MatMulTiled     MatMulKernel = "matmul_tiled_f32"
	MatMulSimdgroup MatMulKernel = "matmul_sg8_f32"
)

// MatMulFor picks the matrix-product kernel for a device: simdgroup_matrix where
// the GPU family has it, else plain tiles.
func MatMulFor(f Facts) MatMulKernel {
	if f.SimdgroupMatrix() {
		return MatMulSimdgroup
	}
	return MatMulTiled
}

// RunMatMul writes c = a·b for row-major a (m×k), b (k×n) and c (m×n) with the
// kernel [MatMulFor] picks for d.
func RunMatMul(d Compute, c, a, b *Buffer, m, n, k int) error {
	return RunMatMulWith(d, MatMulFor(d.Facts()), c, a, b, m, n, k)
}

// RunMatMulWith is [RunMatMul] with a chosen kernel.
func RunMatMulWith(d Compute, kern MatMulKernel, c, a, b *Buffer, m, n, k int) error {
	return RunMatMulTWith(d, kern, c, a, b, m, n, k, false, false)
}

// BroadcastMaxRank is the largest rank [RunBinaryBroadcast] takes.
const BroadcastMaxRank = 6

type broadcastParams struct {
	N, Rank uint32
	Dims    [BroadcastMaxRank]uint32
	SA, SB  [BroadcastMaxRank]uint32
}

// RunBinaryBroadcast writes out = a op b with NumPy broadcasting: out has shape
// dims (rank ≤ 6) and sa, sb hold, per dim, the element strides of a and b (0
// along a dim an operand broadcasts over). One launch (binary_bcast_f32).
func RunBinaryBroadcast(d Compute, op BinaryOp, out, a, b *Buffer, dims, sa, sb []int) error {
	const kernel = "binary_bcast_f32"
	if op > BinaryDiv {
		return fmt.Errorf("%s: unknown op %d", kernel, op)
	}
	if len(dims) > BroadcastMaxRank || len(sa) != len(dims) || len(sb) != len(dims) {
		return fmt.Errorf("%s: rank %d with %d and %d strides (at most %d)", kernel, len(dims), len(sa), len(sb), BroadcastMaxRank)
	}
	if err := checkCount(kernel, dims...); err != nil {
		return err
	}
	p := broadcastParams{Rank: uint32(len(dims))}
	n, an, bn := 1, 1, 1
	for i, dim := range dims {
		if sa[i] < 0 || sb[i] < 0 {
			return fmt.Errorf("%s: negative stride", kernel)
		}
		n *= dim
		if dim > 0 {
			an += (dim - 1) * sa[i]
			bn += (dim - 1) * sb[i]
		}
		p.Dims[i], p.SA[i], p.SB[i] = uint32(dim), uint32(sa[i]), uint32(sb[i])
	}
	if n == 0 {
		return nil
	}
	if err := checkCount(kernel, an); err != nil {
		return err
	}
	if err := checkCount(kernel, bn); err != nil {
		return err
	}
	if err := checkBuffers(kernel, need{"out", out, n, false}, need{"a", a, an, false}, need{"b", b, bn, false}); err != nil {
		return err
	}
	p.N = uint32(n)
	return d.Dispatch(elementwiseLaunch(kernel, opConst(uint32(op)), n, Out(0, out), In(1, a), In(2, b), Params(3, p)))
}

// elementwiseLaunch is the launch of a kernel with one thread per element of n.
func elementwiseLaunch(kernel string, consts []Constant, n int, args ...Arg) *Launch {
	return &Launch{
		Kernel:    kernel,
		Constants: consts,
		Groups:    [3]int{groupsFor(n, elementwiseGroup), 1, 1},
		Threads:   [3]int{elementwiseGroup, 1, 1},
		Args:      args,
	}
}

// opConst sets function constant 0 (the op a kernel computes: a uint32 or a bool).
func opConst(c any) []Constant { return []Constant{{Index: 0, Value: c}} }
