package autodiff

import (
	"math"

	"github.com/mlxtrain/mlxtrain/metal"
)

// Softmax and LogSoftmax along any axis. The input is viewed as (a, n, b) with the
// softmax taken over n: the last axis is the rows case (b = 1), any other axis is
// handled by column blocks without a transpose. Both subtract the maximum first
// and sum the exponentials in float64.

// smExp32 is eˣ for float32 to within one ulp (relative error below 1e-7), about
// 1.5× faster than widening to math.Exp. Outside [−87.33, 88.37], where 2ⁿ would
// leave the normal range, and for NaN it falls back to math.Exp.
func smExp32(x float32) float32 {
	if x >= smExpLo && x <= smExpHi {
		return smExpPoly(x)
	}
	return smExpSlow(x)
}

const (
	smExpLo = -87.33
	smExpHi = 88.37
)

// smExpPoly is eˣ for x in [smExpLo, smExpHi], unchecked. It is small enough to
// be inlined into the row loops (smExp32 is not).
func smExpPoly(x float32) float32 {
	// x = n·ln2 + r with |r| ≤ ln2/2; ln2 split in two so n·ln2hi is exact.
	const (
		log2e   = 1.44269504088896341
		ln2hi   = 0.693359375
		ln2lo   = -2.12194440e-4
		shifter = 1.5 * (1 << 23) // adding it rounds a float32 to an integer
	)
	nf := (x*log2e + shifter) - shifter
	r := x - nf*ln2hi - nf*ln2lo
	// A minimax polynomial for eʳ on [−ln2/2, ln2/2].
	p := (((((1.9875691500e-4*r+1.3981999507e-3)*r+8.3334519073e-3)*r+4.1665795894e-2)*r+1.6666665459e-1)*r+5.0000001201e-1)*r*r + r + 1
	return p * math.Float32frombits(uint32(int32(nf)+127)<<23)
}

//go:noinline
func smExpSlow(x float32) float32 { return float32(math.Exp(float64(x))) }

// smExp is eˣ for either float type: smExp32 for float32, math.Exp for float64.
func smExp[T Float](x T) T {
	if v, ok := any(x).(float32); ok {
		return T(smExp32(v))
	}
	return T(math.Exp(float64(x)))
}

// smExpRow sets out[i] = e^(x[i]−m) and returns their float64 sum.
func smExpRow[T Float](out, x []T, m T) float64 {
	out = out[:len(x)]
	if xs, ok := any(x).([]float32); ok {
		return smExpRow32(any(out).([]float32), xs, float32(m))
	}
	var s float64
	for i, v := range x {
		e := T(math.Exp(float64(v - m)))
		out[i] = e
		s += float64(e)
	}
	return s
}

// smExpRow32 is smExpRow for float32 (out may be nil: only the sum), with the
// polynomial inlined and two independent sums.
func smExpRow32(out, x []float32, m float32) float64 {
	var s0, s1 float64
	i := 0
	for ; i+2 <= len(x); i += 2 {
		a, b := x[i]-m, x[i+1]-m
		var e0, e1 float32
		if a >= smExpLo && a <= smExpHi {
			e0 = smExpPoly(a)
		} else {
			e0 = smExpSlow(a)
		}
		if b >= smExpLo && b <= smExpHi {
			e1 = smExpPoly(b)
		} else {
			e1 = smExpSlow(b)
		}
		if out != nil {
			out[i], out[i+1] = e0, e1
		}
		s0 += float64(e0)
		s1 += float64(e1)
	}
	if i < len(x) {
		e := smExp32(x[i] - m)
		if out != nil {
			out[i] = e
		}
		s0 += float64(e)
	}
	return s0 + s1
}

// smSumExpRow returns the float64 sum of e^(x[i]−m) without storing the terms.
func smSumExpRow[T Float](x []T, m T) float64 {
	if xs, ok := any(x).([]float32); ok {
		return smExpRow32(nil, xs, float32(m))
	}
	var s float64
	for _, v := range x {
		s += math.Exp(float64(v - m))
	}
	return s
}

// smMaxRow is the maximum of a non-empty row (NaN if it holds one).
func smMaxRow[T Float](x []T) T {
	m := x[0]
	for _, v := range x[1:] {
		if v > m || v != v {
			m = v
		}
	}
	return m
}

// LogSumExpRows writes ln Σⱼ e^x[i,j] for each of the rows of x (rows, cols) into
// out (float64, one per row), subtracting the row maximum first. A row of −Inf
// gives −Inf; an empty row gives −Inf.
func LogSumExpRows[T Float](out []float64, x []T, rows, cols int) {
	metal.ParallelFor(rows, redRowsGrain(cols), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			out[i] = smLogSumExp(x[i*cols : (i+1)*cols])
		}
	})
}

func smLogSumExp[T Float](row []T) float64 {
	if len(row) == 0 {
		return math.Inf(-1)
	}
	m := smMaxRow(row)
	if math.IsInf(float64(m), 0) {
		return float64(m) // all −Inf, or a +Inf that dominates
	}
	return float64(m) + math.Log(smSumExpRow(row, m))
}

// SoftmaxRows writes the softmax of each row of x (rows, cols) into out.
func SoftmaxRows[T Float](out, x []T, rows, cols int) { SoftmaxAxis(out, x, rows, cols, 1) }

// LogSoftmaxRows writes the log-softmax of each row of x (rows, cols) into out.
func LogSoftmaxRows[T Float](out, x []T, rows, cols int) { LogSoftmaxAxis(out, x, rows, cols, 1) }

// SoftmaxAxis writes the softmax of x, viewed as (a, n, b), over its middle axis.
// out may alias x.
func SoftmaxAxis[T Float](out, x []T, a, n, b int) { smForward(out, x, a, n, b, false) }

// LogSoftmaxAxis writes the log-softmax of x, viewed as (a, n, b), over its middle
// axis. out may alias x.
func LogSoftmaxAxis[T Float](out, x []T, a, n, b int) { smForward(out, x, a, n, b, true) }

func smForward[T Float](out, x []T, a, n, b int, log bool) {
	if n == 0 {
		return
	}
	if b == 1 {
		metal.ParallelFor(a, redRowsGrain(n), func(lo, hi int) {
			for i := lo; i < hi; i++ {
				xr, or := x[i*n:(i+1)*n], out[i*n:(i+1)*n]
				m := smMaxRow(xr)
				if log {
					shift := T(float64(m) + math.Log(smSumExpRow(xr, m)))
					for j, v := range xr {
						or[j] = v - shift
					}
					continue
				}
				inv := T(1 / smExpRow(or, xr, m))
				for j := range or {
					or[j] *= inv
				}
			}
		})
		return
	}
	redForTiles(a, 3*n, b, func(ai, b0, b1 int) {
		var mx [redTile]T
		var sum [redTile]float64
		w := b1 - b0
		base := ai * n * b
		copy(mx[:w], x[base+b0:base+b1])
		for r := 1; r < n; r++ {
			for j, v := range x[base+r*b+b0 : base+r*b+b1] {
				if v > mx[j] || v != v {
					mx[j] = v
				}
			}
		}
		for r := range n {
			xr, or := x[base+r*b+b0:base+r*b+b1], out[base+r*b+b0:base+r*b+b1]
			for j, v := range xr {
				e := smExp(v - mx[j])
				if !log {
					or[j] = e
				}
				sum[j] += float64(e)
			}
		}
		if log {
			var shift [redTile]T
			for j := range w {
				shift[j] = T(float64(mx[j]) + math.Log(sum[j]))
			}
			for r := range n {
				xr, or := x[base+r*b+b0:base+r*b+b1], out[base+r*b+b0:base+r*b+b1]
				for j, v := range xr {
					or[j] = v - shift[j]
				}
			}
			return
		}
		var inv [redTile]T
		for j := range w {
			inv[j] = T(1 / sum[j])
		}
		for r := range n {
			or := out[base+r*b+b0 : base+r*b+b1]
			for j := range or {
				or[j] *= inv[j]
			}
		}
	})
}

// SoftmaxBackwardAxis writes dx = y ⊙ (g − Σₙ g ⊙ y), the VJP of y = softmax(x)
// over the middle axis of the (a, n, b) view. dx may alias g.
func SoftmaxBackwardAxis[T Float](dx, g, y []T, a, n, b int) { smBackward(dx, g, y, a, n, b, false) }

// LogSoftmaxBackwardAxis writes dx = g − e^y ⊙ Σₙ g, the VJP of y = logsoftmax(x)
// over the middle axis of the (a, n, b) view. dx may alias g.
func LogSoftmaxBackwardAxis[T Float](dx, g, y []T, a, n, b int) { smBackward(dx, g, y, a, n, b, true) }

func smBackward[T Float](dx, g, y []T, a, n, b int, log bool) {
	if n == 0 {
		return
	}
	if b == 1 {
		metal.ParallelFor(a, redRowsGrain(2*n), func(lo, hi int) {
			for i := lo; i < hi; i++ {
				gr, yr, dr := g[i*n:(i+1)*n], y[i*n:(i+1)*n], dx[i*n:(i+1)*n]
				if log {
					s := T(redSumRow(gr))
					for j, v := range yr {
						dr[j] = gr[j] - smExp(v)*s
					}
					continue
				}
				var s float64
				for j, v := range yr {
					s += float64(gr[j]) * float64(v)
				}
				st := T(s)
				for j, v := range yr {
					dr[j] = v * (gr[j] - st)
				}
			}
		})
		return
	}
	redForTiles(a, 2*n, b, func(ai, b0, b1 int) {
		var sum [redTile]float64
		var st [redTile]T
		w := b1 - b0
		base := ai * n * b
		for r := range n {
			gr, yr := g[base+r*b+b0:base+r*b+b1], y[base+r*b+b0:base+r*b+b1]
			for j, v := range gr {
				if log {
					sum[j] += float64(v)
				} else {
					sum[j] += float64(v) * float64(yr[j])
				}
			}
		}
		for j := range w {
			st[j] = T(sum[j])
		}
		for r := range n {
			gr, yr, dr := g[base+r*b+b0:base+r*b+b1], y[base+r*b+b0:base+r*b+b1], dx[base+r*b+b0:base+r*b+b1]
			for j, v := range yr {
				if log {
					dr[j] = gr[j] - smExp(v)*st[j]
				} else {
					dr[j] = v * (gr[j] - st[j])
				}
			}
		}
	})
}

// smLayout returns the (a, n, b) view of shape around axis.
func smLayout(op string, shape []int, axis int) (a, n, b int) {
	ax := normAxis(op, axis, len(shape))
	return numel(shape[:ax]), shape[ax], numel(shape[ax+1:])
}

func softmaxOp(name string, x *Tensor, axis int, log bool) *Tensor {
	checkFloat(name, x)
	a, n, b := smLayout(name, x.shape, axis)
	tm := startOp()
	out := Empty(x.dtype, x.shape...)
	path := metal.PathMetal
	switch {
	case tryDevice(name, DeviceFor(softmaxDevOp, []*Tensor{out, x}, a*b, n), func(d metal.Compute) error { return softmaxDevice(log, out, x, a, n, b, d) }):
	case x.dtype == Float32:
		path = metal.PathGo
		smForward(out.Float32s(), x.Float32s(), a, n, b, log)
	default:
		path = metal.PathGo
		smForward(out.Float64s(), x.Float64s(), a, n, b, log)
	}
	tm.done(name, path, 2*out.Len()*out.dtype.Size())
	return record(out, name, func(g *Tensor) {
		accumulate(x, func() *Tensor {
			dx := Empty(x.dtype, x.shape...)
			if tryDevice(name, DeviceFor(softmaxDevOp, []*Tensor{dx, g, out}, a*b, n), func(d metal.Compute) error { return softmaxBackwardDevice(log, dx, g, out, a, n, b, d) }) {
				return dx
			}
			if x.dtype == Float32 {
				smBackward(dx.Float32s(), g.Float32s(), out.Float32s(), a, n, b, log)
			} else {
				smBackward(dx.Float64s(), g.Float64s(), out.Float64s(), a, n, b, log)
			}
			return dx
		})
	}, x)
}

// Softmax returns e^x / Σ e^x along axis (negative counts from the end).
func Softmax(x *Tensor, axis int) *Tensor { return softmaxOp("softmax", x, axis, false) }

// LogSoftmax returns x − ln Σ e^x along axis, computed without forming the softmax.
func LogSoftmax(x *Tensor, axis int) *Tensor { return softmaxOp("log_softmax", x, axis, true) }
