package advanced

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	ad "github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/internal/simtest"
	"github.com/mlxtrain/mlxtrain/metal"
)

// TestMoERoutingDevice checks the routing in float32 (the device's path with
// an accelerator and the thresholds at 0) against float64 (always the CPU's):
// the experts and the sort exactly, the gates, the auxiliary losses and the
// gradient of all three within float32 tolerance, on odd shapes with ties and
// capacity drops.
func TestMoERoutingDevice(t *testing.T) {
	onDevice := metal.Offloading() && moeRouterOp.OnMetal(1, 1) && moeSortOp.OnMetal(1) && moeRouterLossOp.OnMetal(1, 1)
	rng := rand.New(rand.NewPCG(5, 6))
	modes := []struct {
		score RouterScore
		norm  GateNorm
	}{{ScoreSoftmax, GateSoftmaxTopK}, {ScoreSoftmax, GateScores}, {ScoreSigmoid, GateRenormalize}, {ScoreSigmoid, GateScores}}
	for _, rows := range []int{1, 7, 33, 127} {
		for _, E := range []int{1, 3, 8} {
			for _, k := range []int{1, 2} {
				if k > E {
					continue
				}
				m := modes[rng.IntN(len(modes))]
				capacity := []int{0, 1, max(1, rows*k/E)}[rng.IntN(3)]
				name := fmt.Sprintf("rows=%d E=%d k=%d %s/%s capacity=%d", rows, E, k, m.score, m.norm, capacity)
				lv, wv := make([]float64, rows*E), normals(rng, rows*k)
				for i := range lv {
					lv[i] = float64(rng.IntN(9)-4) * 0.25 // ties, exact in float32
				}
				type result struct {
					gates, loss, dl []float64
					experts         []int32
					r               *Routing
				}
				run := func(dt ad.DType) result {
					tp := ad.NewTape()
					defer tp.Release()
					l64 := ad.FromFloat64(lv, rows, E)
					l := l64
					if dt == ad.Float32 {
						l = ad.Cast(l64, dt)
						l64.Release()
					}
					l = tp.Watch(l)
					w := ad.FromFloat64(wv, rows, k)
					if dt == ad.Float32 {
						w32 := ad.Cast(w, dt)
						w.Release()
						w = w32
					}
					defer w.Release()
					gates, experts := RouterGates(l, k, m.score, m.norm)
					defer experts.Release()
					r := route(experts, rows, k, E, capacity).host() // read the device sort back
					res := result{gates: gates.Float64Values(), experts: append([]int32(nil), experts.Int32s()...)}
					res.r = &Routing{Tokens: r.Tokens, K: r.K, Experts: r.Experts, Capacity: r.Capacity, Routed: r.Routed,
						Offsets: r.Offsets, Token: append([]int32(nil), r.Token...), Pos: append([]int32(nil), r.Pos...), Dropped: r.Dropped}
					releaseTensors(r.tensors()...)
					lb, z := LoadBalanceLoss(l, experts, m.score), RouterZLoss(l)
					loss := ad.Add(ad.Add(ad.MeanAll(ad.Mul(gates, w)), ad.MulScalar(lb, 0.3)), ad.MulScalar(z, 0.2))
					res.loss = []float64{lb.Item(), z.Item(), loss.Item()}
					tp.Backward(loss)
					res.dl = tp.Grad(l).Float64Values()
					return res
				}
				before := metal.Launches()
				got := run(ad.Float32)
				if onDevice {
					assert.GreaterOrEqual(t, metal.Launches()-before, int64(9), name+": the routing launched")
				}
				want := run(ad.Float64)
				require.Equal(t, want.experts, got.experts, name+" experts")
				assert.Equal(t, NewRouting(want.experts, rows, k, E, capacity), got.r, name+" routing")
				assertClose(t, want.gates, got.gates, 1e-5, name+" gates")
				assertClose(t, want.loss, got.loss, 1e-5, name+" losses")
				assertClose(t, want.dl, got.dl, 1e-5, name+" dlogits")
			}
		}
	}
	if onDevice {
		report := strings.Join(metal.SelfTestReport(metal.Kernels.List()), "\n")
		for _, op := range []string{"moe_router", "moe_router_loss", "moe_route_sort"} {
			assert.Contains(t, report, op+": passed")
		}
	}
}

// TestRouterLossesOnePass runs with an accelerator only: routerLossesDevice
// (what MoE.Forward uses when both auxiliary losses are on) computes the
// statistics once (two launches, not four) and gives LoadBalanceLoss's and
// RouterZLoss's values and logits gradients.
func TestRouterLossesOnePass(t *testing.T) {
	if !metal.Offloading() || !moeRouterLossOp.OnMetal(1, 1) {
		t.Skip("no accelerator, or below the device thresholds (MLXTRAIN_METAL_MIN=0)")
	}
	rng := rand.New(rand.NewPCG(9, 10))
	const rows, E, k = 37, 5, 2
	for _, score := range []RouterScore{ScoreSoftmax, ScoreSigmoid} {
		l64 := ad.FromFloat64(normals(rng, rows*E), rows, E)
		logits := ad.Cast(l64, ad.Float32)
		l64.Release()
		ids := make([]int32, rows*k)
		for n := range rows {
			ids[n*k], ids[n*k+1] = int32(n%E), int32((n+1+n/E)%E)
		}
		experts := ad.FromInt32(ids, rows, k)
		losses := func(both bool) (lb, z float64, dl []float32, launches int64) {
			tp := ad.NewTape()
			x := tp.Watch(logits)
			before := metal.Launches()
			var bt, zt *ad.Tensor
			if both {
				bt, zt = routerLossesDevice(x, experts, score)
				require.NotNil(t, bt)
			} else {
				bt, zt = LoadBalanceLoss(x, experts, score), RouterZLoss(x)
			}
			launches = metal.Launches() - before
			lb, z = bt.Item(), zt.Item()
			tp.Backward(ad.Add(ad.MulScalar(bt, 0.3), ad.MulScalar(zt, 0.7)))
			dl = append([]float32(nil), tp.Grad(x).Float32s()...)
			tp.Release()
			return lb, z, dl, launches
		}
		lb, z, dl, n := losses(true)
		wlb, wz, wdl, wn := losses(false)
		assert.Equal(t, int64(2), n, "%s: one computation of the statistics", score)
		assert.Equal(t, int64(4), wn, "%s: two computations apart", score)
		assert.InDelta(t, wlb, lb, 1e-6, "%s balance", score)
		assert.InDelta(t, wz, z, 1e-6, "%s z", score)
		assert.InDeltaSlice(t, wdl, dl, 1e-6, "%s dlogits", score)
		logits.Release()
		experts.Release()
	}
}

// TestDroplessRoutingStaysOnDevice runs with an accelerator only: an
// untracked dropless MoE pass (route, dispatch, the two grouped products,
// combine) runs from the device sort without reading the routing back, and
// gives what the CPU's routing gives.
func TestDroplessRoutingStaysOnDevice(t *testing.T) {
	if !metal.Offloading() || !moeSortOp.OnMetal(1) || !groupedOp.OnMetal(1, 1) || !moeDispatchOp.OnMetal(1, 1) || !moeCombineOp.OnMetal(1, 1) {
		t.Skip("no accelerator, or below the device thresholds (MLXTRAIN_METAL_MIN=0)")
	}
	rng := rand.New(rand.NewPCG(11, 12))
	const tokens, k, E, D, H = 37, 2, 4, 16, 24
	f32 := func(shape ...int) *ad.Tensor {
		n := 1
		for _, d := range shape {
			n *= d
		}
		t64 := ad.FromFloat64(normals(rng, n), shape...)
		defer t64.Release()
		return ad.Cast(t64, ad.Float32)
	}
	logits, x, up, down := f32(tokens, E), f32(tokens, D), f32(E, H, D), f32(E, D, H)
	gates, experts := RouterGates(logits, k, ScoreSoftmax, GateSoftmaxTopK)
	pass := func(r *Routing, offsets []int) []float64 {
		xs := Dispatch(x, r)
		h := groupedLinear("moe_grouped_linear_gelu", xs, up, nil, offsets, r, true)
		ys := groupedLinear("moe_grouped_linear", h, down, nil, offsets, r, false)
		y := Combine(ys, gates, r)
		out := y.Float64Values()
		releaseTensors(xs, h, ys, y)
		return out
	}
	r := route(experts, tokens, k, E, 0)
	require.NotNil(t, r.dev, "the device sorted")
	got := pass(r, nil)
	assert.Nil(t, r.Offsets, "nothing read the routing back")
	releaseTensors(r.tensors()...)
	rc := NewRouting(experts.Int32s(), tokens, k, E, 0)
	assertClose(t, pass(rc, rc.Offsets), got, 1e-5, "y")
	releaseTensors(logits, x, up, down, gates, experts)
}

// TestMoEDeviceOnSimulator reruns TestRouterLossesOnePass and
// TestDroplessRoutingStaysOnDevice on the simulator with every threshold at 0
// (TestAdvancedOnSimulator reruns the other device tests).
func TestMoEDeviceOnSimulator(t *testing.T) {
	simtest.Rerun(t, "TestRouterLossesOnePass", "TestDroplessRoutingStaysOnDevice")
}
