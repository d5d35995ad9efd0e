package advanced

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	ad "github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// linearRecurrenceRef is the recurrence written out along axis 1 of (outer, n,
// inner): the independent reference.
func linearRecurrenceRef(a, b, h0 []float64, outer, n, inner int) []float64 {
	h := make([]float64, len(a))
	for i := range outer {
		for j := range inner {
			prev := 0.0
			if h0 != nil {
				prev = h0[i*inner+j]
			}
			for t := range n {
				k := (i*n+t)*inner + j
				h[k] = a[k]*prev + b[k]
				prev = h[k]
			}
		}
	}
	return h
}

// linearCases are shapes, axes and h0 on or off, with the layout around the axis.
type linearShape struct {
	shape           []int
	axis            int
	outer, n, inner int
	withH0          bool
	h0Shape         []int
}

func linearShapes() []linearShape {
	var cs []linearShape
	for _, n := range []int{1, 7, 33, 127, 0} {
		for _, withH0 := range []bool{false, true} {
			cs = append(cs,
				linearShape{[]int{n}, 0, 1, n, 1, withH0, []int{}},
				linearShape{[]int{n, 3}, 0, 1, n, 3, withH0, []int{3}},
				linearShape{[]int{2, n, 3}, 1, 2, n, 3, withH0, []int{2, 3}},
				linearShape{[]int{3, n}, -1, 3, n, 1, withH0, []int{3}})
		}
	}
	return cs
}

func TestLinearRecurrenceMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(81, 82))
	for _, c := range linearShapes() {
		name := fmt.Sprintf("%v axis %d h0=%v", c.shape, c.axis, c.withH0)
		m := c.outer * c.n * c.inner
		av, bv := normals(rng, m), normals(rng, m)
		var h0v []float64
		var h0 *ad.Tensor
		if c.withH0 {
			h0v = normals(rng, c.outer*c.inner)
			h0 = ad.FromFloat64(h0v, c.h0Shape...)
		}
		a, b := ad.FromFloat64(av, c.shape...), ad.FromFloat64(bv, c.shape...)
		h := LinearRecurrence(a, b, h0, c.axis)
		require.Equal(t, c.shape, h.Shape(), name)
		assertClose(t, linearRecurrenceRef(av, bv, h0v, c.outer, c.n, c.inner), h.Float64s(), 1e-12, name)
	}
	assert.Panics(t, func() { LinearRecurrence(ad.Zeros(ad.Float64, 2, 3), ad.Zeros(ad.Float64, 3, 2), nil, 0) }, "shapes differ")
	assert.Panics(t, func() {
		LinearRecurrence(ad.Zeros(ad.Float64, 2, 3), ad.Zeros(ad.Float64, 2, 3), ad.Zeros(ad.Float64, 2), 0)
	}, "h0 of the wrong shape")
	assert.Panics(t, func() { LinearRecurrence(ad.Zeros(ad.Float64, 2, 3), ad.Zeros(ad.Float64, 2, 3), nil, 2) }, "axis out of range")
}

func TestLinearRecurrenceGradCheck(t *testing.T) {
	rng := rand.New(rand.NewPCG(83, 84))
	for _, c := range []struct{ shape, h0 []int }{{[]int{7}, []int{}}, {[]int{2, 5, 3}, []int{2, 3}}} {
		m := 1
		for _, d := range c.shape {
			m *= d
		}
		a, b := ad.FromFloat64(normals(rng, m), c.shape...), ad.FromFloat64(normals(rng, m), c.shape...)
		k := 1
		for _, d := range c.h0 {
			k *= d
		}
		h0 := ad.FromFloat64(normals(rng, k), c.h0...)
		axis := 0
		if len(c.shape) == 3 {
			axis = 1
		}
		err := ad.GradCheck{Seed: 3}.Check(func(in []*ad.Tensor) *ad.Tensor { return LinearRecurrence(in[0], in[1], in[2], axis) }, a, b, h0)
		assert.NoError(t, err, "%v", c.shape)
		err = ad.GradCheck{Seed: 4}.Check(func(in []*ad.Tensor) *ad.Tensor { return LinearRecurrence(in[0], in[1], nil, axis) }, a, b)
		assert.NoError(t, err, "%v without h0", c.shape)
	}
}

// TestLinearRecurrenceDevice checks the float32 op, forward and gradients,
// against the float64 op (always the CPU's), on lengths past one threadgroup's
// block too; with an accelerator and the thresholds at 0
// (TestAdvancedOnSimulator) it runs the scan kernels.
func TestLinearRecurrenceDevice(t *testing.T) {
	onDevice := metal.Offloading() && linearOp.OnMetal(1)
	cs := append(linearShapes(), linearShape{[]int{2, 4097, 3}, 1, 2, 4097, 3, true, []int{2, 3}})
	for _, c := range cs {
		name := fmt.Sprintf("%v axis %d h0=%v", c.shape, c.axis, c.withH0)
		rng := rand.New(rand.NewPCG(uint64(c.n), uint64(len(c.shape))))
		m := c.outer * c.n * c.inner
		av, bv, gv, h0v := normals(rng, m), normals(rng, m), normals(rng, m), normals(rng, c.outer*c.inner)
		for i := range av {
			av[i] = math.Tanh(av[i]) // a stable recurrence over thousands of steps
		}
		run := func(dt ad.DType) (h, da, db, dh0 []float64) {
			mk := func(v []float64, shape ...int) *ad.Tensor { return tensorIn(dt, v, shape...) }
			tp := ad.NewTape()
			defer tp.Release()
			a, b, g := tp.Watch(mk(av, c.shape...)), tp.Watch(mk(bv, c.shape...)), mk(gv, c.shape...)
			var h0 *ad.Tensor
			if c.withH0 {
				h0 = tp.Watch(mk(h0v, c.h0Shape...))
			}
			out := tp.Keep(LinearRecurrence(a, b, h0, c.axis))
			defer out.Release()
			h = out.Float64Values()
			tp.BackwardWith(out, g)
			da, db = tp.Grad(a).Float64Values(), tp.Grad(b).Float64Values()
			if c.withH0 {
				dh0 = tp.Grad(h0).Float64Values()
			}
			return
		}
		before := metal.Launches()
		h, da, db, dh0 := run(ad.Float32)
		if onDevice && m > 0 {
			assert.GreaterOrEqual(t, metal.Launches()-before, int64(3), name+": forward, the backward scan and the gradients launched")
		}
		wh, wda, wdb, wdh0 := run(ad.Float64)
		tol := 1e-5 * math.Sqrt(float64(max(c.n, 1)))
		assertClose(t, wh, h, tol, name+" h")
		assertClose(t, wdb, db, tol, name+" db")
		assertClose(t, wda, da, tol, name+" da")
		if c.withH0 {
			assertClose(t, wdh0, dh0, tol, name+" dh0")
		}
	}
}

// tensorIn returns the values v as a tensor of dtype dt.
func tensorIn(dt ad.DType, v []float64, shape ...int) *ad.Tensor {
	t64 := ad.FromFloat64(v, shape...)
	if dt == ad.Float64 {
		return t64
	}
	defer t64.Release()
	return ad.Cast(t64, dt)
}
