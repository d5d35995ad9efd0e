package autodiff

import (
	"errors"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/metal"
)

func TestBackwardAccumulatesIntoLeaves(t *testing.T) {
	x := FromFloat64([]float64{1, 2, 3}, 3)
	tp := NewTape()
	defer tp.Release()
	xw := tp.Watch(x)
	assert.Same(t, xw, tp.Watch(x), "watching twice returns the same alias")
	// y = x*x + x  → dy/dx = 2x + 1 ; seeded with ones
	y := Add(Mul(xw, xw), xw)
	tp.BackwardWith(y, Full(Float64, 1, 3))
	assert.Equal(t, []float64{3, 5, 7}, tp.Grad(x).Float64s())
	assert.Same(t, tp.Grad(x), tp.Grad(xw))
	tp.BackwardWith(y, Full(Float64, 1, 3))
	assert.Equal(t, []float64{6, 10, 14}, tp.Grad(x).Float64s(), "a second Backward adds")
}

func TestUntrackedOpsRecordNothing(t *testing.T) {
	tp := NewTape()
	defer tp.Release()
	c := FromFloat64([]float64{1}, 1)
	y := Exp(c)
	assert.Nil(t, y.Tape())
	assert.Equal(t, 0, tp.Len())
	w := tp.Watch(FromFloat64([]float64{2}, 1))
	z := Mul(w, c)
	assert.Same(t, tp, z.Tape())
	assert.Equal(t, 2, tp.Len(), "a leaf and one op")
	tp.Backward(z)
	assert.Nil(t, tp.Grad(c), "constants get no gradient")
}

func TestReleaseFreesIntermediatesAndKeepSurvives(t *testing.T) {
	metal.SetPoison(true)
	defer metal.SetPoison(false)
	p := FromFloat32([]float32{1, 2, 3, 4}, 4)
	tp := NewTape()
	pw := tp.Watch(p)
	h := Tanh(pw)
	kept := tp.Keep(Sigmoid(h))
	loss := Mul(kept, kept)
	tp.BackwardWith(loss, Full(Float32, 1, 4))
	g := tp.Grad(p)
	require.NotNil(t, g)
	tp.Release()
	assert.True(t, h.Released(), "intermediates go back to the pool")
	assert.True(t, g.Released(), "gradients belong to the tape")
	assert.Panics(t, func() { h.Float32s() }, "use after release must panic")
	assert.False(t, kept.Released())
	assert.Nil(t, kept.Tape(), "a kept tensor leaves the tape")
	assert.InDelta(t, 1/(1+math.Exp(-math.Tanh(1))), float64(kept.Float32s()[0]), 1e-6)
	assert.Equal(t, []float32{1, 2, 3, 4}, p.Float32s(), "the watched tensor's storage survives Release")
	assert.Equal(t, 0, tp.Len())

	// the tape is reusable
	w := tp.Watch(p)
	tp.Backward(Mul(Sub(w, w), w).sumForTest())
	tp.Release()
}

// sumForTest is a scalar reduction built from ops this file can rely on.
func (t *Tensor) sumForTest() *Tensor {
	ones := Full(t.dtype, 1, 1, t.Len())
	defer ones.Release()
	out := Scalar(t.dtype, 0)
	for i := range t.Len() {
		out.Float32s()[0] += t.Float32s()[i]
	}
	x := t
	return record(out, "sum_test", func(g *Tensor) {
		accumulate(x, func() *Tensor { return Full(x.dtype, g.Item(), x.shape...) })
	}, x)
}

func TestPoolReuseAfterBackwardKeepsResultsRight(t *testing.T) {
	// Many steps through one tape: buffers recycled by Release must never alias a
	// live tensor (poison makes any such read NaN).
	metal.SetPoison(true)
	defer metal.SetPoison(false)
	p := FromFloat64([]float64{0.5, -0.25, 2}, 3)
	tp := NewTape()
	for step := range 20 {
		w := tp.Watch(p)
		y := Mul(Exp(w), w) // d/dx x·eˣ = eˣ(1+x)
		tp.BackwardWith(y, Full(Float64, 1, 3))
		for i, x := range p.Float64s() {
			require.InDelta(t, math.Exp(x)*(1+x), tp.Grad(p).Float64s()[i], 1e-12, "step %d", step)
		}
		tp.Release()
	}
}

func TestConcurrentTapesShareParameters(t *testing.T) {
	// Training and generation at once: one goroutine records on its tape while
	// others use the same parameter with no tape. Run with -race.
	p := FromFloat64([]float64{1, 2, 3, 4}, 4)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if g%2 == 0 {
					tp := NewTape()
					w := tp.Watch(p)
					tp.BackwardWith(Mul(w, w), Full(Float64, 1, 4))
					assert.Equal(t, []float64{2, 4, 6, 8}, tp.Grad(p).Float64s())
					tp.Release()
				} else {
					y := Mul(p, p)
					assert.Nil(t, y.Tape())
					assert.Equal(t, []float64{1, 4, 9, 16}, y.Float64s())
					y.Release()
				}
			}
		}()
	}
	wg.Wait()
}

func TestMixingTapesPanics(t *testing.T) {
	a, b := NewTape(), NewTape()
	x := a.Watch(FromFloat64([]float64{1}, 1))
	y := b.Watch(FromFloat64([]float64{1}, 1))
	assert.PanicsWithValue(t, "autodiff: add: inputs tracked by different tapes", func() { Add(x, y) })
	assert.Panics(t, func() { b.Watch(x) })
}

func TestShapeErrorsPanicWithBothShapes(t *testing.T) {
	a, b := Zeros(Float32, 2, 3), Zeros(Float32, 4)
	defer func() {
		r := recover()
		require.NotNil(t, r)
		msg := r.(string)
		assert.True(t, strings.Contains(msg, "(2,3)") && strings.Contains(msg, "(4)") && strings.Contains(msg, "add"), msg)
	}()
	Add(a, b)
}

func TestCheckNaNNamesTheOp(t *testing.T) {
	metal.SetCheckNaN(true)
	defer metal.SetCheckNaN(false)
	x := FromFloat32([]float32{1, -1}, 2)
	var got any
	func() {
		defer func() { got = recover() }()
		Sqrt(x)
	}()
	var ne *NaNError
	require.True(t, errors.As(got.(error), &ne), "got %v", got)
	assert.Equal(t, "sqrt", ne.Op)
	assert.Equal(t, 1, ne.Index)
	assert.Equal(t, [][]int{{2}}, ne.InputShapes)
}

func TestProfileRecordsOps(t *testing.T) {
	metal.ResetProfile()
	metal.SetProfiling(true)
	defer metal.SetProfiling(false)
	x := Zeros(Float32, 10)
	Exp(Add(x, x))
	var names []string
	for _, e := range metal.ProfileSnapshot() {
		names = append(names, e.Op+"/"+e.Path.String())
	}
	assert.ElementsMatch(t, []string{"add/go", "exp/go"}, names)
	metal.ResetProfile()
}

func TestCasts(t *testing.T) {
	x := FromFloat32([]float32{1, -2.5, 65504, 1e-8, float32(math.Inf(1))}, 5)
	h := Cast(x, Float16)
	back := Cast(h, Float32).Float32s()
	assert.Equal(t, []float32{1, -2.5, 65504, 0, float32(math.Inf(1))}, back, "1e-8 is below half the smallest subnormal")
	bf := Cast(x, BFloat16)
	assert.Equal(t, float32(1), Cast(bf, Float32).Float32s()[0])
	i := Cast(FromFloat64([]float64{3.9, -2}, 2), Int32)
	assert.Equal(t, []int32{3, -2}, i.Int32s())
	d := Cast(i, Float64)
	assert.Equal(t, []float64{3, -2}, d.Float64s())
	// the float32 round trip adds noise of ~1e-7: a larger step keeps it small
	err := GradCheck{Eps: 1e-2, RTol: 1e-4}.Check(func(in []*Tensor) *Tensor { return Cast(Cast(in[0], Float32), Float64) }, FromFloat64([]float64{0.5, 0.25}, 2))
	assert.NoError(t, err)
}
