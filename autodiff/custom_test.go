package autodiff

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// scaleRows is a custom op as another package would write it: out[i,j] = x[i,j]·w[i],
// recorded through the exported hooks.
func scaleRows(x, w *Tensor) *Tensor {
	rows, cols := x.Dim(0), x.Dim(1)
	out := Empty(Float64, rows, cols)
	xs, ws, os := x.Float64s(), w.Float64s(), out.Float64s()
	for i := range rows {
		for j := range cols {
			os[i*cols+j] = xs[i*cols+j] * ws[i]
		}
	}
	return Record(out, "scale_rows", func(g *Tensor) {
		gs := g.Float64s()
		Accumulate(x, func() *Tensor {
			dx := Empty(Float64, rows, cols)
			for i := range rows {
				for j := range cols {
					dx.Float64s()[i*cols+j] = gs[i*cols+j] * ws[i]
				}
			}
			return dx
		})
		if NeedsGrad(w) {
			Accumulate(w, func() *Tensor {
				dw := Zeros(Float64, rows)
				for i := range rows {
					for j := range cols {
						dw.Float64s()[i] += gs[i*cols+j] * xs[i*cols+j]
					}
				}
				return dw
			})
		}
	}, x, w)
}

func TestCustomOpHooks(t *testing.T) {
	x := FromFloat64([]float64{1, 2, 3, 4, 5, 6}, 2, 3)
	w := FromFloat64([]float64{0.5, -2}, 2)
	defer x.Release()
	defer w.Release()

	// Untracked inputs: nothing is recorded, the value is right.
	out := scaleRows(x, w)
	assert.Nil(t, out.Tape())
	assert.Equal(t, []float64{0.5, 1, 1.5, -8, -10, -12}, out.Float64s())
	out.Release()

	// Tracked: gradients arrive through Accumulate; NeedsGrad is false outside backward.
	tp := NewTape()
	defer tp.Release()
	xw := tp.Watch(x)
	assert.False(t, NeedsGrad(xw))
	y := scaleRows(xw, w)
	require.Equal(t, tp, y.Tape())
	assert.Equal(t, 2, tp.Len())
	tp.BackwardWith(y, FromFloat64([]float64{1, 1, 1, 1, 1, 1}, 2, 3))
	require.NotNil(t, tp.Grad(x))
	assert.Equal(t, []float64{0.5, 0.5, 0.5, -2, -2, -2}, tp.Grad(x).Float64s())
	assert.Nil(t, tp.Grad(w), "w is not tracked")

	require.NoError(t, GradCheck{}.Check(func(in []*Tensor) *Tensor { return scaleRows(in[0], in[1]) }, x, w))
}
