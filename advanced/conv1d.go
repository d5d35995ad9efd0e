package advanced

import (
	"fmt"
	"time"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// Causal depthwise 1-D convolution over time, the short convolution of Mamba: each
// channel c of x (batch, length, channels) is filtered by its own kernel w[c, :]
// of width k, looking back only:
//
//	y[b,t,c] = bias[c] + Σ_{j<k} w[c,j]·x[b, t−(k−1)+j, c]
//
// (PyTorch's Conv1d with groups = channels and padding k−1, cut to the first
// `length` outputs). For decoding, the k−1 most recent inputs are the whole state.

// convGrain is the fewest multiply-adds a conv1d worker takes.
const convGrain = 1 << 15

// CausalConv1dForward writes y (batch, length, channels). w is (channels, k), bias
// (channels) or nil. prev (batch, k−1, channels) holds the k−1 inputs before
// x[b,0] (a decoding state, oldest first); nil means zeros.
func CausalConv1dForward[T autodiff.Float](y, x, w, bias, prev []T, batch, length, channels, k int) {
	checkConv("CausalConv1dForward", len(y), len(x), len(w), len(bias), len(prev), bias != nil, prev != nil, batch, length, channels, k)
	wt := transposeKernel(w, channels, k)
	rows := batch * length
	metal.ParallelFor(rows, max(1, convGrain/max(1, channels*k)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			b, t := r/length, r%length
			yr := y[r*channels : (r+1)*channels]
			if bias != nil {
				copy(yr, bias)
			} else {
				clear(yr)
			}
			for j := range k {
				var xr []T
				switch s := t - (k - 1) + j; {
				case s >= 0:
					xr = x[(b*length+s)*channels:][:channels]
				case prev != nil:
					xr = prev[(b*(k-1)+k-1+s)*channels:][:channels]
				default:
					continue
				}
				axpy(yr, wt[j*channels:(j+1)*channels], xr)
			}
		}
	})
}

// CausalConv1dBackward computes, from g = ∂L/∂y (batch, length, channels), the
// gradients dx (same shape), dw (channels, k) and db (channels), overwriting them;
// any may be nil. The forward's inputs before x are taken as zeros (no prev).
func CausalConv1dBackward[T autodiff.Float](dx, dw, db, g, x, w []T, batch, length, channels, k int) {
	checkConv("CausalConv1dBackward", len(g), len(x), len(w), len(db), 0, db != nil, false, batch, length, channels, k)
	if dx != nil && len(dx) != len(x) || dw != nil && len(dw) != len(w) {
		panic(fmt.Sprintf("advanced: CausalConv1dBackward: dx %d, dw %d elements for x %d, w %d", len(dx), len(dw), len(x), len(w)))
	}
	rows := batch * length
	if dx != nil {
		wt := transposeKernel(w, channels, k)
		// dx[b,s,c] = Σ_j w[c,j]·g[b, s+(k−1)−j, c], the taps that saw x[b,s].
		metal.ParallelFor(rows, max(1, convGrain/max(1, channels*k)), func(lo, hi int) {
			for r := lo; r < hi; r++ {
				b, s := r/length, r%length
				dr := dx[r*channels : (r+1)*channels]
				clear(dr)
				for j := range k {
					if t := s + (k - 1) - j; t < length {
						axpy(dr, wt[j*channels:(j+1)*channels], g[(b*length+t)*channels:][:channels])
					}
				}
			}
		})
	}
	if dw == nil && db == nil {
		return
	}
	// Sums over batch and time: each worker owns a block of channels, so every sum
	// runs in the same order whatever the worker count.
	dwt := make([]T, k*channels)
	if db != nil {
		clear(db)
	}
	metal.ParallelFor(channels, max(8, convGrain/max(1, rows*k)), func(lo, hi int) {
		for b := range batch {
			for t := range length {
				gr := g[(b*length+t)*channels:][lo:hi]
				if db != nil {
					axpy(db[lo:hi], nil, gr)
				}
				for j := range k {
					if s := t - (k - 1) + j; s >= 0 {
						axpy(dwt[j*channels:][lo:hi], gr, x[(b*length+s)*channels:][lo:hi])
					}
				}
			}
		}
	})
	if dw != nil {
		for c := range channels {
			for j := range k {
				dw[c*k+j] = dwt[j*channels+c]
			}
		}
	}
}

// CausalConv1dStep runs one decoding step: x and y are (batch, channels), state
// (batch, k−1, channels) the k−1 previous inputs, oldest first; state then moves
// on by one input.
func CausalConv1dStep[T autodiff.Float](y, state, x, w, bias []T, batch, channels, k int) {
	checkConv("CausalConv1dStep", len(y), len(x), len(w), len(bias), len(state), bias != nil, true, batch, 1, channels, k)
	for b := range batch {
		xr, yr := x[b*channels:(b+1)*channels], y[b*channels:(b+1)*channels]
		st := state[b*(k-1)*channels : (b+1)*(k-1)*channels]
		for c := range channels {
			wc := w[c*k : (c+1)*k]
			acc := wc[k-1] * xr[c]
			if bias != nil {
				acc += bias[c]
			}
			for j := range k - 1 {
				acc += wc[j] * st[j*channels+c]
			}
			yr[c] = acc
		}
		if k > 1 {
			copy(st, st[channels:])
			copy(st[(k-2)*channels:], xr)
		}
	}
}

// CausalConv1dAdvance moves a decoding state (batch, k−1, channels) past the
// inputs x (batch, length, channels), as running CausalConv1dStep on each would:
// afterwards it holds the last k−1 inputs of the old state followed by x.
func CausalConv1dAdvance[T autodiff.Float](state, x []T, batch, length, channels, k int) {
	if batch < 0 || length < 0 || channels < 0 || k < 1 || len(x) != batch*length*channels || len(state) != batch*(k-1)*channels {
		panic(fmt.Sprintf("advanced: CausalConv1dAdvance: batch %d, length %d, channels %d, k %d with x %d, state %d elements", batch, length, channels, k, len(x), len(state)))
	}
	keep := max(0, k-1-length) // old inputs that stay
	for b := range batch {
		st := state[b*(k-1)*channels : (b+1)*(k-1)*channels]
		copy(st, st[(k-1-keep)*channels:])
		copy(st[keep*channels:], x[(b*length+length-(k-1-keep))*channels:(b+1)*length*channels])
	}
}

func checkConv(op string, ny, nx, nw, nb, nprev int, hasBias, hasPrev bool, batch, length, channels, k int) {
	n := batch * length * channels
	if batch < 0 || length < 0 || channels < 0 || k < 1 || ny != n || nx != n || nw != channels*k ||
		hasBias && nb != channels || hasPrev && nprev != batch*(k-1)*channels {
		panic(fmt.Sprintf("advanced: %s: batch %d, length %d, channels %d, k %d with y/g %d, x %d, w %d, bias %d, state %d elements",
			op, batch, length, channels, k, ny, nx, nw, nb, nprev))
	}
}

// transposeKernel returns w (channels, k) as (k, channels), so each tap is a row
// that lines up with a row of x.
func transposeKernel[T autodiff.Float](w []T, channels, k int) []T {
	wt := make([]T, k*channels)
	for c := range channels {
		for j := range k {
			wt[j*channels+c] = w[c*k+j]
		}
	}
	return wt
}

// axpy adds a·x to y elementwise (a nil means ones).
func axpy[T autodiff.Float](y, a, x []T) {
	x = x[:len(y)]
	if a == nil {
		for i := range y {
			y[i] += x[i]
		}
		return
	}
	a = a[:len(y)]
	for i := range y {
		y[i] += a[i] * x[i]
	}
}

// CausalConv1d is the differentiable causal depthwise convolution of x (batch,
// length, channels) with w (channels, k), or (channels, 1, k) as PyTorch and
// Hugging Face store a depthwise Conv1d weight, plus bias (channels) or nil.
func CausalConv1d(x, w, bias *autodiff.Tensor) *autodiff.Tensor {
	ok := x.Rank() == 3 && x.DType().IsFloat() && w.DType() == x.DType() &&
		(w.Rank() == 2 || w.Rank() == 3 && w.Dim(1) == 1) && w.Dim(0) == x.Dim(2) && w.Dim(-1) >= 1
	if bias != nil {
		ok = ok && bias.Rank() == 1 && bias.Dim(0) == x.Dim(2) && bias.DType() == x.DType()
	}
	if !ok {
		bs := "none"
		if bias != nil {
			bs = fmt.Sprint(bias.DType(), bias.Shape())
		}
		panic(fmt.Sprintf("advanced: causal_conv1d: x %s %v, w %s %v, bias %s", x.DType(), x.Shape(), w.DType(), w.Shape(), bs))
	}
	batch, length, channels, k := x.Dim(0), x.Dim(1), x.Dim(2), w.Dim(-1)
	tm := startTimer()
	y := autodiff.Empty(x.DType(), x.Shape()...)
	switch {
	case x.DType() == autodiff.Float32 && convDevice(y, x, w, bias, batch, length, channels, k):
		// recorded on the device (and in the profile)
	case x.DType() == autodiff.Float32:
		CausalConv1dForward(y.Float32s(), x.Float32s(), w.Float32s(), optional(bias, (*autodiff.Tensor).Float32s), nil, batch, length, channels, k)
		tm.done("causal_conv1d", 2*x.Len()*x.DType().Size())
	default:
		CausalConv1dForward(y.Float64s(), x.Float64s(), w.Float64s(), optional(bias, (*autodiff.Tensor).Float64s), nil, batch, length, channels, k)
		tm.done("causal_conv1d", 2*x.Len()*x.DType().Size())
	}
	inputs := []*autodiff.Tensor{x, w}
	if bias != nil {
		inputs = append(inputs, bias)
	}
	return autodiff.Record(y, "causal_conv1d", func(g *autodiff.Tensor) {
		var dx, dw, db *autodiff.Tensor
		if autodiff.NeedsGrad(x) {
			dx = autodiff.Empty(x.DType(), x.Shape()...)
		}
		if autodiff.NeedsGrad(w) {
			dw = autodiff.Empty(w.DType(), w.Shape()...)
		}
		if bias != nil && autodiff.NeedsGrad(bias) {
			db = autodiff.Zeros(bias.DType(), bias.Shape()...)
		}
		if x.DType() == autodiff.Float32 && convBackwardDevice(dx, dw, db, g, x, w, batch, length, channels, k) {
			// recorded on the device
		} else if x.DType() == autodiff.Float32 {
			f := (*autodiff.Tensor).Float32s
			CausalConv1dBackward(optional(dx, f), optional(dw, f), optional(db, f), g.Float32s(), x.Float32s(), w.Float32s(), batch, length, channels, k)
		} else {
			f := (*autodiff.Tensor).Float64s
			CausalConv1dBackward(optional(dx, f), optional(dw, f), optional(db, f), g.Float64s(), x.Float64s(), w.Float64s(), batch, length, channels, k)
		}
		hand(x, dx)
		hand(w, dw)
		hand(bias, db)
	}, inputs...)
}

// optional returns t's elements through get, or nil for a nil tensor.
func optional[T any](t *autodiff.Tensor, get func(*autodiff.Tensor) []T) []T {
	if t == nil {
		return nil
	}
	return get(t)
}

// hand gives the gradient grad (nil when not computed) to the input t.
func hand(t, grad *autodiff.Tensor) {
	if grad != nil {
		autodiff.Accumulate(t, func() *autodiff.Tensor { return grad })
	}
}

// opTimer measures an op for MLXTRAIN_PROFILE; it costs a flag load when off.
type opTimer struct{ start time.Time }

func startTimer() opTimer {
	if metal.Profiling() {
		return opTimer{time.Now()}
	}
	return opTimer{}
}

func (o opTimer) done(op string, bytes int) { o.doneOn(op, metal.PathGo, bytes) }

// doneOn records the op on the given path.
func (o opTimer) doneOn(op string, path metal.Path, bytes int) {
	if !o.start.IsZero() {
		metal.RecordOp(op, path, time.Since(o.start), int64(bytes))
	}
}
