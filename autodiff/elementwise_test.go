package autodiff

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// randTensor returns a float64 tensor of normal values in [lo, hi) shifted away
// from kinks by the caller's choice of range.
func randTensor(rng *rand.Rand, lo, hi float64, shape ...int) *Tensor {
	t := Empty(Float64, shape...)
	for i := range t.Float64s() {
		t.Float64s()[i] = lo + (hi-lo)*rng.Float64()
	}
	return t
}

func TestBroadcastShapes(t *testing.T) {
	cases := []struct {
		a, b, want []int
		err        bool
	}{
		{[]int{2, 3}, []int{3}, []int{2, 3}, false},
		{[]int{2, 1, 4}, []int{3, 1}, []int{2, 3, 4}, false},
		{[]int{}, []int{5}, []int{5}, false},
		{[]int{0, 3}, []int{1, 3}, []int{0, 3}, false},
		{[]int{2, 3}, []int{4}, nil, true},
	}
	for _, c := range cases {
		got, err := BroadcastShapes(c.a, c.b)
		if c.err {
			assert.Error(t, err)
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, c.want, got)
	}
}

// refBinary is the independent reference: index arithmetic done from scratch.
func refBinary(kind BinaryKind, a, b []float64, as, bs, os []int) []float64 {
	out := make([]float64, numel(os))
	idx := make([]int, len(os))
	for o := range out {
		rem := o
		for d := len(os) - 1; d >= 0; d-- {
			idx[d] = rem % os[d]
			rem /= os[d]
		}
		flat := func(shape []int) int {
			f := 0
			for d := range shape {
				i := idx[len(os)-len(shape)+d]
				if shape[d] == 1 {
					i = 0
				}
				f = f*shape[d] + i
			}
			return f
		}
		out[o] = binaryApply(kind, a[flat(as)], b[flat(bs)])
	}
	return out
}

func TestBinaryMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	shapes := [][2][]int{
		{{7}, {7}}, {{33, 7}, {7}}, {{1, 7}, {33, 1}}, {{127}, {}}, {{}, {127}},
		{{2, 1, 33}, {7, 1}}, {{0, 7}, {7}}, {{4, 1, 3, 1}, {1, 5, 1, 2}}, {{300, 127}, {300, 1}},
	}
	for _, sh := range shapes {
		for kind := BinAdd; kind <= BinDiv; kind++ {
			a := randTensor(rng, 0.5, 2, sh[0]...)
			b := randTensor(rng, 0.5, 2, sh[1]...)
			os, err := BroadcastShapes(sh[0], sh[1])
			require.NoError(t, err)
			want := refBinary(kind, a.Float64s(), b.Float64s(), sh[0], sh[1], os)
			got := binaryForward(kind, a, b)
			assert.Equal(t, os, got.Shape())
			assert.InDeltaSlice(t, want, got.Float64s(), 1e-15, "%s %v %v", binaryNames[kind], sh[0], sh[1])
			// float32 path
			a32, b32 := Cast(a, Float32), Cast(b, Float32)
			got32 := binaryForward(kind, a32, b32)
			for i, w := range want {
				assert.InDelta(t, w, float64(got32.Float32s()[i]), 1e-5*math.Max(1, math.Abs(w)))
			}
		}
	}
}

func TestBinaryGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	ops := map[string]func(a, b *Tensor) *Tensor{"add": Add, "sub": Sub, "mul": Mul, "div": Div}
	shapes := [][2][]int{{{3, 4}, {3, 4}}, {{3, 4}, {4}}, {{2, 1, 3}, {5, 1}}, {{7}, {}}, {{33, 7}, {33, 1}}, {{127, 3}, {3}}}
	for name, op := range ops {
		for _, sh := range shapes {
			a := randTensor(rng, 0.5, 2, sh[0]...)
			b := randTensor(rng, 0.5, 2, sh[1]...)
			err := GradCheck{Seed: 5}.Check(func(in []*Tensor) *Tensor { return op(in[0], in[1]) }, a, b)
			assert.NoError(t, err, "%s %v", name, sh)
		}
	}
}

func TestUnaryMatchesClosedForms(t *testing.T) {
	xs := []float64{-3, -0.5, 0.25, 1, 2.5}
	closed := map[UnaryKind]func(x float64) float64{
		UnNeg: func(x float64) float64 { return -x }, UnExp: math.Exp, UnTanh: math.Tanh,
		UnSigmoid: func(x float64) float64 { return 1 / (1 + math.Exp(-x)) },
		UnReLU:    func(x float64) float64 { return math.Max(0, x) }, UnAbs: math.Abs,
		UnGELU:     func(x float64) float64 { return x * 0.5 * math.Erfc(-x/math.Sqrt2) },
		UnGELUTanh: func(x float64) float64 { return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x))) },
		UnSiLU:     func(x float64) float64 { return x / (1 + math.Exp(-x)) },
		UnSoftplus: func(x float64) float64 { return math.Log(1 + math.Exp(x)) },
	}
	for k, f := range closed {
		in := FromFloat64(xs, len(xs))
		out := Unary(k, in, 20, 0)
		for i, x := range xs {
			assert.InDelta(t, f(x), out.Float64s()[i], 1e-12, "%s(%g)", k, x)
		}
	}
	pos := FromFloat64([]float64{0.25, 1, 4}, 3)
	assert.InDeltaSlice(t, []float64{0.5, 1, 2}, Sqrt(pos).Float64s(), 1e-15)
	assert.InDeltaSlice(t, []float64{2, 1, 0.5}, Rsqrt(pos).Float64s(), 1e-15)
	assert.InDeltaSlice(t, []float64{math.Log(0.25), 0, math.Log(4)}, Log(pos).Float64s(), 1e-15)
	assert.InDeltaSlice(t, []float64{0.125, 1, 8}, Pow(pos, 1.5).Float64s(), 1e-15)
	assert.InDeltaSlice(t, []float64{0.5, 1, 3}, Clamp(pos, 0.5, 3).Float64s(), 0)
	assert.InDeltaSlice(t, []float64{1.25, 2, 5}, AddScalar(pos, 1).Float64s(), 0)
	assert.InDeltaSlice(t, []float64{-0.5, -2, -8}, MulScalar(pos, -2).Float64s(), 0)
}

func TestUnaryGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 7))
	type tc struct {
		k      UnaryKind
		lo, hi float64
		p, q   float64
	}
	cases := []tc{
		{UnNeg, -2, 2, 0, 0}, {UnExp, -2, 2, 0, 0}, {UnLog, 0.5, 3, 0, 0}, {UnSqrt, 0.5, 3, 0, 0},
		{UnRsqrt, 0.5, 3, 0, 0}, {UnAbs, 0.1, 2, 0, 0}, {UnTanh, -2, 2, 0, 0}, {UnSigmoid, -3, 3, 0, 0},
		{UnReLU, 0.1, 2, 0, 0}, {UnGELU, -3, 3, 0, 0}, {UnGELUTanh, -3, 3, 0, 0}, {UnSiLU, -3, 3, 0, 0},
		{UnSoftplus, -3, 3, 20, 0}, {UnPow, 0.5, 2, 2.5, 0}, {UnClamp, -0.9, 0.9, -1, 1},
		{UnAddScalar, -1, 1, 3, 0}, {UnMulScalar, -1, 1, -1.5, 0},
	}
	for _, c := range cases {
		for _, n := range []int{1, 7, 33, 127} {
			x := randTensor(rng, c.lo, c.hi, n)
			if c.k == UnAbs || c.k == UnReLU { // both sides of the kink, away from it
				for i, v := range x.Float64s() {
					if i%2 == 1 {
						x.Float64s()[i] = -v
					}
				}
			}
			err := GradCheck{Seed: uint64(n)}.Check(func(in []*Tensor) *Tensor { return Unary(c.k, in[0], c.p, c.q) }, x)
			assert.NoError(t, err, "%s n=%d", c.k, n)
		}
	}
}

func TestGradCheckCatchesAWrongGradient(t *testing.T) {
	// A deliberately wrong VJP must be reported: the checker is not vacuous.
	wrong := func(x *Tensor) *Tensor {
		out := Unary(UnMulScalar, x, 2, 0).Clone()
		return record(out, "wrong", func(g *Tensor) { accumulate(x, func() *Tensor { return g.Clone() }) }, x)
	}
	for _, n := range []int{3, 200} {
		x := randTensor(rand.New(rand.NewPCG(1, 1)), -1, 1, n)
		err := GradCheck{}.Check(func(in []*Tensor) *Tensor { return wrong(in[0]) }, x)
		assert.Error(t, err, fmt.Sprint(n))
	}
}

// The float32 GELU (vecmath's kernel) and its gradient against the float64
// formulas, on odd sizes and an empty tensor.
func TestGELUFloat32(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	for _, n := range []int{0, 1, 7, 33, 127, 1000} {
		xs, gs := make([]float32, n), make([]float32, n)
		for i := range xs {
			xs[i], gs[i] = float32(rng.NormFloat64()*3), float32(rng.NormFloat64())
		}
		tp := NewTape()
		x := tp.Watch(FromFloat32(xs, n))
		y := GELU(x)
		tp.BackwardWith(y, FromFloat32(gs, n))
		dx := tp.Grad(x)
		for i, v := range xs {
			phi := 0.5 * math.Erfc(-float64(v)/math.Sqrt2)
			want := float64(v) * phi
			assert.InDelta(t, want, float64(y.Float32s()[i]), 2e-7*math.Max(1, math.Abs(want)), "gelu(%g)", v)
			wantD := float64(gs[i]) * (phi + float64(v)*math.Exp(-float64(v)*float64(v)/2)/math.Sqrt(2*math.Pi))
			assert.InDelta(t, wantD, float64(dx.Float32s()[i]), 3e-7*math.Max(1, math.Abs(float64(gs[i]))), "gelu'(%g)", v)
		}
		tp.Release()
	}
}
