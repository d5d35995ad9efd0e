package advanced

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	ad "github.com/mlxtrain/mlxtrain/autodiff"
)

func normals(rng *rand.Rand, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = rng.NormFloat64()
	}
	return out
}

func to32(xs []float64) []float32 {
	out := make([]float32, len(xs))
	for i, v := range xs {
		out[i] = float32(v)
	}
	return out
}

func to64(xs []float32) []float64 {
	out := make([]float64, len(xs))
	for i, v := range xs {
		out[i] = float64(v)
	}
	return out
}

// refConv is the convolution written from its definition: input time t−(k−1)+j,
// read from the history before time 0.
func refConv(x, w, bias, prev []float64, B, L, C, K int) []float64 {
	y := make([]float64, B*L*C)
	for b := range B {
		for t := range L {
			for c := range C {
				s := 0.0
				if bias != nil {
					s = bias[c]
				}
				for j := range K {
					ti := t - (K - 1) + j
					switch {
					case ti >= 0:
						s += w[c*K+j] * x[(b*L+ti)*C+c]
					case prev != nil:
						s += w[c*K+j] * prev[(b*(K-1)+(K-1)+ti)*C+c]
					}
				}
				y[(b*L+t)*C+c] = s
			}
		}
	}
	return y
}

func TestCausalConv1dMatchesDirectFormula(t *testing.T) {
	withThreads(t, func(t *testing.T) {
		for _, L := range []int{0, 1, 7, 33, 127} {
			for _, K := range []int{1, 2, 4} {
				for _, C := range []int{0, 1, 5, 64} {
					B := 2
					rng := rand.New(rand.NewPCG(uint64(L*100+K*10+C), 3))
					x, w, bias, prev := normals(rng, B*L*C), normals(rng, C*K), normals(rng, C), normals(rng, B*(K-1)*C)
					name := fmt.Sprintf("L=%d/K=%d/C=%d", L, K, C)
					for _, bs := range [][]float64{nil, bias} {
						for _, pv := range [][]float64{nil, prev} {
							want := refConv(x, w, bs, pv, B, L, C, K)
							got := make([]float64, len(want))
							CausalConv1dForward(got, x, w, bs, pv, B, L, C, K)
							assertClose(t, want, got, 1e-13, name)
							got32 := make([]float32, len(want))
							var bs32, pv32 []float32
							if bs != nil {
								bs32 = to32(bs)
							}
							if pv != nil {
								pv32 = to32(pv)
							}
							CausalConv1dForward(got32, to32(x), to32(w), bs32, pv32, B, L, C, K)
							assertClose(t, want, to64(got32), 1e-5, name+"/float32")
						}
					}
				}
			}
		}
	})
}

func TestCausalConv1dGradients(t *testing.T) {
	for _, c := range []struct{ B, L, C, K int }{{1, 1, 1, 1}, {2, 3, 2, 4}, {2, 7, 3, 4}, {1, 33, 2, 3}} {
		rng := rand.New(rand.NewPCG(uint64(c.L), uint64(c.K)))
		x := ad.FromFloat64(normals(rng, c.B*c.L*c.C), c.B, c.L, c.C)
		w := ad.FromFloat64(normals(rng, c.C*c.K), c.C, 1, c.K) // the PyTorch layout
		bias := ad.FromFloat64(normals(rng, c.C), c.C)
		err := ad.GradCheck{Seed: 1}.Check(func(in []*ad.Tensor) *ad.Tensor { return CausalConv1d(in[0], in[1], in[2]) }, x, w, bias)
		assert.NoError(t, err, "%+v", c)
		w2 := ad.FromFloat64(w.Float64s(), c.C, c.K)
		err = ad.GradCheck{Seed: 2}.Check(func(in []*ad.Tensor) *ad.Tensor { return CausalConv1d(in[0], in[1], nil) }, x, w2)
		assert.NoError(t, err, "no bias %+v", c)
	}
}

// The backward kernel against gradients written from the definition, on a shape
// too large for element-wise finite differences.
func TestCausalConv1dBackwardMatchesDirectFormula(t *testing.T) {
	withThreads(t, func(t *testing.T) {
		const B, L, C, K = 3, 127, 40, 4
		rng := rand.New(rand.NewPCG(5, 5))
		x, w, g := normals(rng, B*L*C), normals(rng, C*K), normals(rng, B*L*C)
		wantDx, wantDw, wantDb := make([]float64, B*L*C), make([]float64, C*K), make([]float64, C)
		for b := range B {
			for tt := range L {
				for c := range C {
					gv := g[(b*L+tt)*C+c]
					wantDb[c] += gv
					for j := range K {
						if s := tt - (K - 1) + j; s >= 0 {
							wantDx[(b*L+s)*C+c] += w[c*K+j] * gv
							wantDw[c*K+j] += x[(b*L+s)*C+c] * gv
						}
					}
				}
			}
		}
		dx, dw, db := make([]float64, B*L*C), make([]float64, C*K), make([]float64, C)
		db[0] = 99 // overwritten, not added to
		CausalConv1dBackward(dx, dw, db, g, x, w, B, L, C, K)
		assertClose(t, wantDx, dx, 1e-12, "dx")
		assertClose(t, wantDw, dw, 1e-12, "dw")
		assertClose(t, wantDb, db, 1e-12, "db")
		CausalConv1dBackward(nil, dw, nil, g, x, w, B, L, C, K)
		assertClose(t, wantDw, dw, 1e-12, "dw alone")
	})
}

func TestCausalConv1dStepReproducesForward(t *testing.T) {
	const B, L, C = 2, 9, 5
	for _, K := range []int{1, 2, 4} {
		rng := rand.New(rand.NewPCG(uint64(K), 11))
		x, w, bias, prev := normals(rng, B*L*C), normals(rng, C*K), normals(rng, C), normals(rng, B*(K-1)*C)
		want := refConv(x, w, bias, prev, B, L, C, K)
		state := append([]float64(nil), prev...)
		y, xt := make([]float64, B*C), make([]float64, B*C)
		for tt := range L {
			for b := range B {
				copy(xt[b*C:(b+1)*C], x[(b*L+tt)*C:])
			}
			CausalConv1dStep(y, state, xt, w, bias, B, C, K)
			for b := range B {
				assertClose(t, want[(b*L+tt)*C:(b*L+tt+1)*C], y[b*C:(b+1)*C], 1e-13, fmt.Sprintf("K=%d step %d", K, tt))
			}
		}
		// Advancing the state over the sequence at once lands in the same place,
		// for sequences shorter and longer than the state.
		for _, n := range []int{0, 1, 2, L} {
			st1 := append([]float64(nil), prev...)
			st2 := append([]float64(nil), prev...)
			xs := make([]float64, B*n*C)
			for b := range B {
				copy(xs[b*n*C:(b+1)*n*C], x[b*L*C:])
			}
			CausalConv1dAdvance(st1, xs, B, n, C, K)
			for tt := range n {
				for b := range B {
					copy(xt[b*C:(b+1)*C], xs[(b*n+tt)*C:])
				}
				CausalConv1dStep(y, st2, xt, w, bias, B, C, K)
			}
			assert.Equal(t, st2, st1, "K=%d advance by %d", K, n)
		}
	}
}

func TestCausalConv1dShapeErrors(t *testing.T) {
	x := ad.Zeros(ad.Float64, 2, 3, 4)
	assert.PanicsWithValue(t, "advanced: causal_conv1d: x float64 [2 3 4], w float64 [5 2], bias none", func() { CausalConv1d(x, ad.Zeros(ad.Float64, 5, 2), nil) })
	assert.Panics(t, func() { CausalConv1d(x, ad.Zeros(ad.Float64, 4, 2, 2), nil) })
	assert.Panics(t, func() { CausalConv1d(x, ad.Zeros(ad.Float64, 4, 2), ad.Zeros(ad.Float64, 3)) })
	assert.Panics(t, func() { CausalConv1d(x, ad.Zeros(ad.Float32, 4, 2), nil) })
	require.Panics(t, func() {
		CausalConv1dForward(make([]float64, 3), make([]float64, 3), make([]float64, 2), nil, nil, 1, 3, 1, 1)
	})
}
