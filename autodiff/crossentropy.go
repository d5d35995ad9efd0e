package autodiff

import (
	"fmt"
	"math"

	"github.com/mlxtrain/mlxtrain/internal/vecmath"
	"github.com/mlxtrain/mlxtrain/metal"
)

// LossReduction says how a loss combines its per-row values.
type LossReduction string

// The reductions. The zero value means ReductionMean.
const (
	ReductionMean LossReduction = "mean" // the mean over the rows that are not ignored
	ReductionSum  LossReduction = "sum"  // the sum over all rows
	ReductionNone LossReduction = "none" // one loss per row, 0 for ignored rows
)

// DefaultIgnoreIndex is the target that CrossEntropy skips unless told otherwise,
// as in PyTorch.
const DefaultIgnoreIndex = -100

// CrossEntropyOptions configures [CrossEntropy]. The zero value gives PyTorch's
// defaults: ignore index −100, no label smoothing, mean reduction.
type CrossEntropyOptions struct {
	// IgnoreIndex, when set, replaces DefaultIgnoreIndex: rows whose target equals
	// it contribute no loss and no gradient and are left out of the mean. To skip
	// padding id 0: pad := int32(0); opt.IgnoreIndex = &pad.
	IgnoreIndex *int32
	// LabelSmoothing ε in [0, 1] mixes the one-hot target with the uniform
	// distribution: the target becomes (1−ε)·onehot + ε/V, as PyTorch defines it.
	LabelSmoothing float64
	// Reduction combines the per-row losses; "" means ReductionMean.
	Reduction LossReduction
}

// CrossEntropyRows computes, for each of the rows of logits (rows, v) with target
// class targets[i], lse[i] = ln Σⱼ e^logits[i,j] and
//
//	loss[i] = lse[i] − (1−ε)·logits[i,tᵢ] − (ε/v)·Σⱼ logits[i,j],
//
// the cross-entropy against the target smoothed by ε. Rows whose target is ignore
// get loss 0 and lse 0 and are not read. Other targets must lie in [0, v): the
// caller checks them. The softmax itself is never stored.
func CrossEntropyRows[T Float](loss, lse []float64, logits []T, targets []int32, rows, v int, ignore int32, smoothing float64) {
	l32, _ := any(logits).([]float32)
	metal.ParallelFor(rows, redRowsGrain(v), func(lo, hi int) {
		var tmp, zeros []float32
		if l32 != nil && v >= 8 {
			tmp, zeros = make([]float32, v), make([]float32, v)
		}
		for i := lo; i < hi; i++ {
			t := targets[i]
			if t == ignore {
				loss[i], lse[i] = 0, 0
				continue
			}
			row := logits[i*v : (i+1)*v]
			var l float64
			if tmp != nil {
				l = ceLogSumExp32(l32[i*v:(i+1)*v], tmp, zeros)
			} else {
				l = smLogSumExp(row)
			}
			li := l - (1-smoothing)*float64(row[t])
			if smoothing != 0 {
				li -= smoothing / float64(v) * redSumRow(row)
			}
			loss[i], lse[i] = li, l
		}
	})
}

// CrossEntropyBackwardRows writes the gradient of CrossEntropyRows' losses,
// weighted per row by scale (one value per row, or a single value for all):
//
//	dlogits[i,j] = scaleᵢ · (e^(logits[i,j] − lse[i]) − (1−ε)·[j = tᵢ] − ε/v),
//
// in one pass per row. Ignored rows get zeros.
func CrossEntropyBackwardRows[T Float](dlogits, logits []T, targets []int32, lse, scale []float64, rows, v int, ignore int32, smoothing float64) {
	metal.ParallelFor(rows, redRowsGrain(v), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			d := dlogits[i*v : (i+1)*v]
			t := targets[i]
			if t == ignore {
				clear(d)
				continue
			}
			sc := scale[0]
			if len(scale) > 1 {
				sc = scale[i]
			}
			ceRowGrad(d, logits[i*v:(i+1)*v], lse[i], sc, sc*smoothing/float64(v))
			d[t] -= T(sc * (1 - smoothing))
		}
	})
}

// ceLogSumExp32 is smLogSumExp of a float32 row with vecmath's 8-lane
// exponential, given a scratch row tmp and a row of zeros as long. A row with
// a NaN or an infinity (x·0 is then not 0) takes smLogSumExp.
func ceLogSumExp32(row, tmp, zeros []float32) float64 {
	if vecmath.Dot(row, zeros) != 0 {
		return smLogSumExp(row)
	}
	copy(tmp, row)
	m, s := vecmath.SoftmaxRow(tmp, float32(math.Inf(-1)))
	return float64(m) + math.Log(float64(s))
}

// ceRowGrad sets d[j] = sc·e^(x[j]−lse) − off. The exponent is formed in float64
// and rounded once, so float32 probabilities carry an absolute error below 1e-7.
func ceRowGrad[T Float](d, x []T, lse, sc, off float64) {
	d = d[:len(x)]
	if xs, ok := any(x).([]float32); ok {
		ds := any(d).([]float32)
		sc32, off32 := float32(sc), float32(off)
		if len(xs) >= 8 && vecmath.AVX2FMA && !math.IsInf(lse, 0) && lse == lse {
			// 8 lanes at a time: e^(x − lse) with lse rounded to float32
			// (lse ≥ every x, so SoftmaxRow's running maximum stays lse, or
			// a max x within rounding of it).
			copy(ds, xs)
			vecmath.SoftmaxRow(ds, float32(lse))
			vecmath.Scale(ds, sc32, ds)
			if off32 != 0 {
				for j := range ds {
					ds[j] -= off32
				}
			}
			return
		}
		for j, v := range xs {
			a := float32(float64(v) - lse)
			var e float32
			if a >= smExpLo && a <= smExpHi {
				e = smExpPoly(a)
			} else {
				e = smExpSlow(a)
			}
			ds[j] = e*sc32 - off32
		}
		return
	}
	for j, v := range x {
		d[j] = T(sc*math.Exp(float64(v)-lse) - off)
	}
}

// CrossEntropy is the softmax cross-entropy of logits (..., V) against integer
// class targets (...) (int32), fused: the forward pass keeps only each row's
// log-sum-exp, and the backward pass forms softmax − target in one sweep, never
// materialising the softmax. With ReductionMean the result is the mean over the
// rows whose target is not the ignore index (NaN when every row is ignored); with
// ReductionSum their sum; both are 0-dimensional. ReductionNone returns the
// per-row losses, shaped like targets. A target outside [0, V) that is not the
// ignore index panics. Only logits get a gradient.
func CrossEntropy(logits, targets *Tensor, opt CrossEntropyOptions) *Tensor {
	const name = "cross_entropy"
	checkFloat(name, logits)
	if targets.dtype != Int32 {
		panic(fmt.Sprintf("autodiff: %s: targets are %s, want int32", name, targets.dtype))
	}
	rank := len(logits.shape)
	if rank == 0 || !sameShape(logits.shape[:rank-1], targets.shape) {
		panic(fmt.Sprintf("autodiff: %s: logits %s need targets of shape (logits shape without its last axis), got %s",
			name, shapeString(logits.shape), shapeString(targets.shape)))
	}
	ignore := int32(DefaultIgnoreIndex)
	if opt.IgnoreIndex != nil {
		ignore = *opt.IgnoreIndex
	}
	eps := opt.LabelSmoothing
	if !(eps >= 0 && eps <= 1) {
		panic(fmt.Sprintf("autodiff: %s: label smoothing %g outside [0, 1]", name, eps))
	}
	reduction := opt.Reduction
	switch reduction {
	case "":
		reduction = ReductionMean
	case ReductionMean, ReductionSum, ReductionNone:
	default:
		panic(fmt.Sprintf("autodiff: %s: unknown reduction %q (want mean, sum or none)", name, string(reduction)))
	}
	v := logits.shape[rank-1]
	rows := targets.Len()
	// A private copy of the targets: backward must not depend on the caller
	// keeping (or not reusing) the batch's target buffer.
	ts := append([]int32(nil), targets.Int32s()...)
	count := 0
	for i, t := range ts {
		if t == ignore {
			continue
		}
		if t < 0 || int(t) >= v {
			panic(fmt.Sprintf("autodiff: %s: target %d at row %d is outside [0, %d) for logits %s (ignore index %d)",
				name, t, i, v, shapeString(logits.shape), ignore))
		}
		count++
	}

	tm := startOp()
	if out := crossEntropyOnDevice(logits, targets, rows, v, ignore, eps, reduction, count); out != nil {
		tm.done(name, metal.PathMetal, logits.Len()*logits.dtype.Size())
		return out
	}
	loss := make([]float64, rows)
	lse := make([]float64, rows)
	if logits.dtype == Float32 {
		CrossEntropyRows(loss, lse, logits.Float32s(), ts, rows, v, ignore, eps)
	} else {
		CrossEntropyRows(loss, lse, logits.Float64s(), ts, rows, v, ignore, eps)
	}
	var out *Tensor
	if reduction == ReductionNone {
		out = Empty(logits.dtype, targets.shape...)
		if out.dtype == Float32 {
			o := out.Float32s()
			for i, l := range loss {
				o[i] = float32(l)
			}
		} else {
			copy(out.Float64s(), loss)
		}
	} else {
		total := 0.0
		for _, l := range loss {
			total += l
		}
		if reduction == ReductionMean {
			total /= float64(count) // 0/0 = NaN when every row is ignored
		}
		out = Full(logits.dtype, total)
	}
	tm.done(name, metal.PathGo, logits.Len()*logits.dtype.Size())

	return record(out, name, func(g *Tensor) {
		accumulate(logits, func() *Tensor {
			var scale []float64
			switch reduction {
			case ReductionNone:
				scale = g.Float64Values()
			case ReductionSum:
				scale = []float64{g.At(0)}
			default:
				scale = []float64{g.At(0) / float64(count)}
			}
			dx := Empty(logits.dtype, logits.shape...)
			if logits.dtype == Float32 {
				CrossEntropyBackwardRows(dx.Float32s(), logits.Float32s(), ts, lse, scale, rows, v, ignore, eps)
			} else {
				CrossEntropyBackwardRows(dx.Float64s(), logits.Float64s(), ts, lse, scale, rows, v, ignore, eps)
			}
			return dx
		})
	}, logits)
}

// crossEntropyOnDevice is CrossEntropy's device path (targets checked), or nil
// when the CPU runs it.
func crossEntropyOnDevice(logits, targets *Tensor, rows, v int, ignore int32, eps float64, reduction LossReduction, count int) *Tensor {
	const name = "cross_entropy"
	d := DeviceFor(xentOp, []*Tensor{logits, targets}, rows, v)
	if d == nil || rows == 0 {
		return nil
	}
	c := metal.CrossEntropyConfig{Ignore: ignore, Smoothing: float32(eps)}
	none := reduction == ReductionNone
	scale := float32(1)
	if reduction == ReductionMean {
		scale = float32(1 / float64(count)) // +Inf when every row is ignored: 0·Inf is NaN, the empty mean
	}
	var out *Tensor
	if none {
		out = Empty(Float32, targets.shape...)
	} else {
		out = Empty(Float32)
	}
	lse := Empty(Float32, rows)
	ts := targets.Clone() // backward must not depend on the caller's batch buffer
	if !tryDevice(name, d, func(d metal.Compute) error {
		return crossEntropyDevice(out, lse, logits, ts, rows, v, c, none, scale, d)
	}) {
		releaseAll([]*Tensor{out, lse, ts})
		return nil
	}
	out = record(out, name, func(g *Tensor) {
		accumulate(logits, func() *Tensor {
			dx := Empty(logits.dtype, logits.shape...)
			if tryDevice(name, DeviceFor(xentOp, []*Tensor{dx, logits, ts, lse, g}, rows, v), func(d metal.Compute) error {
				return metal.RunCrossEntropyBackward(d, dx.buf, logits.buf, ts.buf, lse.buf, g.buf, rows, v, c, scale, none)
			}) {
				return dx
			}
			// The CPU gradient from the device's statistics.
			l := make([]float64, rows)
			for i, x := range lse.Float32s() {
				l[i] = float64(x)
			}
			var sc []float64
			if none {
				sc = g.Float64Values()
			} else {
				sc = []float64{g.At(0) * float64(scale)}
			}
			CrossEntropyBackwardRows(dx.Float32s(), logits.Float32s(), ts.Int32s(), l, sc, rows, v, ignore, eps)
			return dx
		})
	}, logits)
	Own(out, lse, ts)
	return out
}
