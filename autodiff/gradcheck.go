package autodiff

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// GradCheck compares a tape's gradients with central finite differences in float64.
// The zero value uses the defaults in the field comments.
type GradCheck struct {
	Eps  float64 // finite-difference step (1e-6)
	RTol float64 // relative tolerance (1e-5)
	ATol float64 // absolute tolerance (1e-7)
	// Inputs with at most ElementwiseMax elements are checked element by element
	// (64); larger ones along Directions random unit directions (3):
	// (f(x+εv) − f(x−εv)) / 2ε against ⟨∇f, v⟩.
	ElementwiseMax int
	Directions     int
	Seed           uint64
	// Skip names inputs (by position) that get no gradient check (indices, masks).
	Skip []int
}

// Check runs f on inputs (float64 tensors, not tracked by any tape). f may return
// a tensor of any shape: the checked scalar is ⟨f(x), r⟩ for a fixed random r, so
// every output element contributes. It returns an error describing the first
// mismatch, naming the input and element.
func (c GradCheck) Check(f func(in []*Tensor) *Tensor, inputs ...*Tensor) error {
	eps, rtol, atol := c.Eps, c.RTol, c.ATol
	if eps == 0 {
		eps = 1e-6
	}
	if rtol == 0 {
		rtol = 1e-5
	}
	if atol == 0 {
		atol = 1e-7
	}
	emax, dirs := c.ElementwiseMax, c.Directions
	if emax == 0 {
		emax = 64
	}
	if dirs == 0 {
		dirs = 3
	}
	rng := rand.New(rand.NewPCG(c.Seed, 0x9e3779b97f4a7c15))
	for i, x := range inputs {
		if x.tape != nil {
			return fmt.Errorf("gradcheck: input %d is tracked by a tape", i)
		}
		if x.dtype != Float64 && !c.skipped(i) {
			return fmt.Errorf("gradcheck: input %d is %s; gradient checks run in float64", i, x.dtype)
		}
	}

	// analytic gradients
	tp := NewTape()
	defer tp.Release()
	watched := make([]*Tensor, len(inputs))
	for i, x := range inputs {
		if c.skipped(i) {
			watched[i] = x
		} else {
			watched[i] = tp.Watch(x)
		}
	}
	out := f(watched)
	if out.dtype != Float64 {
		return fmt.Errorf("gradcheck: f returned %s, want float64", out.dtype)
	}
	r := make([]float64, out.Len())
	for j := range r {
		r[j] = rng.NormFloat64()
	}
	if out.tape != tp {
		return fmt.Errorf("gradcheck: f's output is not recorded on the tape (does it depend on the inputs?)")
	}
	tp.BackwardWith(out, FromFloat64(r, out.shape...))
	grads := make([][]float64, len(inputs))
	for i, x := range inputs {
		if c.skipped(i) {
			continue
		}
		grads[i] = make([]float64, x.Len())
		if g := tp.Grad(x); g != nil {
			copy(grads[i], g.Float64s())
		}
	}

	loss := func() float64 {
		o := f(inputs)
		defer o.Release()
		s := 0.0
		for j, v := range o.Float64s() {
			s += v * r[j]
		}
		return s
	}
	close := func(a, n float64) bool {
		return math.Abs(a-n) <= atol+rtol*math.Max(math.Abs(a), math.Abs(n))
	}
	for i, x := range inputs {
		if c.skipped(i) {
			continue
		}
		xs := x.Float64s()
		if len(xs) <= emax {
			for j := range xs {
				orig := xs[j]
				xs[j] = orig + eps
				fp := loss()
				xs[j] = orig - eps
				fm := loss()
				xs[j] = orig
				num := (fp - fm) / (2 * eps)
				if !close(grads[i][j], num) {
					return fmt.Errorf("gradcheck: input %d %s element %d: tape %.10g, finite difference %.10g", i, shapeString(x.shape), j, grads[i][j], num)
				}
			}
			continue
		}
		orig := append([]float64(nil), xs...)
		v := make([]float64, len(xs))
		for d := range dirs {
			norm := 0.0
			for j := range v {
				v[j] = rng.NormFloat64()
				norm += v[j] * v[j]
			}
			norm = math.Sqrt(norm)
			dot := 0.0
			for j := range v {
				v[j] /= norm
				dot += grads[i][j] * v[j]
			}
			for j := range xs {
				xs[j] = orig[j] + eps*v[j]
			}
			fp := loss()
			for j := range xs {
				xs[j] = orig[j] - eps*v[j]
			}
			fm := loss()
			copy(xs, orig)
			num := (fp - fm) / (2 * eps)
			if !close(dot, num) {
				return fmt.Errorf("gradcheck: input %d %s direction %d: tape %.10g, finite difference %.10g", i, shapeString(x.shape), d, dot, num)
			}
		}
	}
	return nil
}

func (c GradCheck) skipped(i int) bool {
	for _, s := range c.Skip {
		if s == i {
			return true
		}
	}
	return false
}
