package advanced

import (
	"fmt"
	"math/rand/v2"
	"testing"

	ad "github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
	"github.com/stretchr/testify/require"
)

// dispatchedMLP against Dispatch followed by GroupedMLP, bit for bit: the
// output and every gradient, in float32 and float64, for 0, 1, 7, 33 and 127
// tokens, top-1, 2 and 3, with and without a capacity that drops
// pairs, with and without biases, on 1, 2 and 3 workers.
func TestDispatchedMLP(t *testing.T) {
	to32 := func(v []float64) []float32 {
		r := make([]float32, len(v))
		for i, x := range v {
			r[i] = float32(x)
		}
		return r
	}
	const E, D, H = 5, 33, 70
	rng := rand.New(rand.NewPCG(7, 8))
	for _, dt := range []ad.DType{ad.Float32, ad.Float64} {
		for _, tokens := range []int{0, 1, 7, 33, 127} {
			for _, k := range []int{1, 2, 3} {
				for _, capacity := range []int{0, max(1, tokens*k/E/2)} {
					ids := make([]int32, tokens*k)
					for i := range ids {
						ids[i] = int32(rng.IntN(E))
					}
					x64, g64 := normals(rng, tokens*D), normals(rng, tokens*D)
					w164, b164, w264, b264 := normals(rng, E*H*D), normals(rng, E*H), normals(rng, E*D*H), normals(rng, E*D)
					for _, threads := range []int{1, 2, 3} {
						bias := threads != 2
						name := fmt.Sprintf("%s_tokens%d_k%d_cap%d_threads%d", dt, tokens, k, capacity, threads)
						t.Run(name, func(t *testing.T) {
							old := metal.Threads()
							metal.SetThreads(threads)
							defer metal.SetThreads(old)
							metal.SetPoison(true)
							defer metal.SetPoison(false)
							mk := func(v []float64, shape ...int) *ad.Tensor {
								if dt == ad.Float32 {
									return ad.FromFloat32(to32(v), shape...)
								}
								return ad.FromFloat64(v, shape...)
							}
							run := func(fused bool) [][]float64 {
								tp := ad.NewTape()
								defer tp.Release()
								r := NewRouting(ids, tokens, k, E, capacity)
								x := tp.Watch(mk(x64, tokens, D))
								w1, w2 := tp.Watch(mk(w164, E, H, D)), tp.Watch(mk(w264, E, D, H))
								var b1, b2 *ad.Tensor
								if bias {
									b1, b2 = tp.Watch(mk(b164, E, H)), tp.Watch(mk(b264, E, D))
								}
								var ys *ad.Tensor
								if fused {
									ys = dispatchedMLP(x, w1, b1, w2, b2, r)
								} else {
									ys = GroupedMLP(Dispatch(x, r), w1, b1, w2, b2, r.Offsets)
								}
								require.Equal(t, []int{r.Rows(), D}, ys.Shape())
								// A loss that weighs each row by its token's g row, so every row's
								// gradient differs.
								y := Combine(ys, ad.Full(dt, 1, tokens, k), r)
								tp.BackwardWith(y, mk(g64, tokens, D))
								res := []*ad.Tensor{ys, tp.Grad(x), tp.Grad(w1), tp.Grad(w2)}
								if bias {
									res = append(res, tp.Grad(b1), tp.Grad(b2))
								}
								var out [][]float64
								for _, r := range res {
									if dt == ad.Float32 {
										out = append(out, castBack(r.Float32s()))
									} else {
										out = append(out, append([]float64(nil), r.Float64s()...))
									}
								}
								return out
							}
							want, got := run(false), run(true)
							require.Len(t, got, len(want))
							for i := range want {
								require.Equal(t, want[i], got[i], "result %d", i)
							}
						})
					}
				}
			}
		}
	}
}
