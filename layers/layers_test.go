package layers

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	ad "github.com/mlxtrain/mlxtrain/autodiff"
)

func rnd(seed uint64, lo, hi float64, shape ...int) *ad.Tensor {
	return ad.RandUniform(ad.NewRNG(seed), ad.Float64, lo, hi, shape...)
}

func near(t *testing.T, want, got []float64, tol float64, msg string) {
	t.Helper()
	require.Equal(t, len(want), len(got), msg)
	for i := range want {
		if math.Abs(want[i]-got[i]) > tol*math.Max(1, math.Abs(want[i])) {
			t.Fatalf("%s: element %d: want %.12g, got %.12g", msg, i, want[i], got[i])
		}
	}
}

// refNorm is the independent reference for both norms in float64.
func refNorm(x, w, b []float64, d int, eps float64, rms bool) []float64 {
	out := make([]float64, len(x))
	for r := 0; r < len(x)/d; r++ {
		row := x[r*d : (r+1)*d]
		mean := 0.0
		if !rms {
			for _, v := range row {
				mean += v
			}
			mean /= float64(d)
		}
		ss := 0.0
		for _, v := range row {
			ss += (v - mean) * (v - mean)
		}
		inv := 1 / math.Sqrt(ss/float64(d)+eps)
		for i, v := range row {
			y := (v - mean) * inv
			if w != nil {
				y *= w[i]
			}
			if b != nil {
				y += b[i]
			}
			out[r*d+i] = y
		}
	}
	return out
}

var normShapes = [][]int{{1, 1}, {7}, {3, 33}, {2, 5, 127}, {0, 8}}

func TestNormsMatchReference(t *testing.T) {
	for _, sh := range normShapes {
		d := sh[len(sh)-1]
		x := rnd(1, -2, 2, sh...)
		w := rnd(2, 0.5, 1.5, d)
		b := rnd(3, -1, 1, d)
		near(t, refNorm(x.Float64s(), w.Float64s(), nil, d, 1e-5, true), RMSNormOp(x, w, 1e-5).Float64s(), 1e-12, "rms")
		near(t, refNorm(x.Float64s(), nil, nil, d, 1e-5, true), RMSNormOp(x, nil, 1e-5).Float64s(), 1e-12, "rms no gain")
		near(t, refNorm(x.Float64s(), w.Float64s(), b.Float64s(), d, 1e-5, false), LayerNormOp(x, w, b, 1e-5).Float64s(), 1e-12, "layer")
		near(t, refNorm(x.Float64s(), nil, nil, d, 1e-5, false), LayerNormOp(x, nil, nil, 1e-5).Float64s(), 1e-12, "layer plain")
		// float32 path
		x32, w32, b32 := ad.Cast(x, ad.Float32), ad.Cast(w, ad.Float32), ad.Cast(b, ad.Float32)
		got := ad.Cast(LayerNormOp(x32, w32, b32, 1e-5), ad.Float64).Float64s()
		near(t, refNorm(x.Float64s(), w.Float64s(), b.Float64s(), d, 1e-5, false), got, 2e-5, "layer f32")
	}
}

func TestNormGradients(t *testing.T) {
	for _, sh := range [][]int{{1, 1}, {7}, {3, 5}, {2, 33}, {1, 127}} {
		d := sh[len(sh)-1]
		x := rnd(4, -2, 2, sh...)
		w := rnd(5, 0.5, 1.5, d)
		b := rnd(6, -1, 1, d)
		assert.NoError(t, ad.GradCheck{}.Check(func(in []*ad.Tensor) *ad.Tensor { return RMSNormOp(in[0], in[1], 1e-5) }, x, w), "rms %v", sh)
		assert.NoError(t, ad.GradCheck{}.Check(func(in []*ad.Tensor) *ad.Tensor { return RMSNormOp(in[0], nil, 1e-5) }, x), "rms no gain %v", sh)
		if d > 1 { // a one-element LayerNorm is constant: its gradient is 0 (checked below)
			assert.NoError(t, ad.GradCheck{}.Check(func(in []*ad.Tensor) *ad.Tensor { return LayerNormOp(in[0], in[1], in[2], 1e-5) }, x, w, b), "layer %v", sh)
		}
	}
}

func TestLinearMatchesMatMulAndGradients(t *testing.T) {
	for _, c := range []struct {
		shape []int
		out   int
		bias  bool
	}{
		{[]int{1, 1}, 1, true}, {[]int{7, 3}, 5, true}, {[]int{2, 3, 33}, 7, false}, {[]int{0, 4}, 3, true}, {[]int{4, 127}, 2, true},
	} {
		in := c.shape[len(c.shape)-1]
		x := rnd(7, -1, 1, c.shape...)
		w := rnd(8, -1, 1, c.out, in)
		var b *ad.Tensor
		if c.bias {
			b = rnd(9, -1, 1, c.out)
		}
		want := ad.MatMulT(x, w, false, true)
		if b != nil {
			want = ad.Add(want, b)
		}
		near(t, want.Float64s(), LinearOp(x, w, b).Float64s(), 1e-12, "linear")
		if x.Len() == 0 {
			continue
		}
		f := func(in []*ad.Tensor) *ad.Tensor {
			if c.bias {
				return LinearOp(in[0], in[1], in[2])
			}
			return LinearOp(in[0], in[1], nil)
		}
		inputs := []*ad.Tensor{x, w}
		if c.bias {
			inputs = append(inputs, b)
		}
		assert.NoError(t, ad.GradCheck{}.Check(f, inputs...), "%v", c)
	}
}

func TestSwiGLUFusedEqualsComposition(t *testing.T) {
	for _, n := range []int{1, 7, 33, 127} {
		g := rnd(10, -3, 3, 2, n)
		u := rnd(11, -3, 3, 2, n)
		near(t, ad.Mul(ad.SiLU(g), u).Float64s(), SwiGLUOp(g, u).Float64s(), 1e-14, "swiglu")
		// backward of the fused op equals backward of the composition
		fused, comp := gradsOf(func(in []*ad.Tensor) *ad.Tensor { return SwiGLUOp(in[0], in[1]) }, g, u),
			gradsOf(func(in []*ad.Tensor) *ad.Tensor { return ad.Mul(ad.SiLU(in[0]), in[1]) }, g, u)
		for i := range fused {
			near(t, comp[i], fused[i], 1e-13, "swiglu grad")
		}
		assert.NoError(t, ad.GradCheck{}.Check(func(in []*ad.Tensor) *ad.Tensor { return SwiGLUOp(in[0], in[1]) }, g, u))
	}
}

// gradsOf returns the gradients of Σ f(inputs)·r for a fixed r.
func gradsOf(f func([]*ad.Tensor) *ad.Tensor, inputs ...*ad.Tensor) [][]float64 {
	tp := ad.NewTape()
	defer tp.Release()
	w := make([]*ad.Tensor, len(inputs))
	for i, x := range inputs {
		w[i] = tp.Watch(x)
	}
	out := f(w)
	seed := ad.RandNormal(ad.NewRNG(99), out.DType(), 0, 1, out.Shape()...)
	tp.BackwardWith(out, seed)
	res := make([][]float64, len(inputs))
	for i, x := range inputs {
		res[i] = tp.Grad(x).Float64Values()
	}
	return res
}

func TestRMSNormLinearFusedEqualsComposition(t *testing.T) {
	for _, sh := range [][]int{{1, 1}, {3, 7}, {2, 4, 33}} {
		in := sh[len(sh)-1]
		x := rnd(12, -2, 2, sh...)
		gain := rnd(13, 0.5, 1.5, in)
		w := rnd(14, -1, 1, 5, in)
		comp := func(a []*ad.Tensor) *ad.Tensor { return LinearOp(RMSNormOp(a[0], a[1], 1e-6), a[2], nil) }
		fused := func(a []*ad.Tensor) *ad.Tensor { return RMSNormLinearOp(a[0], a[1], a[2], 1e-6) }
		near(t, comp([]*ad.Tensor{x, gain, w}).Float64s(), fused([]*ad.Tensor{x, gain, w}).Float64s(), 1e-12, "rms+linear")
		gf, gc := gradsOf(fused, x, gain, w), gradsOf(comp, x, gain, w)
		for i := range gf {
			near(t, gc[i], gf[i], 1e-11, "rms+linear grad")
		}
		assert.NoError(t, ad.GradCheck{}.Check(fused, x, gain, w))
	}
}

func TestMLPGradientsAndNames(t *testing.T) {
	rng := ad.NewRNG(1)
	for _, act := range []Activation{ActGELU, ActGELUTanh, ActSiLU, ActSwiGLU} {
		m := NewMLP(rng, ad.Float64, 6, 10, act, true, Init{})
		x := rnd(15, -1, 1, 2, 3, 6)
		params := m.Params("model.layers.0.mlp.")
		names := []string{}
		for _, p := range params {
			names = append(names, p.Name)
		}
		if act == ActSwiGLU {
			assert.Contains(t, names, "model.layers.0.mlp.gate_proj.weight")
		}
		assert.Contains(t, names, "model.layers.0.mlp.down_proj.bias")
		f := func(in []*ad.Tensor) *ad.Tensor {
			tp := in[0].Tape()
			return m.Forward(&Ctx{Tape: tp}, in[0])
		}
		assert.NoError(t, ad.GradCheck{}.Check(f, x), string(act))
		// parameter gradients: through a tape watching every parameter
		tp := ad.NewTape()
		c := &Ctx{Tape: tp}
		y := m.Forward(c, x)
		tp.BackwardWith(y, ad.Full(ad.Float64, 1, y.Shape()...))
		for _, p := range params {
			assert.NotNil(t, tp.Grad(p.Value), p.Name)
		}
		tp.Release()
	}
}

func TestMLPParamGradientsByFiniteDifferences(t *testing.T) {
	m := NewMLP(ad.NewRNG(3), ad.Float64, 4, 6, ActSwiGLU, false, Init{Std: 0.5})
	x := rnd(16, -1, 1, 3, 4)
	f := func(in []*ad.Tensor) *ad.Tensor {
		mm := &MLP{Act: ActSwiGLU, Gate: &Linear{Weight: in[1]}, Up: &Linear{Weight: in[2]}, Down: &Linear{Weight: in[3]}}
		return mm.Forward(nil, in[0])
	}
	assert.NoError(t, ad.GradCheck{}.Check(f, x, m.Gate.Weight, m.Up.Weight, m.Down.Weight))
}

func TestEmbeddingAndTiedHead(t *testing.T) {
	e := NewEmbedding(ad.NewRNG(2), ad.Float64, 11, 4, 0)
	ids := ad.FromInt32([]int32{3, 0, 10, 3}, 2, 2)
	y := e.Forward(nil, ids)
	assert.Equal(t, []int{2, 2, 4}, y.Shape())
	near(t, e.Weight.Float64s()[12:16], y.Float64s()[0:4], 0, "row 3")
	logits := e.AsHead(nil, y)
	assert.Equal(t, []int{2, 2, 11}, logits.Shape())
	// logit of the token itself is its squared norm
	sq := 0.0
	for _, v := range e.Weight.Float64s()[12:16] {
		sq += v * v
	}
	assert.InDelta(t, sq, logits.Float64s()[3], 1e-12)
}

func TestLoRA(t *testing.T) {
	rng := ad.NewRNG(4)
	base := NewLinear(rng, ad.Float64, 6, 5, true, Init{})
	x := rnd(17, -1, 1, 3, 6)
	before := base.Forward(nil, x).Float64s()
	names, err := AttachLoRA(rng, []NamedLinear{{"model.layers.0.self_attn.q_proj", base}, {"model.layers.0.mlp.up_proj", NewLinear(rng, ad.Float64, 2, 2, false, Init{})}}, LoRAConfig{Rank: 2, Scale: 2, Keys: []string{"q_proj"}})
	require.NoError(t, err)
	assert.Equal(t, []string{"model.layers.0.self_attn.q_proj"}, names)
	near(t, before, base.Forward(nil, x).Float64s(), 1e-15, "zero B changes nothing")
	copy(base.LoRA.B.Float64s(), rnd(18, -1, 1, 2, 5).Float64s())
	adapted := base.Forward(nil, x).Float64s()
	// reference: x·Wᵀ + b + 2·(x·A)·B
	ref := ad.Add(ad.Add(ad.MatMulT(x, base.Weight, false, true), base.Bias), ad.MulScalar(ad.MatMul(ad.MatMul(x, base.LoRA.A), base.LoRA.B), 2))
	near(t, ref.Float64s(), adapted, 1e-12, "adapter")
	ps := base.Params("q.")
	assert.Equal(t, "q.lora_a", ps[2].Name)
	f := func(in []*ad.Tensor) *ad.Tensor {
		l := &Linear{Weight: base.Weight, Bias: base.Bias, LoRA: &LoRA{A: in[1], B: in[2], Scale: 2}}
		return l.Forward(nil, in[0])
	}
	assert.NoError(t, ad.GradCheck{}.Check(f, x, base.LoRA.A, base.LoRA.B))
	base.Merge()
	assert.Nil(t, base.LoRA)
	near(t, adapted, base.Forward(nil, x).Float64s(), 1e-12, "merged weights give the adapted output")

	_, err = AttachLoRA(rng, []NamedLinear{{"a.k_proj", base}}, LoRAConfig{Rank: 2, Keys: []string{"v_proj"}})
	assert.ErrorContains(t, err, "match no linear")
	_, err = AttachLoRA(rng, nil, LoRAConfig{Rank: 0})
	assert.Error(t, err)
	assert.True(t, MatchesLoRAKey("model.layers.1.self_attn.v_proj", []string{"model.layers.*.self_attn.v_proj"}))
}

func TestDropoutModule(t *testing.T) {
	x := rnd(19, 1, 2, 1000)
	assert.Same(t, x, Dropout{P: 0.5}.Forward(nil, x), "eval: identity")
	y := Dropout{P: 0.5}.Forward(&Ctx{Train: true, RNG: ad.NewRNG(1)}, x)
	zeros := 0
	for i, v := range y.Float64s() {
		if v == 0 {
			zeros++
		} else {
			assert.InDelta(t, 2*x.Float64s()[i], v, 1e-12)
		}
	}
	assert.InDelta(t, 500, zeros, 80)
	assert.Panics(t, func() { Dropout{P: 0.5}.Forward(&Ctx{Train: true}, x) })
}
