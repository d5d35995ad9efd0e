package autodiff

import (
	"fmt"
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

// TestCheckpointStored: with an input exactly representable in the storage
// dtype, a stored checkpoint gives the plain one's gradients, and the input's
// own float32 storage is given back at once.
func TestCheckpointStored(t *testing.T) {
	metal.SetPoison(true)
	defer metal.SetPoison(false)
	rng := rand.New(rand.NewPCG(5, 6))
	xs := Cast(Cast(Cast(randTensor(rng, -1, 1, 5, 4), Float32), BFloat16), Float32) // on the bfloat16 (and float16) grid
	w1 := Cast(randTensor(rng, -1, 1, 4, 6), Float32)
	w2 := Cast(randTensor(rng, -1, 1, 6, 3), Float32)
	var want [][]float32
	for _, store := range []DType{Float32, BFloat16, Float16} {
		tp := NewTape()
		in := Add(tp.Watch(xs), Zeros(Float32, 5, 4)) // an op output whose backward does not read it
		var y *Tensor
		if store == Float32 {
			y = Checkpoint(checkpointBlock(w1, w2), in)
		} else {
			y = CheckpointStored(store, checkpointBlock(w1, w2), in)
			assert.True(t, in.Released(), "the float32 input is given back")
		}
		tp.Backward(SumAll(y))
		var got [][]float32
		for _, p := range []*Tensor{xs, w1, w2} {
			require.NotNil(t, tp.Grad(p))
			got = append(got, append([]float32(nil), tp.Grad(p).Float32s()...))
		}
		if want == nil {
			want = got
		} else {
			assert.Equal(t, want, got, store.String())
		}
		tp.Release()
	}
	assert.Panics(t, func() { CheckpointStored(Float32, checkpointBlock(w1, w2), xs) })
}

// A layer checkpointed with its input kept in bfloat16: the input was rounded to
// bfloat16 first, so the recompute sees exactly what the forward saw.
func ExampleCheckpointStored() {
	w := FromFloat32([]float32{0.5, -1, 2, 0.25}, 2, 2)
	tp := NewTape()
	defer tp.Release()
	x := Add(tp.Watch(FromFloat32([]float32{1, 2, 3, 4}, 2, 2)), Zeros(Float32, 2, 2))
	y := CheckpointStored(BFloat16, func(tp *Tape, in []*Tensor) *Tensor {
		ww := w
		if tp != nil {
			ww = tp.Watch(w)
		}
		return Tanh(MatMul(in[0], ww))
	}, x)
	tp.Backward(SumAll(y))
	fmt.Println(x.Released(), tp.Grad(w).Shape())
	// Output: true [2 2]
}
