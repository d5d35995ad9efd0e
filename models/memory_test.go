package models

import (
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/advanced"
	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/layers"
	"github.com/mlxtrain/mlxtrain/metal"
)

// trainGrads runs one training loss and backward of m and returns the loss, the
// gradient of every parameter (by name) and the MoE statistics.
func trainGrads(t *testing.T, m *Model, inputs, targets, mask *autodiff.Tensor, rng *autodiff.RNG) (float64, map[string][]float64, map[int]advanced.MoEStats) {
	return scaledGrads(t, m, inputs, targets, mask, rng, 1)
}

// scaledGrads is trainGrads with the backward seeded by scale (loss scaling) and
// the gradients divided by it.
func scaledGrads(t *testing.T, m *Model, inputs, targets, mask *autodiff.Tensor, rng *autodiff.RNG, scale float64) (float64, map[string][]float64, map[int]advanced.MoEStats) {
	t.Helper()
	tp := autodiff.NewTape()
	defer tp.Release()
	loss := m.Loss(&layers.Ctx{Tape: tp, Train: true, RNG: rng}, inputs, targets, mask)
	val := loss.Item()
	tp.BackwardWith(loss, autodiff.Full(loss.DType(), scale, loss.Shape()...))
	grads := map[string][]float64{}
	for _, p := range m.Params() {
		g := tp.Grad(p.Value)
		require.NotNil(t, g, p.Name)
		grads[p.Name] = g.Float64Values()
		for i := range grads[p.Name] {
			grads[p.Name][i] /= scale
		}
	}
	return val, grads, m.MoEStats()
}

// TestGradCheckpointSameGradients: with every mixer and feed-forward kind (MoE
// with its auxiliary losses, Mamba), and with dropout, a checkpointed training
// step gives the loss, gradients, MoE statistics and RNG advance of the plain one.
func TestGradCheckpointSameGradients(t *testing.T) {
	metal.SetPoison(true)
	defer metal.SetPoison(false)
	cfgs := hybridConfigs()
	for name, cfg := range tinyConfigs() {
		cfgs[name] = cfg
	}
	for name, cfg := range cfgs {
		for _, drop := range []float64{0, 0.2} {
			t.Run(name, func(t *testing.T) {
				m, err := New(cfg, autodiff.NewRNG(3))
				require.NoError(t, err)
				inputs := tokens(2, 5, 7, func(b, t int) int { return 3*b + 2*t + t*t })
				targets := tokens(2, 5, 7, func(b, t int) int { return b + 5*t + 1 })
				mask := autodiff.FromFloat64([]float64{1, 1, 1, 1, 0, 1, 0, 1, 1, 1}, 2, 5)
				m.Train = TrainOptions{Dropout: drop}
				rng1 := autodiff.NewRNG(9)
				l1, g1, s1 := trainGrads(t, m, inputs, targets, mask, rng1)
				m.Train.GradCheckpoint = true
				rng2 := autodiff.NewRNG(9)
				l2, g2, s2 := trainGrads(t, m, inputs, targets, mask, rng2)
				assert.InDelta(t, l1, l2, 1e-12)
				require.Len(t, g2, len(g1))
				for k, want := range g1 {
					assert.InDeltaSlice(t, want, g2[k], 1e-11, k)
				}
				assert.Equal(t, s1, s2)
				assert.Equal(t, *rng1, *rng2, "the same random draws")
				if drop > 0 {
					assert.NotZero(t, rng1.Offset)
				}
			})
		}
	}
}

// TestGradCheckpointLowersPoolPeak: on a model where activations dominate, the
// tensor pool's high-water mark over a training step is lower with
// checkpointing, and lower still with the kept layer inputs in bfloat16.
func TestGradCheckpointLowersPoolPeak(t *testing.T) {
	cfg := GPT2Config(32, 64, 6, 4, 64)
	m, err := New(cfg, autodiff.NewRNG(1))
	require.NoError(t, err)
	inputs := tokens(8, 64, 32, func(b, t int) int { return b + 3*t })
	targets := tokens(8, 64, 32, func(b, t int) int { return b + 3*t + 1 })
	peak := func(o TrainOptions) int64 {
		m.Train = o
		tp := autodiff.NewTape()
		loss := m.Loss(&layers.Ctx{Tape: tp, Train: true}, inputs, targets, nil) // warm the pool's free lists
		tp.Backward(loss)
		tp.Release()
		settlePool()
		metal.HostPool.ResetPeak()
		base := metal.HostPool.Live()
		loss = m.Loss(&layers.Ctx{Tape: tp, Train: true}, inputs, targets, nil)
		tp.Backward(loss)
		tp.Release()
		return metal.HostPool.Peak() - base
	}
	plain := peak(TrainOptions{})
	ckpt := peak(TrainOptions{GradCheckpoint: true})
	half := peak(TrainOptions{GradCheckpoint: true, Precision: PrecisionBF16})
	t.Logf("pool peak over a step: plain %s, checkpointed %s, checkpointed bf16 %s",
		metal.HumanBytes(plain), metal.HumanBytes(ckpt), metal.HumanBytes(half))
	assert.Less(t, float64(ckpt), 0.6*float64(plain))
	assert.Less(t, half, ckpt)
}

// settlePool lets the GC collect buffers dropped without Release (by earlier
// tests), so that none leaves the pool's count during a measurement.
func settlePool() {
	for range 20 {
		before := metal.HostPool.Live()
		runtime.GC()
		time.Sleep(time.Millisecond) // the cleanups run on their own goroutine
		if metal.HostPool.Live() == before {
			return
		}
	}
}

// TestRoundHalf checks the rounding against the autodiff casts, its gradient
// rounding, and auto's magnitude rule.
func TestRoundHalf(t *testing.T) {
	vals := []float32{1, 1.0009765625 + 1e-4, -3.14159, 1e-8, 70000, 5000, -0.1}
	for _, dt := range []autodiff.DType{autodiff.Float16, autodiff.BFloat16} {
		x := autodiff.FromFloat32(append([]float32(nil), vals...), len(vals))
		tp := autodiff.NewTape()
		w := tp.Watch(x)
		y := autodiff.Mul(w, autodiff.FromFloat32([]float32{1, 1, 1, 1, 1, 1, 1}, len(vals)))
		r := RoundHalf(y, dt, false)
		want := autodiff.Cast(autodiff.Cast(autodiff.FromFloat32(vals, len(vals)), dt), autodiff.Float32)
		assert.Equal(t, want.Float32s(), r.Float32s(), dt.String())
		seed := autodiff.FromFloat32(append([]float32(nil), vals...), len(vals))
		tp.BackwardWith(r, seed)
		assert.Equal(t, want.Float32s(), tp.Grad(x).Float32s(), "gradient rounded too")
		tp.Release()
	}
	x := autodiff.FromFloat32([]float32{1.0001, 5000}, 2)
	r := RoundHalf(x, autodiff.Float16, true)
	assert.Equal(t, []float32{1.0001, 5000}, r.Float32s(), "auto: over AutoHalfMaxAbs stays float32")
	x = autodiff.FromFloat32([]float32{1.0001, 4000}, 2)
	r = RoundHalf(x, autodiff.Float16, true)
	assert.Equal(t, []float32{1, 4000}, r.Float32s())
}

// TestRoundingMatchesTheCasts compares the fast roundings with the exact
// conversions over a sweep of float32 bit patterns and the edges of float16.
func TestRoundingMatchesTheCasts(t *testing.T) {
	check := func(b uint32) {
		x := math.Float32frombits(b)
		want := autodiff.HalfToFloat32(autodiff.Float32ToHalf(x))
		got := roundFloat16(x)
		if math.Float32bits(want) != math.Float32bits(got) && !(want != want && got != got) {
			t.Fatalf("%g (%#x): got %g, want %g", x, b, got, want)
		}
		wantB := autodiff.BFloat16ToFloat32(autodiff.Float32ToBFloat16(x))
		if gotB := roundBFloat16(x); math.Float32bits(wantB) != math.Float32bits(gotB) && !(wantB != wantB && gotB != gotB) {
			t.Fatalf("%g (%#x): roundBFloat16 %g, want %g", x, b, gotB, wantB)
		}
		if h, w := float16Bits(x), autodiff.Float32ToHalf(x); h != w {
			t.Fatalf("%g (%#x): float16Bits %#x, want %#x", x, b, h, w)
		}
	}
	for b := uint64(0); b < 1<<32; b += 4093 {
		check(uint32(b))
	}
	for _, v := range []float32{65504, 65519.99, 65520, 65535, 0x1p-14, 0x1p-14 * (1 - 0x1p-12), 0x1p-24, 0x1p-25, 1 + 0x1p-11, 1 + 3*0x1p-11} {
		check(math.Float32bits(v))
		check(math.Float32bits(-v))
	}
}

// TestHalfPrecisionGradients: a float32 GPT's gradients in bf16, f16 and auto
// stay close to the float32 ones (relative to each gradient's norm: bfloat16
// keeps 8 significant bits, float16 11), and the 16-bit formats keep less in
// the pool over a step (the GELU MLP's hidden layer in 16 bits).
func TestHalfPrecisionGradients(t *testing.T) {
	cfg := GPT2Config(32, 64, 2, 4, 64)
	m, err := New(cfg, autodiff.NewRNG(2))
	require.NoError(t, err)
	inputs := tokens(8, 64, 32, func(b, t int) int { return b + 3*t })
	targets := tokens(8, 64, 32, func(b, t int) int { return b + 3*t + 1 })
	step := func(p Precision, scale float64) (map[string][]float64, int64) {
		m.Train = TrainOptions{Precision: p}
		settlePool()
		metal.HostPool.ResetPeak()
		base := metal.HostPool.Live()
		_, g, _ := scaledGrads(t, m, inputs, targets, nil, nil, scale)
		return g, metal.HostPool.Peak() - base
	}
	ref, refPeak := step(PrecisionF32, 1)
	for _, tc := range []struct {
		p          Precision
		scale, tol float64
	}{
		{PrecisionBF16, 1, 2e-2},
		{PrecisionF16, 1, 1e-2},    // small gradients lose bits to float16's subnormals…
		{PrecisionF16, 1024, 2e-3}, // …which loss scaling avoids
		{PrecisionAuto, 1, 2e-3},
	} {
		got, peak := step(tc.p, tc.scale)
		worst := 0.0
		for name, want := range ref {
			var diff, norm float64
			for i, w := range want {
				diff += (got[name][i] - w) * (got[name][i] - w)
				norm += w * w
			}
			assert.LessOrEqual(t, math.Sqrt(diff), tc.tol*math.Sqrt(norm)+1e-8, "%s×%g %s", tc.p, tc.scale, name)
			if norm > 1e-12 {
				worst = math.Max(worst, math.Sqrt(diff/norm))
			}
		}
		t.Logf("%s×%g: worst relative gradient error %.2g", tc.p, tc.scale, worst)
		assert.Less(t, peak, refPeak, tc.p)
		t.Logf("%s: pool peak %s (f32 %s)", tc.p, metal.HumanBytes(peak), metal.HumanBytes(refPeak))
	}
}
