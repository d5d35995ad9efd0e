package autodiff

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDropoutForwardBackward(t *testing.T) {
	const n = 100003
	const p = 0.3
	rng := rand.New(rand.NewPCG(30, 30))
	x := Cast(randTensor(rng, 0.5, 2, n), Float32)
	var one, two *Tensor
	shpTWithThreads(1, func() { one = Dropout(x, p, &RNG{Seed: 5, Offset: 11}, true) })
	shpTWithThreads(2, func() { two = Dropout(x, p, &RNG{Seed: 5, Offset: 11}, true) })
	require.Equal(t, one.Float32s(), two.Float32s(), "same mask at 1 and 2 workers")

	// the mask is the bit stream: element i kept when its word ≥ p·2³²
	words := make([]uint32, n)
	(&RNG{Seed: 5, Offset: 11}).Uint32s(words)
	dropped := 0
	for i, v := range one.Float32s() {
		if float64(words[i]) < p*(1<<32) {
			require.Equal(t, float32(0), v, "element %d", i)
			dropped++
		} else {
			require.Equal(t, x.Float32s()[i]*float32(1/(1-p)), v, "element %d", i)
		}
	}
	assert.InDelta(t, p, float64(dropped)/n, 5*math.Sqrt(p*(1-p)/n))
	m, _ := rngTMoments(Cast(one, Float64).Float64s())
	mx, _ := rngTMoments(Cast(x, Float64).Float64s())
	assert.InDelta(t, mx, m, 0.01, "inverted dropout keeps the mean")

	// backward applies the forward mask to the gradient
	r := &RNG{Seed: 5, Offset: 11}
	tp := NewTape()
	defer tp.Release()
	y := Dropout(tp.Watch(x), p, r, true)
	assert.Equal(t, uint64(11+n), r.Offset)
	g := Cast(randTensor(rng, -1, 1, n), Float32)
	tp.BackwardWith(y, g.Clone())
	dx := tp.Grad(x).Float32s()
	for i, v := range one.Float32s() {
		if v == 0 {
			require.Equal(t, float32(0), dx[i])
		} else {
			require.Equal(t, g.Float32s()[i]*float32(1/(1-p)), dx[i])
		}
	}
}

func TestDropoutGradient(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 31))
	for _, n := range []int{1, 7, 33, 127, 300} {
		x := randTensor(rng, -1, 1, n)
		err := GradCheck{Seed: 32}.Check(func(in []*Tensor) *Tensor {
			// a fresh copy of the state per call: the same mask every time
			return Dropout(in[0], 0.4, &RNG{Seed: 8, Offset: 3}, true)
		}, x)
		assert.NoError(t, err, "n=%d", n)
	}
}

func TestDropoutIdentity(t *testing.T) {
	x := FromFloat32([]float32{1, 2, 3}, 3)
	r := NewRNG(1)
	for _, c := range []struct {
		p     float64
		train bool
	}{{0, true}, {0.5, false}, {0, false}} {
		y := Dropout(x, c.p, r, c.train)
		assert.Equal(t, x.Float32s(), y.Float32s())
		assert.Same(t, x.Buffer(), y.Buffer(), "identity shares storage")
		y.Release()
		assert.False(t, x.Released())
	}
	assert.Equal(t, uint64(0), r.Offset, "identity draws nothing")
	assert.Equal(t, []int{2, 0}, Dropout(Zeros(Float32, 2, 0), 0.5, r, true).Shape())
	assert.Contains(t, shpTPanic(func() { Dropout(x, 1, r, true) }), "Dropout")
	assert.Contains(t, shpTPanic(func() { Dropout(x, -0.1, r, true) }), "Dropout")
	assert.Contains(t, shpTPanic(func() { Dropout(x, math.NaN(), r, true) }), "Dropout")
	assert.Contains(t, shpTPanic(func() { Dropout(x, 0.5, nil, true) }), "nil RNG")
	assert.Contains(t, shpTPanic(func() { Dropout(FromInt32([]int32{1}, 1), 0.5, r, true) }), "int32")
}

func BenchmarkDropout(b *testing.B) {
	x := Zeros(Float32, 1<<20)
	r := NewRNG(1)
	shpTBenchThreads(b, func(b *testing.B) {
		b.SetBytes(8 << 20)
		for b.Loop() {
			Dropout(x, 0.1, r, true).Release()
		}
	})
}
