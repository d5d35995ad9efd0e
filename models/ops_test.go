package models

import (
	"math"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/internal/vecmath"
	"github.com/mlxtrain/mlxtrain/layers"
	"github.com/mlxtrain/mlxtrain/metal"
)

func normal(seed uint64, dt autodiff.DType, mean, std float64, shape ...int) *autodiff.Tensor {
	return autodiff.RandNormal(autodiff.NewRNG(seed), dt, mean, std, shape...)
}

// TestLinearGELU compares the fused op with LinearOp followed by GELU, values and
// gradients, in float64 (to rounding) and float32 (against float64), and checks
// its float64 gradient against finite differences.
func TestLinearGELU(t *testing.T) {
	for _, bias := range []bool{true, false} {
		x := normal(1, autodiff.Float64, 0, 1, 2, 3, 16)
		w := normal(2, autodiff.Float64, 0, 0.5, 21, 16) // 21: the AVX2 kernels' tail too
		var b *autodiff.Tensor
		if bias {
			b = normal(3, autodiff.Float64, 0, 0.5, 21)
		}
		seed := normal(4, autodiff.Float64, 0, 1, 2, 3, 21)
		run := func(f func(x, w, b *autodiff.Tensor) *autodiff.Tensor, dt autodiff.DType) (out []float64, grads [][]float64) {
			tp := autodiff.NewTape()
			defer tp.Release()
			cast := func(t *autodiff.Tensor) *autodiff.Tensor {
				if t == nil {
					return nil
				}
				return tp.Watch(autodiff.Cast(t, dt))
			}
			xs, ws, bs := cast(x), cast(w), cast(b)
			y := f(xs, ws, bs)
			tp.BackwardWith(y, autodiff.Cast(seed, dt))
			for _, p := range []*autodiff.Tensor{xs, ws, bs} {
				if p != nil {
					grads = append(grads, tp.Grad(p).Float64Values())
				}
			}
			return y.Float64Values(), grads
		}
		composed := func(x, w, b *autodiff.Tensor) *autodiff.Tensor { return autodiff.GELU(layers.LinearOp(x, w, b)) }
		want, wantG := run(composed, autodiff.Float64)
		got, gotG := run(LinearGELU, autodiff.Float64)
		assert.InDeltaSlice(t, want, got, 1e-13)
		for i := range wantG {
			assert.InDeltaSlice(t, wantG[i], gotG[i], 1e-12)
		}
		got32, got32G := run(LinearGELU, autodiff.Float32)
		assert.InDeltaSlice(t, want, got32, 2e-5)
		for i := range wantG {
			assert.InDeltaSlice(t, wantG[i], got32G[i], 5e-5)
		}
		inputs := []*autodiff.Tensor{x, w}
		if b != nil {
			inputs = append(inputs, b)
		}
		assert.NoError(t, autodiff.GradCheck{}.Check(func(in []*autodiff.Tensor) *autodiff.Tensor {
			var bb *autodiff.Tensor
			if len(in) > 2 {
				bb = in[2]
			}
			return LinearGELU(in[0], in[1], bb)
		}, inputs...))
	}
}

// TestLayerNorm32 compares the AVX2 LayerNorm with layers.LayerNormOp in
// float64, values and gradients, on rows that do not start centred.
func TestLayerNorm32(t *testing.T) {
	if !vecmath.AVX2FMA {
		t.Skip("no AVX2")
	}
	// wraps: the norm alone (its dx is x's first gradient) and with a second
	// use of x recorded after it (dx is added to the gradient that use left).
	wraps := map[string]func(ln func(x, w, b *autodiff.Tensor) *autodiff.Tensor) func(x, w, b *autodiff.Tensor) *autodiff.Tensor{
		"alone": func(ln func(x, w, b *autodiff.Tensor) *autodiff.Tensor) func(x, w, b *autodiff.Tensor) *autodiff.Tensor {
			return ln
		},
		"residual": func(ln func(x, w, b *autodiff.Tensor) *autodiff.Tensor) func(x, w, b *autodiff.Tensor) *autodiff.Tensor {
			return func(x, w, b *autodiff.Tensor) *autodiff.Tensor {
				return autodiff.Add(ln(x, w, b), autodiff.MulScalar(x, 0.5))
			}
		},
	}
	for _, sh := range [][2]int{{21, 8}, {21, 128}, {21, 136}, {1, 8}, {33, 16}, {127, 24}, {0, 8}} {
		rows, d := sh[0], sh[1]
		x := normal(5, autodiff.Float64, 0.5, 2, rows, d)
		w := normal(6, autodiff.Float64, 1, 0.3, d)
		b := normal(7, autodiff.Float64, 0, 0.3, d)
		seed := normal(8, autodiff.Float64, 0, 1, rows, d)
		run := func(dt autodiff.DType, f func(x, w, b *autodiff.Tensor) *autodiff.Tensor) [][]float64 {
			tp := autodiff.NewTape()
			defer tp.Release()
			xs, ws, bs := tp.Watch(autodiff.Cast(x, dt)), tp.Watch(autodiff.Cast(w, dt)), tp.Watch(autodiff.Cast(b, dt))
			y := f(xs, ws, bs)
			tp.BackwardWith(y, autodiff.Cast(seed, dt))
			return [][]float64{y.Float64Values(), tp.Grad(xs).Float64Values(), tp.Grad(ws).Float64Values(), tp.Grad(bs).Float64Values()}
		}
		for wname, wrap := range wraps {
			want := run(autodiff.Float64, wrap(func(x, w, b *autodiff.Tensor) *autodiff.Tensor { return layers.LayerNormOp(x, w, b, 1e-5) }))
			got := run(autodiff.Float32, wrap(func(x, w, b *autodiff.Tensor) *autodiff.Tensor { return layerNorm32(x, w, b, 1e-5) }))
			for i, name := range []string{"y", "dx", "dw", "db"} {
				scale := 1.0
				for _, v := range want[i] {
					scale = math.Max(scale, math.Abs(v))
				}
				assert.InDeltaSlice(t, want[i], got[i], 2e-6*scale, "%d×%d %s %s", rows, d, wname, name)
			}
		}
	}
	// The Go row kernels (machines without AVX2) against the assembly.
	x32 := autodiff.Cast(normal(18, autodiff.Float64, 0.3, 1.5, 64), autodiff.Float32).Float32s()
	w32 := autodiff.Cast(normal(19, autodiff.Float64, 1, 0.2, 64), autodiff.Float32).Float32s()
	b32 := autodiff.Cast(normal(20, autodiff.Float64, 0, 0.2, 64), autodiff.Float32).Float32s()
	g32 := autodiff.Cast(normal(21, autodiff.Float64, 0, 1, 64), autodiff.Float32).Float32s()
	yGo, yAsm := make([]float32, 64), make([]float32, 64)
	mGo, rGo := lnForwardGo(yGo, x32, w32, b32, 1e-5)
	mAsm, rAsm := lnForwardAVX2(&yAsm[0], &x32[0], &w32[0], &b32[0], 64, 1e-5)
	assert.InDelta(t, mGo, mAsm, 1e-6)
	assert.InDelta(t, rGo, rAsm, 1e-5*float64(rGo))
	assert.InDeltaSlice(t, yGo, yAsm, 1e-5)
	dxGo, dwGo, dbGo := make([]float32, 64), make([]float32, 64), make([]float32, 64)
	dxAsm, dwAsm, dbAsm := make([]float32, 64), make([]float32, 64), make([]float32, 64)
	lnBackwardGo(dxGo, dwGo, dbGo, g32, x32, w32, mGo, rGo, false)
	lnBackwardAVX2(&dxAsm[0], &dwAsm[0], &dbAsm[0], &g32[0], &x32[0], &w32[0], 64, mGo, rGo, false)
	assert.InDeltaSlice(t, dxGo, dxAsm, 1e-5)
	assert.InDeltaSlice(t, dwGo, dwAsm, 1e-5)
	assert.InDeltaSlice(t, dbGo, dbAsm, 1e-6)
	// Adding dx to a gradient: the same sums as dx written, then added.
	prior := autodiff.Cast(normal(22, autodiff.Float64, 0, 1, 64), autodiff.Float32).Float32s()
	for _, kernel := range map[string]func(dx []float32){
		"go": func(dx []float32) {
			lnBackwardGo(dx, make([]float32, 64), make([]float32, 64), g32, x32, w32, mGo, rGo, true)
		},
		"asm": func(dx []float32) {
			lnBackwardAVX2(&dx[0], &make([]float32, 64)[0], &make([]float32, 64)[0], &g32[0], &x32[0], &w32[0], 64, mGo, rGo, true)
		},
	} {
		got := slices.Clone(prior)
		kernel(got)
		for i := range got {
			assert.InDelta(t, prior[i]+dxGo[i], got[i], 1e-5)
		}
	}

	// The module falls back to the layers op where the kernel does not apply.
	n := LayerNorm{layers.NewLayerNorm(autodiff.Float32, 5, 1e-5, true)}
	x := normal(9, autodiff.Float32, 0, 1, 2, 5)
	assert.Equal(t, layers.LayerNormOp(x, n.Weight, n.Bias, 1e-5).Float32s(), n.Forward(nil, x).Float32s())
}

// ceRef is the masked mean cross-entropy in float64.
func ceRef(logits []float64, targets []int32, mask []float64, v int) float64 {
	sum, count := 0.0, 0
	for r, tg := range targets {
		if tg < 0 || mask != nil && mask[r] == 0 {
			continue
		}
		row := logits[r*v : (r+1)*v]
		m := math.Inf(-1)
		for _, x := range row {
			m = math.Max(m, x)
		}
		s := 0.0
		for _, x := range row {
			s += math.Exp(x - m)
		}
		sum += m + math.Log(s) - row[tg]
		count++
	}
	if count == 0 {
		return 0
	}
	return sum / float64(count)
}

// TestLMLoss checks the masked mean cross-entropy of Model.Loss (built on
// autodiff.CrossEntropy) against a float64 reference.
func TestLMLoss(t *testing.T) {
	const v = 9
	logits := normal(10, autodiff.Float64, 0, 3, 2, 4, v)
	targets := autodiff.FromInt32([]int32{0, 8, 3, -100, 5, 5, 1, 2}, 2, 4)
	mask := autodiff.FromInt32([]int32{1, 1, 0, 1, 1, 1, 1, 0}, 2, 4)
	maskF := []float64{1, 1, 0, 1, 1, 1, 1, 0}
	for _, m := range []*autodiff.Tensor{nil, mask} {
		var mf []float64
		if m != nil {
			mf = maskF
		}
		want := ceRef(logits.Float64s(), targets.Int32s(), mf, v)
		assert.InDelta(t, want, lmLoss(logits, targets, m).Item(), 1e-12)
		got32 := lmLoss(autodiff.Cast(logits, autodiff.Float32), targets, m)
		assert.InDelta(t, want, got32.Item(), 1e-5)
		assert.NoError(t, autodiff.GradCheck{Skip: []int{1}}.Check(func(in []*autodiff.Tensor) *autodiff.Tensor {
			return lmLoss(in[0], targets, m)
		}, logits, targets))
	}
	// Nothing counted: zero loss, zero gradient.
	none := autodiff.Zeros(autodiff.Int32, 2, 4)
	tp := autodiff.NewTape()
	defer tp.Release()
	l := tp.Watch(logits)
	loss := lmLoss(l, targets, none)
	assert.Equal(t, 0.0, loss.Item())
	tp.Backward(loss)
	for _, g := range tp.Grad(logits).Float64s() {
		require.Equal(t, 0.0, g)
	}
	assert.Panics(t, func() { lmLoss(logits, autodiff.FromInt32([]int32{0, 9, 0, 0, 0, 0, 0, 0}, 2, 4), nil) })
	assert.Panics(t, func() { lmLoss(logits, autodiff.Zeros(autodiff.Int32, 2, 4), autodiff.Zeros(autodiff.Int32, 8)) })
}

func TestEmbedPositions(t *testing.T) {
	table := normal(11, autodiff.Float64, 0, 1, 5, 3)
	pos := normal(12, autodiff.Float64, 0, 1, 6, 3)
	ids := autodiff.FromInt32([]int32{4, 0, 4, 1, 2, 2}, 2, 3)
	out := embedPositions(table, pos, ids, 2)
	for r, id := range ids.Int32s() {
		for c := range 3 {
			want := table.Float64s()[int(id)*3+c] + pos.Float64s()[(2+r%3)*3+c]
			assert.Equal(t, want, out.Float64s()[r*3+c])
		}
	}
	assert.Equal(t, table.Float64s()[12:15], embedPositions(table, nil, ids, 0).Float64s()[:3])
	assert.NoError(t, autodiff.GradCheck{Skip: []int{2}}.Check(func(in []*autodiff.Tensor) *autodiff.Tensor {
		return embedPositions(in[0], in[1], in[2], 1)
	}, table, pos, ids))
	// float32 gradients (the row sums in 8 lanes) against float64, on widths
	// with and without a tail.
	for _, d := range []int{3, 8, 33} {
		table := normal(13, autodiff.Float64, 0, 1, 5, d)
		pos := normal(14, autodiff.Float64, 0, 1, 6, d)
		seed := normal(15, autodiff.Float64, 0, 1, 2, 3, d)
		grads := func(dt autodiff.DType) [][]float64 {
			tp := autodiff.NewTape()
			defer tp.Release()
			tw, pw := tp.Watch(autodiff.Cast(table, dt)), tp.Watch(autodiff.Cast(pos, dt))
			tp.BackwardWith(embedPositions(tw, pw, ids, 2), autodiff.Cast(seed, dt))
			return [][]float64{tp.Grad(tw).Float64Values(), tp.Grad(pw).Float64Values()}
		}
		want, got := grads(autodiff.Float64), grads(autodiff.Float32)
		assert.InDeltaSlice(t, want[0], got[0], 1e-6, "d=%d table", d)
		assert.InDeltaSlice(t, want[1], got[1], 1e-6, "d=%d positions", d)
	}
}

// TestLinearResidual compares the fused res + x·Wᵀ + b with LinearOp and Add,
// values and gradients, and checks its float64 gradient.
func TestLinearResidual(t *testing.T) {
	for _, bias := range []bool{true, false} {
		x := normal(13, autodiff.Float64, 0, 1, 2, 5, 24)
		w := normal(14, autodiff.Float64, 0, 0.5, 16, 24)
		res := normal(15, autodiff.Float64, 0, 1, 2, 5, 16)
		var b *autodiff.Tensor
		if bias {
			b = normal(16, autodiff.Float64, 0, 0.5, 16)
		}
		seed := normal(17, autodiff.Float64, 0, 1, 2, 5, 16)
		run := func(dt autodiff.DType, f func(x, w, b, res *autodiff.Tensor) *autodiff.Tensor) [][]float64 {
			return valuesAndGrads(dt, seed, func(in []*autodiff.Tensor) *autodiff.Tensor { return f(in[0], in[1], in[3], in[2]) }, x, w, res, b)
		}
		want := run(autodiff.Float64, func(x, w, b, res *autodiff.Tensor) *autodiff.Tensor {
			return autodiff.Add(res, layers.LinearOp(x, w, b))
		})
		for _, dt := range []autodiff.DType{autodiff.Float64, autodiff.Float32} {
			got := run(dt, linearResidual)
			tol := 1e-12
			if dt == autodiff.Float32 {
				tol = 2e-5
			}
			for i := range want {
				assert.InDeltaSlice(t, want[i], got[i], tol, "%s result %d", dt, i)
			}
		}
		inputs := []*autodiff.Tensor{x, w, res}
		if b != nil {
			inputs = append(inputs, b)
		}
		assert.NoError(t, autodiff.GradCheck{}.Check(func(in []*autodiff.Tensor) *autodiff.Tensor {
			var bb *autodiff.Tensor
			if len(in) > 3 {
				bb = in[3]
			}
			return linearResidual(in[0], in[1], bb, in[2])
		}, inputs...))
	}
}

// TestLinearResidualShared: the residual's gradient shares the output
// gradient's storage, which must not disturb the other gradients when the
// residual is the input itself, nor gradients that flow on through the
// residual stream and into a second residual projection.
func TestLinearResidualShared(t *testing.T) {
	x := normal(21, autodiff.Float64, 0, 1, 3, 8)
	w := normal(22, autodiff.Float64, 0, 0.5, 8, 8)
	w2 := normal(23, autodiff.Float64, 0, 0.5, 8, 8)
	b := normal(24, autodiff.Float64, 0, 0.5, 8)
	f := func(in []*autodiff.Tensor) *autodiff.Tensor {
		h := linearResidual(in[0], in[1], in[3], in[0]) // x + x·Wᵀ + b
		return autodiff.Mul(linearResidual(h, in[2], nil, h), h)
	}
	composed := func(in []*autodiff.Tensor) *autodiff.Tensor {
		h := autodiff.Add(in[0], layers.LinearOp(in[0], in[1], in[3]))
		return autodiff.Mul(autodiff.Add(h, layers.LinearOp(h, in[2], nil)), h)
	}
	grads := func(fn func([]*autodiff.Tensor) *autodiff.Tensor, dt autodiff.DType) [][]float64 {
		tp := autodiff.NewTape()
		defer tp.Release()
		in := []*autodiff.Tensor{x, w, w2, b}
		for i, v := range in {
			in[i] = tp.Watch(autodiff.Cast(v, dt))
		}
		tp.Backward(autodiff.Sum(fn(in), nil, false))
		var out [][]float64
		for _, v := range in {
			out = append(out, tp.Grad(v).Float64Values())
		}
		return out
	}
	want := grads(composed, autodiff.Float64)
	for _, dt := range []autodiff.DType{autodiff.Float64, autodiff.Float32} {
		got := grads(f, dt)
		for i := range want {
			assert.InDeltaSlice(t, want[i], got[i], 1e-4, "%s gradient %d", dt, i)
		}
	}
	assert.NoError(t, autodiff.GradCheck{}.Check(f, x, w, w2, b))
}

// TestLinearGELUFused32 runs the float32 LinearGELU at sizes where the GELU is
// the GEMM's epilogue (with the system BLAS off, so that the packed kernel runs;
// several blocks of rows, edges of the 6×16 tile, one and two workers) and where
// it follows the BLAS GEMM, against the unfused composition in float32 and
// float64, values and gradients.
func TestLinearGELUFused32(t *testing.T) {
	oldBLAS := metal.BLASEnabled()
	defer metal.SetBLAS(oldBLAS)
	for _, run := range []struct {
		threads int
		blas    bool
	}{{1, false}, {2, false}, {1, true}, {2, true}} {
		threads, bias := run.threads, false
		old := metal.Threads()
		metal.SetThreads(threads)
		metal.SetBLAS(run.blas && oldBLAS)
		for _, bias = range []bool{true, false} {
			x := normal(31, autodiff.Float64, 0, 1, 2, 151, 40)
			w := normal(32, autodiff.Float64, 0, 0.3, 70, 40)
			var b *autodiff.Tensor
			if bias {
				b = normal(33, autodiff.Float64, 0, 0.5, 70)
			}
			seed := normal(34, autodiff.Float64, 0, 1, 2, 151, 70)
			run := func(f func(x, w, b *autodiff.Tensor) *autodiff.Tensor, dt autodiff.DType) [][]float64 {
				return valuesAndGrads(dt, seed, func(in []*autodiff.Tensor) *autodiff.Tensor { return f(in[0], in[1], in[2]) }, x, w, b)
			}
			composed := func(x, w, b *autodiff.Tensor) *autodiff.Tensor { return autodiff.GELU(layers.LinearOp(x, w, b)) }
			want := run(composed, autodiff.Float64)
			unfused := run(composed, autodiff.Float32)
			got := run(LinearGELU, autodiff.Float32)
			for i := range want {
				assert.InDeltaSlice(t, want[i], got[i], 2e-4, "threads %d bias %v: result %d against float64", threads, bias, i)
				assert.InDeltaSlice(t, unfused[i], got[i], 2e-4, "threads %d bias %v: result %d against float32 composition", threads, bias, i)
			}
		}
		metal.SetThreads(old)
	}
}

// valuesAndGrads runs f on the inputs cast to dt and watched (nil ones stay
// nil), back-propagates seed and returns f's values then the gradients of the
// non-nil inputs, in float64.
func valuesAndGrads(dt autodiff.DType, seed *autodiff.Tensor, f func(in []*autodiff.Tensor) *autodiff.Tensor, inputs ...*autodiff.Tensor) [][]float64 {
	tp := autodiff.NewTape()
	defer tp.Release()
	in := make([]*autodiff.Tensor, len(inputs))
	for i, v := range inputs {
		if v != nil {
			in[i] = tp.Watch(autodiff.Cast(v, dt))
		}
	}
	y := f(in)
	tp.BackwardWith(y, autodiff.Cast(seed, dt))
	out := [][]float64{y.Float64Values()}
	for _, v := range in {
		if v != nil {
			out = append(out, tp.Grad(v).Float64Values())
		}
	}
	return out
}
