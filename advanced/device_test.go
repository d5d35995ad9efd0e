package advanced

import (
	"fmt"
	"github.com/mlxtrain/mlxtrain/internal/simtest"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	ad "github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// TestCausalConv1dDevice checks the float32 op, forward and gradients, against
// the float64 op (always the CPU's) on odd shapes. With an accelerator and the
// thresholds at 0 (TestAdvancedOnSimulator) it runs the device kernels and
// checks that they launched.
func TestCausalConv1dDevice(t *testing.T) {
	onDevice := metal.Offloading() && convOp.OnMetal(1, 1)
	for _, c := range []struct{ B, L, C, K int }{{1, 1, 1, 1}, {2, 7, 5, 4}, {1, 33, 70, 4}, {2, 9, 3, 7}} {
		for _, withBias := range []bool{false, true} {
			name := fmt.Sprintf("%+v bias=%v", c, withBias)
			rng := rand.New(rand.NewPCG(uint64(c.L), uint64(c.C)))
			xs, ws, bs, gs := normals(rng, c.B*c.L*c.C), normals(rng, c.C*c.K), normals(rng, c.C), normals(rng, c.B*c.L*c.C)
			run := func(dt ad.DType) (y, dx, dw, db []float64) {
				mk := func(v []float64, shape ...int) *ad.Tensor {
					t64 := ad.FromFloat64(v, shape...)
					if dt == ad.Float64 {
						return t64
					}
					defer t64.Release()
					return ad.Cast(t64, dt)
				}
				x, w, g := mk(xs, c.B, c.L, c.C), mk(ws, c.C, c.K), mk(gs, c.B, c.L, c.C)
				var bias *ad.Tensor
				tp := ad.NewTape()
				defer tp.Release()
				if withBias {
					bias = tp.Watch(mk(bs, c.C))
				}
				out := tp.Keep(CausalConv1d(tp.Watch(x), tp.Watch(w), bias))
				defer out.Release()
				y = out.Float64Values()
				tp.BackwardWith(out, g)
				dx, dw = tp.Grad(x).Float64Values(), tp.Grad(w).Float64Values()
				if withBias {
					db = tp.Grad(bias).Float64Values()
				}
				return
			}
			before := metal.Launches()
			y, dx, dw, db := run(ad.Float32)
			if onDevice {
				assert.GreaterOrEqual(t, metal.Launches()-before, int64(3), name+": forward, dx and dw launched")
			}
			wy, wdx, wdw, wdb := run(ad.Float64)
			assertClose(t, wy, y, 1e-5, name+" y")
			assertClose(t, wdx, dx, 1e-5, name+" dx")
			assertClose(t, wdw, dw, 1e-4, name+" dw")
			if withBias {
				assertClose(t, wdb, db, 1e-4, name+" db")
			}
		}
	}
	if onDevice {
		report := strings.Join(metal.SelfTestReport(metal.Kernels.List()), "\n")
		assert.Contains(t, report, "causal_conv1d: passed")
	}
}

// TestSelectiveScanDevice checks the float32 op, forward and gradients,
// against the float64 op (always the CPU's); with an accelerator and the
// thresholds at 0 it runs the device kernels.
func TestSelectiveScanDevice(t *testing.T) {
	onDevice := metal.Offloading() && ssmDevOp.OnMetal(1, 1)
	for _, c := range []struct{ B, L, D, N, chunk int }{{1, 1, 1, 1, 0}, {2, 23, 7, 16, 8}, {1, 40, 33, 40, 0}} {
		for _, skip := range []bool{false, true} {
			name := fmt.Sprintf("%+v skip=%v", c, skip)
			rng := rand.New(rand.NewPCG(uint64(c.L), uint64(c.N)))
			uniform := func(n int, lo, hi float64) []float64 {
				v := make([]float64, n)
				for i := range v {
					v[i] = lo + (hi-lo)*rng.Float64()
				}
				return v
			}
			bld, bln := c.B*c.L*c.D, c.B*c.L*c.N
			vals := [][]float64{uniform(bld, -1, 1), uniform(bld, 0.01, 0.5), uniform(c.D*c.N, -2, -0.1), uniform(bln, -1, 1), uniform(bln, -1, 1), uniform(c.D, -1, 1)}
			shapes := [][]int{{c.B, c.L, c.D}, {c.B, c.L, c.D}, {c.D, c.N}, {c.B, c.L, c.N}, {c.B, c.L, c.N}, {c.D}}
			gv := uniform(bld, -1, 1)
			run := func(dt ad.DType) (y []float64, grads [][]float64) {
				tp := ad.NewTape()
				defer tp.Release()
				ins := make([]*ad.Tensor, 6)
				for i := range ins {
					t64 := ad.FromFloat64(vals[i], shapes[i]...)
					ins[i] = t64
					if dt != ad.Float64 {
						ins[i] = ad.Cast(t64, dt)
						t64.Release()
					}
					ins[i] = tp.Watch(ins[i])
				}
				D := ins[5]
				if !skip {
					D = nil
				}
				out := tp.Keep(SelectiveScan(ins[0], ins[1], ins[2], ins[3], ins[4], D, SSMOptions{Chunk: c.chunk}))
				defer out.Release()
				y = out.Float64Values()
				g64 := ad.FromFloat64(gv, c.B, c.L, c.D)
				g := g64
				if dt != ad.Float64 {
					g = ad.Cast(g64, dt)
					g64.Release()
				}
				tp.BackwardWith(out, g)
				n := 5
				if skip {
					n = 6
				}
				for _, in := range ins[:n] {
					grads = append(grads, tp.Grad(in).Float64Values())
				}
				return
			}
			before := metal.Launches()
			y, grads := run(ad.Float32)
			if onDevice {
				assert.GreaterOrEqual(t, metal.Launches()-before, int64(3), name+": forward and backward launched")
			}
			wy, wgrads := run(ad.Float64)
			assertClose(t, wy, y, 1e-4, name+" y")
			for i, w := range wgrads {
				assertClose(t, w, grads[i], 1e-3, fmt.Sprintf("%s grad %d", name, i))
			}
		}
	}
	if onDevice {
		report := strings.Join(metal.SelfTestReport(metal.Kernels.List()), "\n")
		assert.Contains(t, report, "selective_scan_metal: passed")
	}
}

// TestMoEDispatchCombineDevice checks the float32 dispatch and combine,
// forward and gradients, against the float64 ops (always the CPU's); with an
// accelerator and the thresholds at 0 it runs the device kernels.
func TestMoEDispatchCombineDevice(t *testing.T) {
	onDevice := metal.Offloading() && moeDispatchOp.OnMetal(1, 1) && moeCombineOp.OnMetal(1, 1)
	for _, c := range []struct{ tokens, k, experts, capacity, dim int }{{1, 1, 1, 0, 1}, {13, 2, 4, 5, 37}, {40, 3, 5, 0, 70}} {
		name := fmt.Sprintf("%+v", c)
		rng := rand.New(rand.NewPCG(uint64(c.tokens), uint64(c.dim)))
		ids := make([]int32, c.tokens*c.k)
		for i := range ids {
			ids[i] = int32(rng.IntN(c.experts))
		}
		r := NewRouting(ids, c.tokens, c.k, c.experts, c.capacity)
		xv, gv, sv := normals(rng, c.tokens*c.dim), normals(rng, c.tokens*c.k), normals(rng, r.Rows()*c.dim)
		dyv := normals(rng, c.tokens*c.dim)
		run := func(dt ad.DType) (y []float64, grads [][]float64) {
			mk := func(v []float64, shape ...int) *ad.Tensor {
				t64 := ad.FromFloat64(v, shape...)
				if dt == ad.Float64 {
					return t64
				}
				defer t64.Release()
				return ad.Cast(t64, dt)
			}
			tp := ad.NewTape()
			defer tp.Release()
			x, gates, scale := tp.Watch(mk(xv, c.tokens, c.dim)), tp.Watch(mk(gv, c.tokens, c.k)), mk(sv, r.Rows(), c.dim)
			xs := Dispatch(x, r)
			ys := ad.Mul(xs, scale) // stands for the experts
			out := tp.Keep(Combine(ys, gates, r))
			defer out.Release()
			y = out.Float64Values()
			tp.BackwardWith(out, mk(dyv, c.tokens, c.dim))
			return y, [][]float64{tp.Grad(x).Float64Values(), tp.Grad(gates).Float64Values()}
		}
		before := metal.Launches()
		y, grads := run(ad.Float32)
		if onDevice {
			assert.GreaterOrEqual(t, metal.Launches()-before, int64(4), name+": dispatch, combine and backwards launched")
		}
		wy, wgrads := run(ad.Float64)
		assertClose(t, wy, y, 1e-5, name+" y")
		assertClose(t, wgrads[0], grads[0], 1e-5, name+" dx")
		assertClose(t, wgrads[1], grads[1], 1e-4, name+" dgates")
	}
	if onDevice {
		report := strings.Join(metal.SelfTestReport(metal.Kernels.List()), "\n")
		assert.Contains(t, report, "moe_dispatch: passed")
	}
}

// TestAdvancedOnSimulator reruns the device tests and the Mamba tests in a
// child process on the simulator with every threshold at 0. It skips without
// clang unless MLXTRAIN_REQUIRE_CLANG=1.
func TestAdvancedOnSimulator(t *testing.T) {
	simtest.Rerun(t, "TestCausalConv1dDevice", "TestSelectiveScanDevice", "TestLinearRecurrenceDevice", "ExampleLinearRecurrence", "TestMoEDispatchCombineDevice", "TestMoERoutingDevice", "TestDispatchGroupedCombine", "TestMoEFloat32MatchesDenseLoop", "TestMoEGradCheck", "ExampleMoE", "ExampleGroupedLinear", "TestMambaMatchesReferenceAndNames", "TestMambaStepReproducesForward", "TestMambaStepPaths", "TestMambaTrainingStepUsesTape", "ExampleCausalConv1d", "ExampleMamba")
}
