package metal

import "fmt"

type rowsParams struct{ Rows, Cols uint32 }

// rowsLaunch checks and dispatches a kernel that gives each row of a rows × cols
// matrix a threadgroup and takes (bufs..., params) as its arguments.
func rowsLaunch(d Compute, kernel string, consts []Constant, rows, cols int, args []Arg, needs ...need) error {
	if err := checkCount(kernel, rows, cols); err != nil {
		return err
	}
	if err := checkBuffers(kernel, needs...); err != nil {
		return err
	}
	if rows == 0 || cols == 0 {
		return nil
	}
	return d.Dispatch(&Launch{
		Kernel:    kernel,
		Constants: consts,
		Groups:    [3]int{rows, 1, 1},
		Threads:   [3]int{rowThreads(cols), 1, 1},
		Args:      append(args, Params(len(args), rowsParams{uint32(rows), uint32(cols)})),
	})
}

// RunLogSoftmax writes the log-softmax of each of x's rows (rows × cols) to out.
// One launch (logsoftmax_rows_f32).
func RunLogSoftmax(d Compute, out, x *Buffer, rows, cols int) error {
	const kernel = "logsoftmax_rows_f32"
	n := rows * cols
	return rowsLaunch(d, kernel, nil, rows, cols, []Arg{Out(0, out), In(1, x)},
		need{"out", out, n, false}, need{"x", x, n, false})
}

// RunSoftmaxBackward writes dx = y·(g − Σ g·y) per row, the gradient of a row
// softmax whose output is y, for the upstream gradient g. One launch.
func RunSoftmaxBackward(d Compute, dx, g, y *Buffer, rows, cols int) error {
	return softmaxBackward(d, false, dx, g, y, rows, cols)
}

// RunLogSoftmaxBackward writes dx = g − exp(y)·Σ g per row, the gradient of a row
// log-softmax whose output is y. One launch.
func RunLogSoftmaxBackward(d Compute, dx, g, y *Buffer, rows, cols int) error {
	return softmaxBackward(d, true, dx, g, y, rows, cols)
}

func softmaxBackward(d Compute, log bool, dx, g, y *Buffer, rows, cols int) error {
	const kernel = "softmax_bwd_rows_f32"
	n := rows * cols
	return rowsLaunch(d, kernel, []Constant{{Index: 0, Value: log}}, rows, cols,
		[]Arg{Out(0, dx), In(1, g), In(2, y)},
		need{"dx", dx, n, false}, need{"g", g, n, false}, need{"y", y, n, false})
}

// CrossEntropyConfig holds the options of the fused cross-entropy kernels, as
// PyTorch defines them: rows whose target is Ignore contribute nothing, and the
// target distribution of class t is (1−Smoothing)·onehot(t) + Smoothing/V.
type CrossEntropyConfig struct {
	Ignore    int32
	Smoothing float32
}

type crossEntropyParams struct {
	Rows, Vocab uint32
	Ignore      int32
	Smoothing   float32
	GradMul     float32
	GradStride  uint32
}

func (c CrossEntropyConfig) check(kernel string) error {
	if !(c.Smoothing >= 0 && c.Smoothing <= 1) {
		return fmt.Errorf("%s: label smoothing %g outside [0, 1]", kernel, c.Smoothing)
	}
	return nil
}

// RunCrossEntropy computes, for each row of logits (rows × vocab) with int32
// class targets, lse[i] = ln Σⱼ exp(logits[i,j]) and the loss against the smoothed
// target, loss[i] = lse[i] − (1−ε)·logits[i,tᵢ] − (ε/V)·Σⱼ logits[i,j]
// (autodiff.CrossEntropyRows). Ignored rows get 0 for both; a target outside
// [0, vocab) that is not ignored gives a NaN loss (check targets first). One
// launch (xent_fwd_f32); a mean or sum over the rows is [RunReduceRows] of loss
// as one row (divide the sum by the count of rows not ignored for PyTorch's mean).
func RunCrossEntropy(d Compute, loss, lse, logits, targets *Buffer, rows, vocab int, c CrossEntropyConfig) error {
	const kernel = "xent_fwd_f32"
	if err := c.check(kernel); err != nil {
		return err
	}
	if err := checkCount(kernel, rows, vocab); err != nil {
		return err
	}
	if err := checkBuffers(kernel, need{"loss", loss, rows, false}, need{"lse", lse, rows, false},
		need{"logits", logits, rows * vocab, false}, need{"targets", targets, rows, false}); err != nil {
		return err
	}
	if rows == 0 {
		return nil
	}
	if vocab == 0 {
		return fmt.Errorf("%s: no classes", kernel)
	}
	return d.Dispatch(&Launch{
		Kernel:  kernel,
		Groups:  [3]int{rows, 1, 1},
		Threads: [3]int{rowThreads(vocab), 1, 1},
		Args: []Arg{Out(0, loss), Out(1, lse), In(2, logits), In(3, targets),
			Params(4, crossEntropyParams{uint32(rows), uint32(vocab), c.Ignore, c.Smoothing, 0, 0})},
	})
}

// RunCrossEntropyBackward writes the gradient of [RunCrossEntropy]'s losses,
//
//	dlogits[i,j] = sᵢ·(exp(logits[i,j] − lse[i]) − (1−ε)·[j = tᵢ] − ε/V),
//
// with sᵢ = g[i]·gradMul when perRow (g holds one upstream value per row: the
// "none" reduction) or g[0]·gradMul (g is the scalar gradient of a sum, or of a
// mean with gradMul = 1/count). Ignored rows get zeros. One launch (xent_bwd_f32).
func RunCrossEntropyBackward(d Compute, dlogits, logits, targets, lse, g *Buffer, rows, vocab int, c CrossEntropyConfig, gradMul float32, perRow bool) error {
	const kernel = "xent_bwd_f32"
	if err := c.check(kernel); err != nil {
		return err
	}
	if err := checkCount(kernel, rows, vocab); err != nil {
		return err
	}
	gn, stride := 1, uint32(0)
	if perRow {
		gn, stride = rows, 1
	}
	if err := checkBuffers(kernel, need{"dlogits", dlogits, rows * vocab, false}, need{"logits", logits, rows * vocab, false},
		need{"targets", targets, rows, false}, need{"lse", lse, rows, false}, need{"g", g, gn, false}); err != nil {
		return err
	}
	if rows == 0 || vocab == 0 {
		return nil
	}
	return d.Dispatch(&Launch{
		Kernel:  kernel,
		Groups:  [3]int{rows, 1, 1},
		Threads: [3]int{rowThreads(vocab), 1, 1},
		Args: []Arg{Out(0, dlogits), In(1, logits), In(2, targets), In(3, lse), In(4, g),
			Params(5, crossEntropyParams{uint32(rows), uint32(vocab), c.Ignore, c.Smoothing, gradMul, stride})},
	})
}
