package optim

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

func TestClipGradNorm(t *testing.T) {
	// ‖(3, 4, 12)‖ = 13 by hand.
	a := autodiff.FromFloat32([]float32{3, 4}, 2)
	b := autodiff.FromFloat64([]float64{12}, 1, 1)
	defer a.Release()
	defer b.Release()
	grads := []*autodiff.Tensor{a, nil, b}
	assert.Equal(t, 13.0, GlobalNorm(grads))

	// Under the limit: returned, nothing scaled.
	assert.Equal(t, 13.0, ClipGradNorm(grads, 13))
	assert.Equal(t, []float64{3, 4}, a.Float64Values())
	assert.Equal(t, []float64{12}, b.Float64Values())

	// Over it: every element times 6.5/(13+1e-6), just under one half.
	assert.Equal(t, 13.0, ClipGradNorm(grads, 6.5))
	maxNorm, norm := 6.5, 13.0
	scale := maxNorm / (norm + 1e-6)
	assert.Equal(t, []float64{float64(float32(3 * scale)), float64(float32(4 * scale))}, a.Float64Values())
	assert.Equal(t, []float64{12 * scale}, b.Float64Values())
	assert.InDelta(t, 6.5, GlobalNorm(grads), 1e-6)

	assert.Equal(t, 0.0, GlobalNorm(nil))
	assert.Panics(t, func() { ClipGradNorm(grads, 0) })
}

func TestClipGradNormNonFinite(t *testing.T) {
	a := autodiff.FromFloat64([]float64{1, math.Inf(1)}, 2)
	n := autodiff.FromFloat64([]float64{math.NaN()}, 1)
	defer a.Release()
	defer n.Release()
	assert.True(t, math.IsInf(ClipGradNorm([]*autodiff.Tensor{a}, 1), 1))
	assert.Equal(t, 1.0, a.At(0))
	assert.True(t, math.IsNaN(ClipGradNorm([]*autodiff.Tensor{a, n}, 1)))
	assert.Equal(t, 1.0, a.At(0))
}

// A large gradient spans many blocks and workers; the norm must equal a plain
// float64 sum up to rounding and not depend on the thread count.
func TestGlobalNormLarge(t *testing.T) {
	defer metal.SetThreads(metal.Threads())
	rng := rand.New(rand.NewPCG(2, 3))
	const n = 5*normBlock + 123
	g := autodiff.Empty(autodiff.Float32, n)
	defer g.Release()
	want := 0.0
	for i := range g.Float32s() {
		v := float32(rng.NormFloat64())
		g.Float32s()[i] = v
		want += float64(v) * float64(v)
	}
	want = math.Sqrt(want)
	metal.SetThreads(1)
	one := GlobalNorm([]*autodiff.Tensor{g})
	metal.SetThreads(3)
	three := GlobalNorm([]*autodiff.Tensor{g})
	assert.Equal(t, one, three)
	assert.InDelta(t, want, one, want*1e-13)
}
