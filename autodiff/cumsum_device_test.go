package autodiff

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestCumsumFloat32MatchFloat64 runs Cumsum over leading, middle and last
// axes of odd, empty and multi-block lengths, both ways, forward and backward,
// on float32 and on float64 (which stays on the CPU). The sums run in another
// order on the device, so the bound grows with the length. Under
// MLXTRAIN_DEVICE=sim MLXTRAIN_METAL_MIN=0 the float32 side runs the scan
// kernels, and every op of it must say so in the profile.
func TestCumsumFloat32MatchFloat64(t *testing.T) {
	r := rand.New(rand.NewPCG(71, 72))
	type tc = deviceCase
	var cases []tc
	for _, n := range []int{1, 7, 33, 127, 0, 4097} {
		for _, rev := range []bool{false, true} {
			cases = append(cases,
				tc{fmt.Sprintf("cumsum middle reverse=%v", rev), []int{3, n, 5}, func(x *Tensor) *Tensor { return Cumsum(x, 1, rev) }},
				tc{fmt.Sprintf("cumsum last reverse=%v", rev), []int{2, n}, func(x *Tensor) *Tensor { return Cumsum(x, -1, rev) }},
				tc{fmt.Sprintf("cumsum first reverse=%v", rev), []int{n, 3}, func(x *Tensor) *Tensor { return Cumsum(x, 0, rev) }})
		}
	}
	checkFloat32MatchesFloat64(t, r, cases, nil, false, func(what string, y32, y64, dx32, dx64 *Tensor) {
		for _, c := range []struct {
			name      string
			got, want []float64
		}{{"y", y32.Float64Values(), y64.Float64Values()}, {"dx", dx32.Float64Values(), dx64.Float64Values()}} {
			for i, want := range c.want {
				// checked by hand first: testify per element is slow at these sizes
				if bound := 1e-5*(1+math.Abs(want)) + 2e-6*float64(len(c.want)); math.Abs(c.got[i]-want) > bound {
					assert.InDelta(t, want, c.got[i], bound, "%s: %s[%d]", what, c.name, i)
					break
				}
			}
		}
	})
}
