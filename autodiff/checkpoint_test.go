package autodiff

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/metal"
)

// block is tanh(x·W)·W2 with parameters taken through the tape it is given.
func checkpointBlock(w1, w2 *Tensor) func(tp *Tape, in []*Tensor) *Tensor {
	return func(tp *Tape, in []*Tensor) *Tensor {
		a, b := w1, w2
		if tp != nil {
			a, b = tp.Watch(w1), tp.Watch(w2)
		}
		return MatMul(Tanh(MatMul(in[0], a)), b)
	}
}

func TestCheckpointGivesTheSameGradients(t *testing.T) {
	metal.SetPoison(true)
	defer metal.SetPoison(false)
	rng := rand.New(rand.NewPCG(1, 2))
	x := randTensor(rng, -1, 1, 5, 4)
	w1 := randTensor(rng, -1, 1, 4, 6)
	w2 := randTensor(rng, -1, 1, 6, 3)
	run := func(ckpt bool) (out []float64, grads [][]float64) {
		tp := NewTape()
		defer tp.Release()
		xw := tp.Watch(x)
		var y *Tensor
		if ckpt {
			y = Checkpoint(checkpointBlock(w1, w2), Exp(xw))
			y = Checkpoint(checkpointBlock(w2T(w2), w2T(w1)), y) // a second block reusing the tape
		} else {
			f := checkpointBlock(w1, w2)
			y = f(tp, []*Tensor{Exp(xw)})
			y = checkpointBlock(w2T(w2), w2T(w1))(tp, []*Tensor{y})
		}
		seed := Full(Float64, 1, y.Shape()...)
		copy(seed.Float64s(), []float64{1, -2, 0.5, 3})
		tp.BackwardWith(y, seed)
		out = append(out, y.Float64s()...)
		for _, p := range []*Tensor{x, w1, w2} {
			g := tp.Grad(p)
			require.NotNil(t, g)
			grads = append(grads, append([]float64(nil), g.Float64s()...))
		}
		return out, grads
	}
	o1, g1 := run(false)
	o2, g2 := run(true)
	assert.InDeltaSlice(t, o1, o2, 1e-13)
	for i := range g1 {
		assert.InDeltaSlice(t, g1[i], g2[i], 1e-12, "grad %d", i)
	}
}

// w2T returns a fixed transpose copy so the second block has compatible shapes;
// it is a constant to the tape (no gradient flows through it).
var transposed = map[*Tensor]*Tensor{}

func w2T(w *Tensor) *Tensor {
	if t, ok := transposed[w]; ok {
		return t
	}
	t := Transpose(w)
	transposed[w] = t
	return t
}

func TestCheckpointKeepsNoIntermediates(t *testing.T) {
	x := FromFloat64([]float64{1, 2, 3, 4}, 2, 2)
	w := FromFloat64([]float64{1, 0, 0, 1}, 2, 2)
	tp := NewTape()
	defer tp.Release()
	before := tp.Len()
	xw := tp.Watch(x)
	y := Checkpoint(func(tp *Tape, in []*Tensor) *Tensor {
		ww := w
		if tp != nil {
			ww = tp.Watch(w)
		}
		h := in[0]
		for range 10 {
			h = Tanh(MatMul(h, ww))
		}
		return h
	}, xw)
	assert.Equal(t, before+2, tp.Len(), "one leaf and one node for the whole block")
	tp.BackwardWith(y, Full(Float64, 1, 2, 2))
	assert.NotNil(t, tp.Grad(w), "the parameter watched inside the block gets a gradient")
	assert.NotNil(t, tp.Grad(x))
}

func TestCheckpointGradCheck(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	x := randTensor(rng, -1, 1, 3, 4)
	w1 := randTensor(rng, -1, 1, 4, 5)
	w2 := randTensor(rng, -1, 1, 5, 2)
	err := GradCheck{}.Check(func(in []*Tensor) *Tensor {
		return Checkpoint(func(tp *Tape, c []*Tensor) *Tensor {
			return MatMul(Tanh(MatMul(c[0], c[1])), c[2])
		}, in...)
	}, x, w1, w2)
	assert.NoError(t, err)
}
