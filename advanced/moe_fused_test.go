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

// The float32 grouped linears run the bias and GELU as each expert GEMM's
// epilogue: against float64 formulas written here, on groups of 0, 1, 7, 33 and
// 127 rows (the larger ones fuse, the smaller ones do not), with and without a
// bias, on and off a tape (the derivative kept only on one), and the backward
// through the kept derivative against the float64 op's gradients; on one worker
// (each expert's GEMM after the other) and on two (the experts side by side).
func TestGroupedLinearFloat32Fused(t *testing.T) {
	for _, threads := range []int{1, 2} {
		t.Run(fmt.Sprintf("threads%d", threads), func(t *testing.T) {
			old := metal.Threads()
			metal.SetThreads(threads)
			defer metal.SetThreads(old)
			// Freed buffers hold NaNs, so a gradient left unwritten (an empty
			// expert's) shows.
			metal.SetPoison(true)
			defer metal.SetPoison(false)
			testGroupedLinearFloat32Fused(t)
			testGroupedLinearFloat32Fused(t) // on recycled buffers
		})
	}
}

func testGroupedLinearFloat32Fused(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	sizes := []int{33, 0, 1, 127, 7}
	offsets := []int{0}
	for _, s := range sizes {
		offsets = append(offsets, offsets[len(offsets)-1]+s)
	}
	rows, E, in, out := offsets[len(offsets)-1], len(sizes), 33, 70
	x64 := normals(rng, rows*in)
	w64 := normals(rng, E*out*in)
	b64 := normals(rng, E*out)
	to32 := func(v []float64) []float32 {
		r := make([]float32, len(v))
		for i, x := range v {
			r[i] = float32(x)
		}
		return r
	}
	for _, gelu := range []bool{false, true} {
		for _, bias := range []bool{false, true} {
			for _, taped := range []bool{false, true} {
				t.Run(fmt.Sprintf("gelu%v_bias%v_taped%v", gelu, bias, taped), func(t *testing.T) {
					x := ad.FromFloat32(to32(x64), rows, in)
					w := ad.FromFloat32(to32(w64), E, out, in)
					var b *ad.Tensor
					if bias {
						b = ad.FromFloat32(to32(b64), E, out)
					}
					var tp *ad.Tape
					if taped {
						tp = ad.NewTape()
						defer tp.Release()
						x, w = tp.Watch(x), tp.Watch(w)
						if b != nil {
							b = tp.Watch(b)
						}
					}
					f := GroupedLinear
					if gelu {
						f = GroupedLinearGELU
					}
					h := f(x, w, b, offsets)
					require.Equal(t, []int{rows, out}, h.Shape())
					got := h.Float32s()
					for e := range E {
						for i := offsets[e]; i < offsets[e+1]; i++ {
							for o := range out {
								var v float64
								if bias {
									v = float64(float32(b64[e*out+o]))
								}
								for j := range in {
									v += float64(float32(w64[(e*out+o)*in+j])) * float64(float32(x64[i*in+j]))
								}
								if gelu {
									v = v * 0.5 * math.Erfc(-v/math.Sqrt2)
								}
								require.InDelta(t, v, float64(got[i*out+o]), 2e-5*(1+math.Abs(v)), "row %d col %d", i, o)
							}
						}
					}
					if !taped {
						return
					}
					// Backward through the kept derivative, against float64.
					g := normals(rng, rows*out)
					tp.BackwardWith(h, ad.FromFloat32(to32(g), rows, out))
					tp64 := ad.NewTape()
					defer tp64.Release()
					x6, w6 := tp64.Watch(ad.FromFloat64(castBack(to32(x64)), rows, in)), tp64.Watch(ad.FromFloat64(castBack(to32(w64)), E, out, in))
					var b6 *ad.Tensor
					if bias {
						b6 = tp64.Watch(ad.FromFloat64(castBack(to32(b64)), E, out))
					}
					h6 := f(x6, w6, b6, offsets)
					tp64.BackwardWith(h6, ad.FromFloat64(castBack(to32(g)), rows, out))
					pairs := [][2]*ad.Tensor{{tp.Grad(x), tp64.Grad(x6)}, {tp.Grad(w), tp64.Grad(w6)}}
					if bias {
						pairs = append(pairs, [2]*ad.Tensor{tp.Grad(b), tp64.Grad(b6)})
					}
					for _, p := range pairs {
						g32, g64 := p[0].Float32s(), p[1].Float64s()
						require.Len(t, g32, len(g64))
						for i := range g64 {
							assert.InDelta(t, g64[i], float64(g32[i]), 1e-4*(1+math.Abs(g64[i])))
						}
					}
				})
			}
		}
	}
}

func castBack(v []float32) []float64 {
	r := make([]float64, len(v))
	for i, x := range v {
		r[i] = float64(x)
	}
	return r
}
