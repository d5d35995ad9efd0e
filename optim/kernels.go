package optim

import (
	"fmt"
	"math"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/internal/vecmath"
	"github.com/mlxtrain/mlxtrain/metal"
)

// grain is the fewest elements an update kernel hands one worker: below it the
// goroutine hand-off costs more than the arithmetic.
const grain = 1 << 15

// AdamWKernel applies one AdamW step to p in place, updating the moments m and v,
// in a single pass over the four slices (split across metal.ParallelFor workers).
// Element-wise, in T, with g the gradient and t the step being taken:
//
//	p ← p·(1 − lr·wd)                       decoupled decay, first (as PyTorch does)
//	m ← β1·m + (1−β1)·g
//	v ← β2·v + (1−β2)·g²
//	p ← p − (lr/bc1) · m / (√v/√bc2 + eps)
//
// bc1 = 1−β1ᵗ and bc2 = 1−β2ᵗ are the bias corrections (pass 1, 1 for none); wd = 0
// gives Adam without weight decay. Each element depends only on its own inputs,
// so the result is the same at any thread count. g, m and v must be at least as
// long as p.
func AdamWKernel[T autodiff.Float](p, g, m, v []T, lr, beta1, beta2, eps, wd, bc1, bc2 T) {
	checkLens("AdamWKernel", len(p), len(g), len(m), len(v))
	stepSize := lr / bc1
	rbc2 := 1 / T(math.Sqrt(float64(bc2)))
	decay := 1 - lr*wd
	if p32, ok := any(p).([]float32); ok && adamwCPU.Pick(len(p)).Path == metal.PathAsm {
		g32, m32, v32 := any(g).([]float32), any(m).([]float32), any(v).([]float32)
		c := adamwConsts{float32(stepSize), float32(beta1), float32(1 - beta1), float32(beta2), float32(1 - beta2), float32(eps), float32(rbc2), float32(decay)}
		// Workers get whole blocks of 8 and the last len%8 elements go to the Go
		// loop once, so which elements take which path does not depend on the split.
		blocks := len(p) / 8
		metal.ParallelFor(blocks, grain/8, func(lo, hi int) {
			lo, hi = 8*lo, 8*hi
			adamwRangeAVX(p32[lo:hi], g32[lo:hi], m32[lo:hi], v32[lo:hi], c)
		})
		n := 8 * blocks
		adamwRange(p32[n:], g32[n:len(p)], m32[n:len(p)], v32[n:len(p)], c.stepSize, c.b1, c.c1, c.b2, c.c2, c.eps, c.rbc2, c.decay)
		return
	}
	adamwGo(p, g, m, v, stepSize, beta1, beta2, eps, rbc2, decay)
}

// adamwGo is AdamWKernel's Go path.
func adamwGo[T autodiff.Float](p, g, m, v []T, stepSize, beta1, beta2, eps, rbc2, decay T) {
	metal.ParallelFor(len(p), grain, func(lo, hi int) {
		adamwRange(p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], stepSize, beta1, 1-beta1, beta2, 1-beta2, eps, rbc2, decay)
	})
}

// adamwOp lists AdamWKernel's float32 paths for `mlxtrain devices` and profiles:
// AVX assembly where the CPU has it, else the Go loop (float64 always takes it).
// The device implementation (first) works on tensors: see adamwOnDevice.
var adamwOp = metal.Kernels.Register("adamw", []string{"n"},
	metal.DeviceImpl("adamw", adamwSelfTest),
	&metal.Impl{Path: metal.PathAsm, Available: func() bool { return vecmath.AVX }, Fn: adamwRangeAVX},
	&metal.Impl{Path: metal.PathGo, Fn: adamwRange[float32]},
)

// adamwCPU is adamwOp without its device implementation, for AdamWKernel.
var adamwCPU = &metal.Op{Name: adamwOp.Name, Dims: adamwOp.Dims, Impls: adamwOp.Impls[1:]}

// adamwRange is the AdamW update in plain Go. The conversions T(…) round each
// product, so the compiler cannot fuse it into a multiply-add that the assembly
// would not match.
func adamwRange[T autodiff.Float](p, g, m, v []T, stepSize, b1, c1, b2, c2, eps, rbc2, decay T) {
	g, m, v = g[:len(p)], m[:len(p)], v[:len(p)]
	for i := range p {
		gi := g[i]
		mi := T(b1*m[i]) + T(c1*gi)
		vi := T(b2*v[i]) + T(T(c2*gi)*gi)
		m[i] = mi
		v[i] = vi
		den := T(T(math.Sqrt(float64(vi)))*rbc2) + eps
		p[i] = T(p[i]*decay) - T(stepSize*mi)/den
	}
}

// adamKernel is Adam with coupled (L2) weight decay: the gradient becomes g + wd·p
// before the moments see it; the rest is AdamWKernel's update without its decay.
func adamKernel[T autodiff.Float](p, g, m, v []T, lr, beta1, beta2, eps, wd, bc1, bc2 T) {
	checkLens("adamKernel", len(p), len(g), len(m), len(v))
	stepSize := lr / bc1
	rbc2 := 1 / T(math.Sqrt(float64(bc2)))
	c1, c2 := 1-beta1, 1-beta2
	metal.ParallelFor(len(p), grain, func(lo, hi int) {
		p, g, m, v := p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi]
		for i := range p {
			gi := g[i] + wd*p[i]
			mi := beta1*m[i] + c1*gi
			vi := beta2*v[i] + c2*gi*gi
			m[i] = mi
			v[i] = vi
			p[i] -= stepSize * mi / (T(math.Sqrt(float64(vi)))*rbc2 + eps)
		}
	})
}

// lionKernel is one Lion step (Chen et al. 2023, Algorithm 2):
//
//	c ← β1·m + (1−β1)·g
//	p ← p·(1 − lr·wd) − lr·sign(c)
//	m ← β2·m + (1−β2)·g
func lionKernel[T autodiff.Float](p, g, m []T, lr, beta1, beta2, wd T) {
	checkLens("lionKernel", len(p), len(g), len(m))
	decay := 1 - lr*wd
	c1, c2 := 1-beta1, 1-beta2
	metal.ParallelFor(len(p), grain, func(lo, hi int) {
		p, g, m := p[lo:hi], g[lo:hi], m[lo:hi]
		for i := range p {
			gi, mi := g[i], m[i]
			c := beta1*mi + c1*gi
			switch {
			case c > 0:
				c = 1
			case c < 0:
				c = -1
			}
			// c is now ±1, or a zero or NaN that sign keeps as it is.
			p[i] = p[i]*decay - lr*c
			m[i] = beta2*mi + c2*gi
		}
	})
}

// sgdKernel is one step of SGD with optional momentum, PyTorch's formulation:
//
//	g ← g + wd·p                        (when wd ≠ 0)
//	b ← g on the first step, else μ·b + (1−dampening)·g
//	g ← g + μ·b (Nesterov) or b
//	p ← p − lr·g
//
// buf is nil when momentum is 0.
func sgdKernel[T autodiff.Float](p, g, buf []T, lr, momentum, dampening, wd T, nesterov, first bool) {
	if buf == nil {
		checkLens("sgdKernel", len(p), len(g))
	} else {
		checkLens("sgdKernel", len(p), len(g), len(buf))
	}
	damp := 1 - dampening
	metal.ParallelFor(len(p), grain, func(lo, hi int) {
		p, g := p[lo:hi], g[lo:hi]
		var b []T
		if buf != nil {
			b = buf[lo:hi]
		}
		for i := range p {
			gi := g[i]
			if wd != 0 {
				gi += wd * p[i]
			}
			if b != nil {
				bi := gi
				if !first {
					bi = momentum*b[i] + damp*gi
				}
				b[i] = bi
				if nesterov {
					gi += momentum * bi
				} else {
					gi = bi
				}
			}
			p[i] -= lr * gi
		}
	})
}

func checkLens(op string, n int, others ...int) {
	for _, o := range others {
		if o < n {
			panic(fmt.Sprintf("optim: %s: slice of length %d for %d parameters", op, o, n))
		}
	}
}

// view returns t's elements as []T; T must be float32 for a float32 tensor and
// float64 for a float64 one.
func view[T autodiff.Float](t *autodiff.Tensor) []T {
	var z T
	if _, ok := any(z).(float32); ok {
		return any(t.Float32s()).([]T)
	}
	return any(t.Float64s()).([]T)
}
