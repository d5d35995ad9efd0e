package advanced

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	ad "github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// GroupedMLP against the two grouped ops it fuses, on groups of 33, 0, 1, 127
// and 7 rows (the larger fuse their epilogues, the smaller do not) and an empty
// last expert, with and without biases, on 1, 2 and 3 workers (the experts side
// by side or one after the other, each product split): in float32, the forward
// value and every gradient; in float64, a gradient check.
func TestGroupedMLP(t *testing.T) {
	sizes := []int{33, 0, 1, 127, 7, 0}
	offsets := []int{0}
	for _, s := range sizes {
		offsets = append(offsets, offsets[len(offsets)-1]+s)
	}
	rows, E, D, H := offsets[len(offsets)-1], len(sizes), 33, 70
	rng := rand.New(rand.NewPCG(3, 4))
	x64, w164, b164 := normals(rng, rows*D), normals(rng, E*H*D), normals(rng, E*H)
	w264, b264, g64 := normals(rng, E*D*H), normals(rng, E*D), normals(rng, rows*D)
	to32 := func(v []float64) []float32 {
		r := make([]float32, len(v))
		for i, x := range v {
			r[i] = float32(x)
		}
		return r
	}
	for _, threads := range []int{1, 2, 3} {
		for _, bias := range []bool{false, true} {
			t.Run(fmt.Sprintf("threads%d_bias%v", threads, bias), func(t *testing.T) {
				old := metal.Threads()
				metal.SetThreads(threads)
				defer metal.SetThreads(old)
				// Freed buffers hold NaNs, so anything left unwritten shows.
				metal.SetPoison(true)
				defer metal.SetPoison(false)
				run := func(fused bool) []*ad.Tensor {
					tp := ad.NewTape()
					defer tp.Release()
					x := tp.Watch(ad.FromFloat32(to32(x64), rows, D))
					w1 := tp.Watch(ad.FromFloat32(to32(w164), E, H, D))
					w2 := tp.Watch(ad.FromFloat32(to32(w264), E, D, H))
					var b1, b2 *ad.Tensor
					if bias {
						b1 = tp.Watch(ad.FromFloat32(to32(b164), E, H))
						b2 = tp.Watch(ad.FromFloat32(to32(b264), E, D))
					}
					var y *ad.Tensor
					if fused {
						y = GroupedMLP(x, w1, b1, w2, b2, offsets)
					} else {
						y = GroupedLinear(GroupedLinearGELU(x, w1, b1, offsets), w2, b2, offsets)
					}
					require.Equal(t, []int{rows, D}, y.Shape())
					tp.BackwardWith(y, ad.FromFloat32(to32(g64), rows, D))
					res := []*ad.Tensor{y.Clone(), tp.Grad(x).Clone(), tp.Grad(w1).Clone(), tp.Grad(w2).Clone()}
					if bias {
						res = append(res, tp.Grad(b1).Clone(), tp.Grad(b2).Clone())
					}
					return res
				}
				want, got := run(false), run(true)
				for i := range want {
					w, g := want[i].Float32s(), got[i].Float32s()
					require.Len(t, g, len(w))
					for j := range w {
						require.InDelta(t, w[j], g[j], 1e-5*(1+math.Abs(float64(w[j]))), "result %d element %d", i, j)
					}
				}
			})
		}
	}

	inputs := []*ad.Tensor{ad.FromFloat64(x64, rows, D), ad.FromFloat64(w164, E, H, D), ad.FromFloat64(b164, E, H),
		ad.FromFloat64(w264, E, D, H), ad.FromFloat64(b264, E, D)}
	err := ad.GradCheck{Seed: 6}.Check(func(in []*ad.Tensor) *ad.Tensor {
		return GroupedMLP(in[0], in[1], in[2], in[3], in[4], offsets)
	}, inputs...)
	assert.NoError(t, err)
	err = ad.GradCheck{Seed: 7}.Check(func(in []*ad.Tensor) *ad.Tensor {
		return GroupedMLP(in[0], in[1], nil, in[2], nil, offsets)
	}, inputs[0], inputs[1], inputs[3])
	assert.NoError(t, err)
	// Off a tape: the value alone.
	y := GroupedMLP(inputs[0], inputs[1], inputs[2], inputs[3], inputs[4], offsets)
	ref := GroupedLinear(GroupedLinearGELU(inputs[0], inputs[1], inputs[2], offsets), inputs[3], inputs[4], offsets)
	assert.InDeltaSlice(t, ref.Float64s(), y.Float64s(), 1e-12)
	assert.Panics(t, func() { GroupedMLP(inputs[0], inputs[1], inputs[2], inputs[1], nil, offsets) })
	assert.Panics(t, func() { GroupedMLP(inputs[0], inputs[1], inputs[2], inputs[3], inputs[2], offsets) })
	assert.Panics(t, func() { GroupedMLP(inputs[0], inputs[1], inputs[2], inputs[3], nil, []int{0, 1, rows}) })
}
