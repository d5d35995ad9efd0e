package metal

import "fmt"

// need is a buffer a kernel reads or writes and the float32 (or int32) elements it
// must hold; a nil buffer is allowed only when optional.
type need struct {
	name     string
	b        *Buffer
	elems    int
	optional bool
}

// checkBuffers checks every buffer of a launch against the elements it needs.
func checkBuffers(kernel string, needs ...need) error {
	for _, n := range needs {
		if n.b == nil && n.optional {
			continue
		}
		if err := checkLen(kernel, n.name, n.b, n.elems); err != nil {
			return err
		}
	}
	return nil
}

// rowThreads is the threadgroup size of the kernels that give each row a group:
// a SIMD group per 32 columns, up to 256 threads (more would only idle).
func rowThreads(cols int) int { return min(256, max(1, groupsFor(cols, 32))*32) }

// ReduceOp selects the reduction of [RunReduceRows] and [RunReduceCols].
type ReduceOp uint32

// The reductions.
const (
	ReduceSum ReduceOp = iota
	ReduceMax
	ReduceMean
)

func (op ReduceOp) kernelOp(n int) (uint32, float32, error) {
	switch op {
	case ReduceSum:
		return 0, 1, nil
	case ReduceMax:
		return 1, 1, nil
	case ReduceMean:
		return 0, float32(1 / float64(n)), nil // n = 0: +Inf, and 0·Inf is NaN, the empty mean
	}
	return 0, 0, fmt.Errorf("unknown reduction %d", op)
}

type reduceParams struct {
	Rows, Cols, RowsPerChunk uint32
	Scale                    float32
}

// RunReduceRows writes out[r] = op over j of x[r, j] for row-major x (rows × cols):
// the sum, maximum or mean of each row. One launch (reduce_rows_f32). Sums are
// taken in a tree order: their error is bounded by about (cols/256 + 8)·2⁻²⁴·Σ|x|.
func RunReduceRows(d Compute, op ReduceOp, out, x *Buffer, rows, cols int) error {
	const kernel = "reduce_rows_f32"
	kop, scale, err := op.kernelOp(cols)
	if err != nil {
		return fmt.Errorf("%s: %w", kernel, err)
	}
	if err := checkCount(kernel, rows, cols); err != nil {
		return err
	}
	if err := checkBuffers(kernel, need{"out", out, rows, false}, need{"x", x, rows * cols, false}); err != nil {
		return err
	}
	if rows == 0 {
		return nil
	}
	return d.Dispatch(&Launch{
		Kernel:    kernel,
		Constants: []Constant{{Index: 0, Value: kop}},
		Groups:    [3]int{rows, 1, 1},
		Threads:   [3]int{rowThreads(cols), 1, 1},
		Args: []Arg{Out(0, out), In(1, x),
			Params(2, reduceParams{uint32(rows), uint32(cols), 0, scale})},
	})
}

// colChunk is the number of rows one threadgroup of a column reduction covers:
// at least 64, and at most 512 chunks, whose partial results a second pass sums.
func colChunk(rows int) int { return max(64, groupsFor(rows, 512)) }

// RunReduceCols writes out[c] = op over r of x[r, c] for row-major x (rows × cols):
// the sum (as bias gradients need), maximum or mean of each column. One launch
// for up to 64 rows; above, the rows are split in chunks reduced side by side into
// a scratch buffer, and a second launch combines the chunks (reduce_cols_f32 both).
// Sum error: about (rows/512 + 16)·2⁻²⁴·Σ|x| per column.
func RunReduceCols(d Compute, op ReduceOp, out, x *Buffer, rows, cols int) error {
	const kernel = "reduce_cols_f32"
	kop, scale, err := op.kernelOp(rows)
	if err != nil {
		return fmt.Errorf("%s: %w", kernel, err)
	}
	if err := checkCount(kernel, rows, cols); err != nil {
		return err
	}
	if err := checkBuffers(kernel, need{"out", out, cols, false}, need{"x", x, rows * cols, false}); err != nil {
		return err
	}
	return reduceCols(d, kop, scale, out, x, rows, cols)
}

// reduceCols runs the one or two passes of a column reduction.
func reduceCols(d Compute, kop uint32, scale float32, out, x *Buffer, rows, cols int) error {
	if cols == 0 {
		return nil
	}
	chunk := colChunk(rows)
	chunks := groupsFor(rows, chunk)
	if chunks <= 1 {
		return reduceColsPass(d, kop, scale, out, x, rows, max(rows, 1), cols)
	}
	part, err := d.NewBuffer(4 * chunks * cols)
	if err != nil {
		return fmt.Errorf("reduce_cols_f32: scratch: %w", err)
	}
	// Released now, the scratch returns to its pool once the launches using it complete.
	defer part.Release()
	if err := reduceColsPass(d, kop, 1, part, x, rows, chunk, cols); err != nil {
		return err
	}
	return reduceColsPass(d, kop, scale, out, part, chunks, chunks, cols)
}

// reduceColsPass is one launch of reduce_cols_f32: dst[chunk, c] for chunks of
// the given number of rows.
func reduceColsPass(d Compute, kop uint32, scale float32, dst, src *Buffer, rows, chunk, cols int) error {
	return d.Dispatch(&Launch{
		Kernel:    "reduce_cols_f32",
		Constants: []Constant{{Index: 0, Value: kop}},
		Groups:    [3]int{groupsFor(cols, 32), max(1, groupsFor(rows, chunk)), 1},
		Threads:   [3]int{32, 8, 1},
		Args: []Arg{Out(0, dst), In(1, src),
			Params(2, reduceParams{uint32(rows), uint32(cols), uint32(chunk), scale})},
	})
}
