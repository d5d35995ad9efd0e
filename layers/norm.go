package layers

import (
	"fmt"
	"math"
	"sync"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// normGrain is the number of elements a worker takes at least: a row of a few
// hundred floats is too little to pay for a goroutine.
const normGrain = 1 << 14

// RMSNormForward computes y = x·w / √(mean(x²)+eps) over rows of length d and
// stores each row's 1/√(mean(x²)+eps) in rstd (len rows). w may be nil (no gain).
func RMSNormForward[T autodiff.Float](y, x, w, rstd []T, d int, eps float64) {
	rows := len(rstd)
	metal.ParallelFor(rows, max(1, normGrain/max(d, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, yr := x[r*d:(r+1)*d], y[r*d:(r+1)*d]
			var ss float64
			for _, v := range xr {
				ss += float64(v) * float64(v)
			}
			inv := T(1 / math.Sqrt(ss/float64(d)+eps))
			rstd[r] = inv
			if w == nil {
				for i, v := range xr {
					yr[i] = v * inv
				}
				continue
			}
			w := w[:d]
			for i, v := range xr {
				yr[i] = v * inv * w[i]
			}
		}
	})
}

// RMSNormBackward computes dx (and adds to dw when dw is not nil) from g, x, w and
// the rstd saved by the forward pass.
func RMSNormBackward[T autodiff.Float](dx, dw, g, x, w, rstd []T, d int) {
	rows := len(rstd)
	var mu sync.Mutex
	metal.ParallelFor(rows, max(1, normGrain/max(d, 1)), func(lo, hi int) {
		var part []float64
		if dw != nil {
			part = make([]float64, d)
		}
		for r := lo; r < hi; r++ {
			xr, gr, dxr := x[r*d:(r+1)*d], g[r*d:(r+1)*d], dx[r*d:(r+1)*d]
			inv := float64(rstd[r])
			var dot float64 // Σ g·w·x
			for i, v := range xr {
				gw := float64(gr[i])
				if w != nil {
					gw *= float64(w[i])
				}
				dot += gw * float64(v)
				if part != nil {
					part[i] += float64(gr[i]) * float64(v) * inv
				}
			}
			c := inv * inv * inv * dot / float64(d)
			for i, v := range xr {
				gw := float64(gr[i])
				if w != nil {
					gw *= float64(w[i])
				}
				dxr[i] = T(inv*gw - c*float64(v))
			}
		}
		if part != nil {
			mu.Lock()
			for i, v := range part {
				dw[i] += T(v)
			}
			mu.Unlock()
		}
	})
}

// LayerNormForward computes y = (x−mean)/√(var+eps)·w + b over rows of length d,
// storing each row's mean and 1/√(var+eps). w and b may be nil.
func LayerNormForward[T autodiff.Float](y, x, w, b, mean, rstd []T, d int, eps float64) {
	rows := len(rstd)
	metal.ParallelFor(rows, max(1, normGrain/max(d, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, yr := x[r*d:(r+1)*d], y[r*d:(r+1)*d]
			var s float64
			for _, v := range xr {
				s += float64(v)
			}
			m := s / float64(d)
			var ss float64
			for _, v := range xr {
				dv := float64(v) - m
				ss += dv * dv
			}
			inv := 1 / math.Sqrt(ss/float64(d)+eps)
			mean[r], rstd[r] = T(m), T(inv)
			for i, v := range xr {
				h := (float64(v) - m) * inv
				if w != nil {
					h *= float64(w[i])
				}
				if b != nil {
					h += float64(b[i])
				}
				yr[i] = T(h)
			}
		}
	})
}

// LayerNormBackward computes dx and adds to dw, db (each may be nil).
func LayerNormBackward[T autodiff.Float](dx, dw, db, g, x, w, mean, rstd []T, d int) {
	rows := len(rstd)
	var mu sync.Mutex
	metal.ParallelFor(rows, max(1, normGrain/max(d, 1)), func(lo, hi int) {
		var pw, pb []float64
		if dw != nil {
			pw = make([]float64, d)
		}
		if db != nil {
			pb = make([]float64, d)
		}
		for r := lo; r < hi; r++ {
			xr, gr, dxr := x[r*d:(r+1)*d], g[r*d:(r+1)*d], dx[r*d:(r+1)*d]
			m, inv := float64(mean[r]), float64(rstd[r])
			var sg, sgx float64 // Σ ĝ, Σ ĝ·x̂ with ĝ = g·w
			for i, v := range xr {
				xh := (float64(v) - m) * inv
				gh := float64(gr[i])
				if pw != nil {
					pw[i] += gh * xh
				}
				if pb != nil {
					pb[i] += gh
				}
				if w != nil {
					gh *= float64(w[i])
				}
				sg += gh
				sgx += gh * xh
			}
			sg /= float64(d)
			sgx /= float64(d)
			for i, v := range xr {
				xh := (float64(v) - m) * inv
				gh := float64(gr[i])
				if w != nil {
					gh *= float64(w[i])
				}
				dxr[i] = T(inv * (gh - sg - xh*sgx))
			}
		}
		mu.Lock()
		for i := range pw {
			dw[i] += T(pw[i])
		}
		for i := range pb {
			db[i] += T(pb[i])
		}
		mu.Unlock()
	})
}

func checkNorm(op string, x, w, b *autodiff.Tensor) int {
	if x.Rank() == 0 {
		panic(fmt.Sprintf("layers: %s of a scalar", op))
	}
	d := x.Dim(-1)
	for _, p := range []*autodiff.Tensor{w, b} {
		if p != nil && (p.Rank() != 1 || p.Dim(0) != d || p.DType() != x.DType()) {
			panic(fmt.Sprintf("layers: %s: parameter %s %v for input %s %v", op, p.DType(), p.Shape(), x.DType(), x.Shape()))
		}
	}
	if !x.DType().IsFloat() {
		panic(fmt.Sprintf("layers: %s of %s", op, x.DType()))
	}
	return d
}

func optSlice[T autodiff.Float](t *autodiff.Tensor, f func(*autodiff.Tensor) []T) []T {
	if t == nil {
		return nil
	}
	return f(t)
}

func f32(t *autodiff.Tensor) []float32 { return t.Float32s() }
func f64(t *autodiff.Tensor) []float64 { return t.Float64s() }

// RMSNormOp is the fused, differentiable RMSNorm over the last axis; w may be nil.
func RMSNormOp(x, w *autodiff.Tensor, eps float64) *autodiff.Tensor {
	d := checkNorm("rms_norm", x, w, nil)
	rows := x.Len() / max(d, 1)
	y := autodiff.Empty(x.DType(), x.Shape()...)
	rstd := autodiff.Empty(x.DType(), rows)
	tm := startOp()
	dev := autodiff.DeviceFor(rmsNormOp, []*autodiff.Tensor{y, x, w}, rows, d)
	switch {
	case tryDevice("rms_norm", dev, func(dv metal.Compute) error { return normDevice(dv, false, y, x, w, nil, nil, rstd, rows, d, eps) }):
	case x.DType() == autodiff.Float32:
		dev = nil
		RMSNormForward(y.Float32s(), x.Float32s(), optSlice(w, f32), rstd.Float32s(), d, eps)
	default:
		RMSNormForward(y.Float64s(), x.Float64s(), optSlice(w, f64), rstd.Float64s(), d, eps)
	}
	tm.done("rms_norm", dev != nil, 2*x.Len()*x.DType().Size())
	inputs := []*autodiff.Tensor{x}
	if w != nil {
		inputs = append(inputs, w)
	}
	out := autodiff.Record(y, "rms_norm", func(g *autodiff.Tensor) {
		needW := w != nil && autodiff.NeedsGrad(w)
		if !autodiff.NeedsGrad(x) && !needW {
			return
		}
		dx := autodiff.Empty(x.DType(), x.Shape()...)
		var dw *autodiff.Tensor
		if needW {
			dw = autodiff.Zeros(w.DType(), d)
		}
		switch {
		case dev != nil && tryDevice("rms_norm", autodiff.DeviceFor(rmsNormOp, []*autodiff.Tensor{g, x, w}, rows, d), func(dv metal.Compute) error {
			return normBackwardDevice(dv, false, dx, dw, nil, g, x, w, nil, rstd, rows, d)
		}):
		case x.DType() == autodiff.Float32:
			RMSNormBackward(dx.Float32s(), optSlice(dw, f32), g.Float32s(), x.Float32s(), optSlice(w, f32), rstd.Float32s(), d)
		default:
			RMSNormBackward(dx.Float64s(), optSlice(dw, f64), g.Float64s(), x.Float64s(), optSlice(w, f64), rstd.Float64s(), d)
		}
		handOff(x, dx)
		if dw != nil {
			handOff(w, dw)
		}
	}, inputs...)
	keepAlive(out, rstd)
	return out
}

// LayerNormOp is the fused, differentiable LayerNorm over the last axis; w and b
// may be nil.
func LayerNormOp(x, w, b *autodiff.Tensor, eps float64) *autodiff.Tensor {
	d := checkNorm("layer_norm", x, w, b)
	rows := x.Len() / max(d, 1)
	y := autodiff.Empty(x.DType(), x.Shape()...)
	mean := autodiff.Empty(x.DType(), rows)
	rstd := autodiff.Empty(x.DType(), rows)
	tm := startOp()
	dev := autodiff.DeviceFor(layerNormOp, []*autodiff.Tensor{y, x, w, b}, rows, d)
	switch {
	case tryDevice("layer_norm", dev, func(dv metal.Compute) error { return normDevice(dv, true, y, x, w, b, mean, rstd, rows, d, eps) }):
	case x.DType() == autodiff.Float32:
		dev = nil
		LayerNormForward(y.Float32s(), x.Float32s(), optSlice(w, f32), optSlice(b, f32), mean.Float32s(), rstd.Float32s(), d, eps)
	default:
		LayerNormForward(y.Float64s(), x.Float64s(), optSlice(w, f64), optSlice(b, f64), mean.Float64s(), rstd.Float64s(), d, eps)
	}
	tm.done("layer_norm", dev != nil, 2*x.Len()*x.DType().Size())
	inputs := []*autodiff.Tensor{x}
	for _, p := range []*autodiff.Tensor{w, b} {
		if p != nil {
			inputs = append(inputs, p)
		}
	}
	out := autodiff.Record(y, "layer_norm", func(g *autodiff.Tensor) {
		needW := w != nil && autodiff.NeedsGrad(w)
		needB := b != nil && autodiff.NeedsGrad(b)
		if !autodiff.NeedsGrad(x) && !needW && !needB {
			return
		}
		dx := autodiff.Empty(x.DType(), x.Shape()...)
		var dw, db *autodiff.Tensor
		if needW {
			dw = autodiff.Zeros(w.DType(), d)
		}
		if needB {
			db = autodiff.Zeros(b.DType(), d)
		}
		switch {
		case dev != nil && tryDevice("layer_norm", autodiff.DeviceFor(layerNormOp, []*autodiff.Tensor{g, x, w}, rows, d), func(dv metal.Compute) error {
			return normBackwardDevice(dv, true, dx, dw, db, g, x, w, mean, rstd, rows, d)
		}):
		case x.DType() == autodiff.Float32:
			LayerNormBackward(dx.Float32s(), optSlice(dw, f32), optSlice(db, f32), g.Float32s(), x.Float32s(), optSlice(w, f32), mean.Float32s(), rstd.Float32s(), d)
		default:
			LayerNormBackward(dx.Float64s(), optSlice(dw, f64), optSlice(db, f64), g.Float64s(), x.Float64s(), optSlice(w, f64), mean.Float64s(), rstd.Float64s(), d)
		}
		handOff(x, dx)
		if dw != nil {
			handOff(w, dw)
		}
		if db != nil {
			handOff(b, db)
		}
	}, inputs...)
	keepAlive(out, mean, rstd)
	return out
}

// handOff gives a computed gradient to t, or frees it when t needs none.
func handOff(t, grad *autodiff.Tensor) {
	if !autodiff.NeedsGrad(t) {
		grad.Release()
		return
	}
	autodiff.Accumulate(t, func() *autodiff.Tensor { return grad })
}

// keepAlive ties the lifetime of saved statistics to out: when out is recorded on
// a tape they are freed with it; otherwise they are freed now.
func keepAlive(out *autodiff.Tensor, saved ...*autodiff.Tensor) {
	if tp := out.Tape(); tp != nil {
		tp.Own(saved...)
		return
	}
	for _, s := range saved {
		s.Release()
	}
}
