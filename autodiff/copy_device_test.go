package autodiff

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/metal"
)

// TestCopyOpsFloat32MatchFloat64 runs the shape ops that move elements on
// float32 tensors of odd and empty sizes, forward and backward, and compares
// them with the same ops on float64 tensors (which never leave the CPU): copies
// are exact, so the values must agree exactly and the gradients to rounding.
// Under MLXTRAIN_DEVICE=sim MLXTRAIN_METAL_MIN=0 (CI runs this test so) the
// float32 side runs on the simulated GPU, and every op of it must say so in
// the profile.
func TestCopyOpsFloat32MatchFloat64(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	type tc = deviceCase
	var cases []tc
	for _, n := range []int{1, 7, 33, 127, 0} {
		cases = append(cases,
			tc{"slice step 2", []int{3, n, 5}, func(x *Tensor) *Tensor { return SliceStep(x, 1, min(1, n), n, 2) }},
			tc{"slice last axis", []int{2, 3, n}, func(x *Tensor) *Tensor { return Slice(x, -1, n/3, n) }},
			tc{"concat", []int{2, n, 3}, func(x *Tensor) *Tensor { return Concat(1, x, x) }},
			tc{"stack", []int{n, 3}, func(x *Tensor) *Tensor { return Stack(1, x, x, x) }},
			tc{"split", []int{2, n + 3, 3}, func(x *Tensor) *Tensor {
				p := Split(x, 1, 2, n, 1)
				return Concat(1, p[2], p[0], p[1])
			}},
			tc{"transpose", []int{n, 7, 3}, func(x *Tensor) *Tensor { return Transpose(x) }},
			tc{"permute", []int{2, n, 3, 5}, func(x *Tensor) *Tensor { return Permute(x, 2, 0, 3, 1) }},
			tc{"swap axes", []int{3, n}, func(x *Tensor) *Tensor { return SwapAxes(x, 0, 1) }},
			tc{"broadcast_to", []int{1, n, 4}, func(x *Tensor) *Tensor { return BroadcastTo(x, 3, n, 4) }},
		)
	}
	checkFloat32MatchesFloat64(t, r, cases, nil, true, func(what string, y32, y64, dx32, dx64 *Tensor) {
		assert.Equal(t, Cast(y64, Float32).Float32s(), y32.Float32s(), what)
		want := dx64.Float64s()
		for i, v := range dx32.Float32s() {
			assert.InDelta(t, want[i], float64(v), 1e-6*(1+abs(want[i])), "%s: dx[%d]", what, i)
		}
	})
}

// deviceCase is one op of the float32-against-float64 device tests: f applied
// to a random input of shape.
type deviceCase struct {
	name  string
	shape []int
	f     func(x *Tensor) *Tensor
}

// checkFloat32MatchesFloat64 runs each case forward and backward (with a random
// output gradient) on float32, which is the device when one is offloading, and
// on float64, which stays on the CPU, and hands both results to compare. prepare
// (if not nil) edits the float32 input first. When offloading, every profiled
// op of the float32 run must have taken the Metal path (and, with nonEmpty,
// there must be some).
func checkFloat32MatchesFloat64(t *testing.T, r *rand.Rand, cases []deviceCase, prepare func(x *Tensor), nonEmpty bool,
	compare func(what string, y32, y64, dx32, dx64 *Tensor)) {
	run := func(c deviceCase, x, g *Tensor) (y, dx *Tensor) {
		tp := NewTape()
		defer tp.Release()
		out := c.f(tp.Watch(x))
		tp.Keep(out)
		tp.BackwardWith(out, g)
		return out, tp.Grad(x).Clone()
	}
	for _, c := range cases {
		what := fmt.Sprintf("%s %v", c.name, c.shape)
		x32 := RandomTensor(r, -3, 3, c.shape...)
		if prepare != nil {
			prepare(x32)
		}
		x64 := Cast(x32, Float64)
		probe := c.f(x64)
		g32 := RandomTensor(r, -1, 1, probe.shape...)
		g64 := Cast(g32, Float64)
		probe.Release()

		metal.ResetProfile()
		metal.SetProfiling(true)
		y32, dx32 := run(c, x32, g32)
		metal.SetProfiling(false)
		if metal.Offloading() {
			snap := metal.ProfileSnapshot()
			if nonEmpty {
				assert.NotEmpty(t, snap, what)
			}
			for _, e := range snap {
				assert.Equal(t, metal.PathMetal, e.Path, "%s: %s took the %s path", what, e.Op, e.Path)
			}
		}
		y64, dx64 := run(c, x64, g64)
		require.Equal(t, y64.shape, y32.shape, what)
		compare(what, y32, y64, dx32, dx64)
		releaseAll([]*Tensor{x32, x64, g32, g64, y32, y64, dx32, dx64})
	}
	metal.ResetProfile()
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}
