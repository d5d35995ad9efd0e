package models

import (
	"fmt"
	"math"
	"sync"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/internal/vecmath"
	"github.com/mlxtrain/mlxtrain/layers"
	"github.com/mlxtrain/mlxtrain/metal"
)

// LayerNorm is a [layers.LayerNorm] (the same parameters and names) whose float32
// forward and backward with gain and bias run row kernels in float32 with AVX2
// (8 lanes, two passes over each row while it is in L1); other cases use the
// layers kernels.
type LayerNorm struct{ *layers.LayerNorm }

// Forward normalises the last axis of x.
func (n LayerNorm) Forward(c *layers.Ctx, x *autodiff.Tensor) *autodiff.Tensor {
	if x.DType() != autodiff.Float32 || n.Bias == nil || x.Rank() == 0 || x.Dim(-1)%8 != 0 || !vecmath.AVX2FMA || layerNorm32Op.OnMetal(rowsOf(x)) {
		return n.LayerNorm.Forward(c, x)
	}
	return layerNorm32(x, c.Param(n.Weight), c.Param(n.Bias), float32(n.Eps))
}

// layerNorm32 is layers.LayerNormOp for float32 x (..., d) with gain w and bias b
// (d), d a multiple of 8, on a CPU with AVX2 and FMA.
func layerNorm32(x, w, b *autodiff.Tensor, eps float32) *autodiff.Tensor {
	d := x.Dim(-1)
	if w.Rank() != 1 || w.Dim(0) != d || b.Rank() != 1 || b.Dim(0) != d || w.DType() != x.DType() || b.DType() != x.DType() {
		panic(fmt.Sprintf("models: layer_norm: input %v, weight %v, bias %v", x.Shape(), w.Shape(), b.Shape()))
	}
	rows := x.Len() / d
	y := autodiff.Empty(autodiff.Float32, x.Shape()...)
	stats := autodiff.Empty(autodiff.Float32, 2*rows) // mean, rstd per row
	xs, ys, ws, bs, st := x.Float32s(), y.Float32s(), w.Float32s(), b.Float32s(), stats.Float32s()
	metal.ParallelFor(rows, rowsGrain(4*d), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			st[2*r], st[2*r+1] = lnForwardAVX2(&ys[r*d], &xs[r*d], &ws[0], &bs[0], d, eps)
		}
	})
	out := autodiff.Record(y, "layer_norm", func(g *autodiff.Tensor) {
		needW, needB := autodiff.NeedsGrad(w), autodiff.NeedsGrad(b)
		if !autodiff.NeedsGrad(x) && !needW && !needB {
			return
		}
		dw, db := autodiff.Zeros(autodiff.Float32, d), autodiff.Zeros(autodiff.Float32, d)
		gs, dws, dbs := g.Float32s(), dw.Float32s(), db.Float32s()
		// dx goes straight into x's gradient: written when it is the first,
		// else added to it by the kernel (each row as computed, then the sum,
		// as a separate addition would round it).
		run := func(dxs []float32, add bool) {
			var mu sync.Mutex
			metal.ParallelFor(rows, rowsGrain(4*d), func(lo, hi int) {
				pw, pb := make([]float32, d), make([]float32, d)
				var tmp []float32
				if dxs == nil {
					tmp = make([]float32, d)
				}
				for r := lo; r < hi; r++ {
					dst := tmp
					if tmp == nil {
						dst = dxs[r*d : (r+1)*d]
					}
					lnBackwardAVX2(&dst[0], &pw[0], &pb[0], &gs[r*d], &xs[r*d], &ws[0], d, st[2*r], st[2*r+1], add && tmp == nil)
				}
				mu.Lock()
				for i := range pw {
					dws[i] += pw[i]
					dbs[i] += pb[i]
				}
				mu.Unlock()
			})
		}
		if autodiff.NeedsGrad(x) {
			autodiff.AccumulateInPlace(x, func(dx *autodiff.Tensor, fresh bool) { run(dx.Float32s(), !fresh) })
		} else {
			run(nil, false)
		}
		for _, p := range [][2]*autodiff.Tensor{{w, dw}, {b, db}} {
			if autodiff.NeedsGrad(p[0]) {
				autodiff.Accumulate(p[0], func() *autodiff.Tensor { return p[1] })
			} else {
				p[1].Release()
			}
		}
	}, x, w, b)
	own(out, stats)
	return out
}

// lnForwardGo is lnForwardAVX2 in Go: y = (x − mean)·rstd·w + b over one row,
// returning mean and rstd = 1/√(var + eps).
func lnForwardGo(y, x, w, b []float32, eps float32) (mean, rstd float32) {
	var s float32
	for _, v := range x {
		s += v
	}
	mean = s / float32(len(x))
	var ss float32
	for _, v := range x {
		ss += (v - mean) * (v - mean)
	}
	rstd = 1 / float32(math.Sqrt(float64(ss/float32(len(x))+eps)))
	for i, v := range x {
		y[i] = (v-mean)*rstd*w[i] + b[i]
	}
	return mean, rstd
}

// lnBackwardGo is lnBackwardAVX2 in Go: dx of one row (added to dx's values
// when add, rounded first), and g·x̂ and g added to dw and db.
func lnBackwardGo(dx, dw, db, g, x, w []float32, mean, rstd float32, add bool) {
	var s1, s2 float32
	for i, v := range x {
		xh := (v - mean) * rstd
		gh := g[i] * w[i]
		s1 += gh
		s2 += gh * xh
		dw[i] += g[i] * xh
		db[i] += g[i]
	}
	n := float32(len(x))
	c1, c2 := s1/n, s2/n
	for i, v := range x {
		xh := (v - mean) * rstd
		d := float32(rstd * (g[i]*w[i] - c1 - xh*c2))
		if add {
			d += dx[i]
		}
		dx[i] = d
	}
}
