package optim

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/autodiff"
)

// linearGrads returns, through the tape, the gradients of the mean squared error
// of pred = w·x + b over the examples (xs, ys).
func linearGrads(ps []Param, xs, ys []float64) []*autodiff.Tensor {
	dtype := ps[0].Value.DType()
	x := autodiff.Empty(dtype, len(xs))
	y := autodiff.Empty(dtype, len(ys))
	setValues(x, xs)
	setValues(y, ys)
	defer x.Release()
	defer y.Release()
	tp := autodiff.NewTape()
	defer tp.Release()
	w, b := tp.Watch(ps[0].Value), tp.Watch(ps[1].Value)
	d := autodiff.Sub(autodiff.Add(autodiff.Mul(w, x), b), y)
	sq := autodiff.Mul(d, d)
	tp.BackwardWith(sq, autodiff.Full(dtype, 1/float64(len(xs)), len(xs)))
	out := Grads(tp, ps)
	for i, g := range out {
		out[i] = g.Clone() // the tape's gradients go with it
	}
	return out
}

func TestAccumulatorEqualsLargeBatch(t *testing.T) {
	for _, dtype := range []autodiff.DType{autodiff.Float64, autodiff.Float32} {
		t.Run(dtype.String(), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(8, 9))
			w := autodiff.Full(dtype, 0.3, 1)
			b := autodiff.Full(dtype, -0.2, 1)
			defer w.Release()
			defer b.Release()
			ps := []Param{{Name: "w", Value: w}, {Name: "b", Value: b}}
			const micro, size = 4, 8
			xs := make([]float64, micro*size)
			ys := make([]float64, micro*size)
			for i := range xs {
				xs[i] = rng.NormFloat64()
				ys[i] = 2*xs[i] + 1 + 0.1*rng.NormFloat64()
			}
			large := linearGrads(ps, xs, ys)
			defer release(large)

			acc := NewAccumulator(ps)
			defer acc.Release()
			for round := range 2 { // the second round reuses the buffers after Reset
				for k := range micro {
					g := linearGrads(ps, xs[k*size:(k+1)*size], ys[k*size:(k+1)*size])
					acc.Add(g)
					release(g)
				}
				require.Equal(t, micro, acc.Count())
				mean := acc.Mean()
				tol := 1e-14
				if dtype == autodiff.Float32 {
					tol = 1e-6
				}
				for i := range ps {
					assertClose(t, large[i].Float64Values(), mean[i].Float64Values(), tol, fmt.Sprint(ps[i].Name, " round ", round))
				}
				assert.Same(t, mean[0], acc.Mean()[0], "Mean twice gives the same tensors")
				assertClose(t, large[0].Float64Values(), acc.Mean()[0].Float64Values(), tol, "Mean twice divides once")
				acc.Reset()
				assert.Equal(t, 0, acc.Count())
			}
		})
	}
}

func TestAccumulatorNilAndMisuse(t *testing.T) {
	a := autodiff.Zeros(autodiff.Float64, 2)
	b := autodiff.Zeros(autodiff.Float64, 1)
	c := autodiff.Zeros(autodiff.Float64, 1)
	defer release([]*autodiff.Tensor{a, b, c})
	acc := NewAccumulator([]Param{{Name: "a", Value: a}, {Name: "b", Value: b}, {Name: "c", Value: c}})
	defer acc.Release()
	ga := autodiff.FromFloat64([]float64{1, 2}, 2)
	gb := autodiff.FromFloat64([]float64{6}, 1)
	defer release([]*autodiff.Tensor{ga, gb})
	acc.Add([]*autodiff.Tensor{ga, gb, nil})
	acc.Add([]*autodiff.Tensor{ga, nil, nil})
	acc.Add([]*autodiff.Tensor{ga, nil, nil})
	mean := acc.Mean()
	assert.Equal(t, []float64{1, 2}, mean[0].Float64Values())
	assert.Equal(t, []float64{2}, mean[1].Float64Values(), "a missing gradient counts as zero")
	assert.Nil(t, mean[2], "never a gradient: nil, which optimizers skip")
	// The accumulator copied the gradients: changing them now changes nothing.
	ga.Fill(100)
	assert.Equal(t, []float64{1, 2}, acc.Mean()[0].Float64Values())
	assert.Panics(t, func() { acc.Add([]*autodiff.Tensor{ga, nil, nil}) }, "Add after Mean")
	acc.Reset()
	acc.Add([]*autodiff.Tensor{nil, gb, nil})
	mean = acc.Mean()
	assert.Nil(t, mean[0], "Reset forgets earlier gradients")
	assert.Equal(t, []float64{6}, mean[1].Float64Values())
	acc.Reset()
	assert.Panics(t, func() { acc.Add([]*autodiff.Tensor{ga}) })
	assert.Panics(t, func() { acc.Add([]*autodiff.Tensor{gb, nil, nil}) })
	assert.Equal(t, 0, acc.Count())
}
