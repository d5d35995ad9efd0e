package advanced

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	ad "github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/layers"
)

// refRouterStats is the load-balancing loss E·Σ_e f_e·P_e and the z-loss mean
// lse² of softmax scores, written out plainly.
func refRouterStats(logits []float64, experts []int32, rows, E int) (balance, z float64) {
	if rows == 0 {
		return 0, 0
	}
	f, P := make([]float64, E), make([]float64, E)
	for _, e := range experts {
		f[e] += 1 / float64(rows)
	}
	for n := range rows {
		row := logits[n*E : (n+1)*E]
		var s float64
		for _, v := range row {
			s += math.Exp(v)
		}
		for e, v := range row {
			P[e] += math.Exp(v) / s / float64(rows)
		}
		z += math.Log(s) * math.Log(s) / float64(rows)
	}
	for e := range E {
		balance += f[e] * P[e]
	}
	return float64(E) * balance, z
}

func TestRouterStatsSoftmax(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, E := range []int{1, 3, 8, 11} {
		for _, rows := range []int{0, 1, 7, 33, 127, 200} {
			k := min(2, E)
			logits := make([]float64, rows*E)
			for i := range logits {
				logits[i] = 3 * rng.NormFloat64()
			}
			experts := make([]int32, rows*k)
			for i := range experts {
				experts[i] = int32(rng.IntN(E))
			}
			if rows > 3 && E > 1 {
				logits[E+1] = math.Inf(-1) // a masked logit weighs 0
			}
			t.Run(fmt.Sprintf("E%d/rows%d", E, rows), func(t *testing.T) {
				wantB, wantZ := refRouterStats(logits, experts, rows, E)
				b, z := routerStatsSoftmax(logits, experts, rows, E)
				assert.InDelta(t, wantB, b, 1e-12*math.Max(1, wantB))
				assert.InDelta(t, wantZ, z, 1e-12*math.Max(1, wantZ))

				l32 := make([]float32, len(logits))
				for i, v := range logits {
					l32[i] = float32(v)
				}
				b, z = routerStatsSoftmax(l32, experts, rows, E)
				assert.InDelta(t, wantB, b, 1e-6*math.Max(1, wantB))
				assert.InDelta(t, wantZ, z, 1e-6*math.Max(1, wantZ))
				// The separate kernels agree.
				assert.InDelta(t, LoadBalanceForward(l32, experts, rows, E, k, ScoreSoftmax, nil, nil), b, 1e-6*math.Max(1, b))
				assert.InDelta(t, RouterZForward(l32, rows, E, nil), z, 1e-6*math.Max(1, z))
				if rows > 0 { // a NaN logit makes both NaN, on either path
					l32[0], logits[0] = float32(math.NaN()), math.NaN()
					b, z = routerStatsSoftmax(l32, experts, rows, E)
					assert.True(t, math.IsNaN(b) && math.IsNaN(z), "float32 %v %v", b, z)
					b, z = routerStatsSoftmax(logits, experts, rows, E)
					assert.True(t, math.IsNaN(b) && math.IsNaN(z), "float64 %v %v", b, z)
				}
			})
		}
	}
}

// CombineResidual against a plain reference (values), against Add(res,
// Combine) in float32, and its float64 gradients (res, ys, gates) by finite
// differences; with dropped pairs, odd widths and no tokens.
func TestCombineResidual(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, sz := range [][2]int{{9, 1}, {9, 7}, {33, 33}, {5, 127}, {0, 7}} {
		N, D := sz[0], sz[1]
		const k, E = 2, 5
		t.Run(fmt.Sprintf("N%d/D%d", N, D), func(t *testing.T) {
			experts := make([]int32, N*k)
			for n := range N {
				experts[n*k], experts[n*k+1] = int32(rng.IntN(3)), 4
			}
			r := NewRouting(experts, N, k, E, 3) // capacity 3: drops pairs
			ys := ad.FromFloat64(normals(rng, r.Rows()*D), r.Rows(), D)
			gates := ad.FromFloat64(normals(rng, N*k), N, k)
			res := ad.FromFloat64(normals(rng, N*D), N, D)
			y := CombineResidual(ys, gates, r, res)
			for n := range N {
				for j := range D {
					v := res.Float64s()[n*D+j]
					for s := range k {
						if p := r.Pos[n*k+s]; p >= 0 {
							v += gates.Float64s()[n*k+s] * ys.Float64s()[int(p)*D+j]
						}
					}
					assert.InDelta(t, v, y.Float64s()[n*D+j], 1e-14)
				}
			}
			y32 := CombineResidual(ad.Cast(ys, ad.Float32), ad.Cast(gates, ad.Float32), r, ad.Cast(res, ad.Float32))
			assert.InDeltaSlice(t, y.Float64Values(), y32.Float64Values(), 1e-5)
			if N > 0 {
				require.NoError(t, ad.GradCheck{Seed: 7}.Check(func(in []*ad.Tensor) *ad.Tensor {
					return CombineResidual(in[0], in[1], r, in[2])
				}, ys, gates, res))
			}
			assert.Panics(t, func() { CombineResidual(ys, gates, r, ad.Zeros(ad.Float64, N+1, D)) })
		})
	}
}

// ForwardAuxResidual is x + Forward(x) (the residual the input itself, so x
// gets two gradients), values and gradients, for every configuration.
func TestMoEForwardAuxResidual(t *testing.T) {
	const B, T = 2, 7
	for i, tc := range moeCases() {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestMoE(t, ad.Float64, tc.cfg, uint64(10+i))
			rng := ad.NewRNG(uint64(100 + i))
			x := ad.RandNormal(rng, ad.Float64, 0, 1, B, T, tc.cfg.Dim)
			seed := ad.RandNormal(rng, ad.Float64, 0, 1, B, T, tc.cfg.Dim)
			want, wantG := moeGrads(t, m, x, seed, func(c *layers.Ctx, x *ad.Tensor) *ad.Tensor {
				y, _, _ := m.ForwardAux(c, x)
				return ad.Add(x, y)
			})
			got, gotG := moeGrads(t, m, x, seed, func(c *layers.Ctx, x *ad.Tensor) *ad.Tensor {
				y, _, _ := m.ForwardAuxResidual(c, x, x)
				return y
			})
			moeClose(t, want, got, 1e-12, 1e-12, "output")
			require.Equal(t, len(wantG), len(gotG), "the same inputs get gradients")
			for name, g := range wantG {
				moeClose(t, g, gotG[name], 1e-10, 1e-12, "grad "+name)
			}
		})
	}
}

// The float32 softmax over the chosen logits (vecmath's exponential) against
// the float64 formula, and its fallbacks: a NaN or infinite best logit takes
// the float64 path, a −Inf chosen logit weighs 0.
func TestSoftmaxTopK32(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, E := range []int{1, 2, 3, 8, 33} {
		for _, k := range []int{1, 2, 3} {
			if k > E {
				continue
			}
			for trial := range 20 {
				row := to32(normals(rng, E))
				for i := range row {
					row[i] *= 4
				}
				switch trial {
				case 1:
					row[E-1] = float32(math.Inf(-1))
				case 2:
					row[0] = float32(math.NaN())
				case 3:
					row[E/2] = float32(math.Inf(1))
				}
				ids := make([]int32, k)
				selectTopK(ids, row)
				got := make([]float32, k)
				gateWeights(got, ids, row, ScoreSoftmax, GateSoftmaxTopK)
				r64 := make([]float64, E)
				for i, v := range row {
					r64[i] = float64(v)
				}
				want := make([]float64, k)
				gateWeights(want, ids, r64, ScoreSoftmax, GateSoftmaxTopK)
				for j := range k {
					if math.IsNaN(want[j]) {
						assert.True(t, math.IsNaN(float64(got[j])), "E%d k%d trial %d gate %d", E, k, trial, j)
						continue
					}
					assert.InDelta(t, want[j], float64(got[j]), 3e-7, "E%d k%d trial %d gate %d", E, k, trial, j)
				}
			}
		}
	}
}

// BenchmarkRouterRows: the router's per-token work at the tiny MoE GPT's
// shapes (2048 tokens, top-2 of 8): the routing statistics and the gates.
//
//	MLXTRAIN_THREADS=1 go test ./advanced -run '^$' -bench RouterRows
func BenchmarkRouterRows(b *testing.B) {
	const N, E, k = 2048, 8, 2
	rng := rand.New(rand.NewPCG(1, 1))
	logits := to32(normals(rng, N*E))
	experts := make([]int32, N*k)
	gates := make([]float32, N*k)
	for i := range experts {
		experts[i] = int32(rng.IntN(E))
	}
	b.Run("stats", func(b *testing.B) {
		for b.Loop() {
			routerStatsSoftmax(logits, experts, N, E)
		}
	})
	b.Run("gates", func(b *testing.B) {
		for b.Loop() {
			RouterGatesForward(gates, experts, logits, N, E, k, ScoreSoftmax, GateSoftmaxTopK)
		}
	})
}

// BenchmarkCombineBackward: the tiny MoE GPT's shapes (2048 tokens, top-2 of
// 8, width 128), from cold caches as in a training step.
//
//	MLXTRAIN_THREADS=1 go test ./advanced -run '^$' -bench CombineBackward -benchtime 200x
func BenchmarkCombineBackward(b *testing.B) {
	const N, D, k, E = 2048, 128, 2, 8
	rng := rand.New(rand.NewPCG(1, 1))
	experts := make([]int32, N*k)
	for n := range N {
		perm := rng.Perm(E)
		experts[n*k], experts[n*k+1] = int32(perm[0]), int32(perm[1])
	}
	r := NewRouting(experts, N, k, E, 0)
	ys, dy, gates := to32(normals(rng, r.Rows()*D)), to32(normals(rng, N*D)), to32(normals(rng, N*k))
	dys, dg := make([]float32, len(ys)), make([]float32, len(gates))
	flush := make([]float32, 16<<20) // 64 MB
	for b.Loop() {
		b.StopTimer()
		for i := range flush {
			flush[i]++
		}
		b.StartTimer()
		CombineBackward(dys, dg, dy, ys, gates, r.Pos, k, D)
	}
}

// BenchmarkDispatch: the gather of the tiny MoE GPT's step (2048 tokens of
// width 128, top-2 of 8) from cold caches.
//
//	MLXTRAIN_THREADS=1 go test ./advanced -run '^$' -bench Dispatch -benchtime 200x
func BenchmarkDispatch(b *testing.B) {
	const N, D, k, E = 2048, 128, 2, 8
	rng := rand.New(rand.NewPCG(1, 1))
	experts := make([]int32, N*k)
	for n := range N {
		perm := rng.Perm(E)
		experts[n*k], experts[n*k+1] = int32(perm[0]), int32(perm[1])
	}
	r := NewRouting(experts, N, k, E, 0)
	x, xs := to32(normals(rng, N*D)), make([]float32, r.Rows()*D)
	flush := make([]float32, 16<<20) // 64 MB
	for b.Loop() {
		b.StopTimer()
		for i := range flush {
			flush[i]++
		}
		b.StartTimer()
		DispatchForward(xs, x, r.Token, D)
	}
}
