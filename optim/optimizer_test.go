package optim

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/internal/vecmath"
	"github.com/mlxtrain/mlxtrain/metal"
)

// The references below are written from the papers' and PyTorch's formulas, one
// element at a time in float64, without sharing code with the kernels.

// refParam is one parameter as the reference sees it.
type refParam struct {
	name  string
	shape []int
	decay bool // what the default mask should say
	p     []float64
	state map[string][]float64
	t     int
}

// refRule applies one update to r with gradient g.
type refRule func(r *refParam, g []float64, lr float64)

func refAdam(b1, b2, eps, wd float64, decoupled bool) refRule {
	return func(r *refParam, g []float64, lr float64) {
		r.t++
		m, v := r.state["exp_avg"], r.state["exp_avg_sq"]
		for i := range r.p {
			grad := g[i]
			if r.decay {
				if decoupled {
					r.p[i] -= lr * wd * r.p[i]
				} else {
					grad += wd * r.p[i]
				}
			}
			m[i] = b1*m[i] + (1-b1)*grad
			v[i] = b2*v[i] + (1-b2)*grad*grad
			mHat := m[i] / (1 - math.Pow(b1, float64(r.t)))
			vHat := v[i] / (1 - math.Pow(b2, float64(r.t)))
			r.p[i] -= lr * mHat / (math.Sqrt(vHat) + eps)
		}
	}
}

func refLion(b1, b2, wd float64) refRule {
	return func(r *refParam, g []float64, lr float64) {
		r.t++
		m := r.state["exp_avg"]
		for i := range r.p {
			if r.decay {
				r.p[i] *= 1 - lr*wd
			}
			c := b1*m[i] + (1-b1)*g[i]
			sign := 0.0
			if c > 0 {
				sign = 1
			} else if c < 0 {
				sign = -1
			}
			r.p[i] -= lr * sign
			m[i] = b2*m[i] + (1-b2)*g[i]
		}
	}
}

func refSGD(mu, damp, wd float64, nesterov bool) refRule {
	return func(r *refParam, g []float64, lr float64) {
		r.t++
		buf := r.state["momentum_buffer"]
		for i := range r.p {
			d := g[i]
			if r.decay {
				d += wd * r.p[i]
			}
			if mu != 0 {
				if r.t == 1 {
					buf[i] = d
				} else {
					buf[i] = mu*buf[i] + (1-damp)*d
				}
				if nesterov {
					d += mu * buf[i]
				} else {
					d = buf[i]
				}
			}
			r.p[i] -= lr * d
		}
	}
}

type optCase struct {
	name  string
	slots []string
	make  func([]Param, Schedule) (*Optimizer, error)
	ref   refRule
}

func optCases() []optCase {
	return []optCase{
		{"adam", []string{"exp_avg", "exp_avg_sq"},
			func(ps []Param, lr Schedule) (*Optimizer, error) {
				return NewAdam(ps, AdamConfig{LR: lr, Beta1: 0.8, Beta2: 0.95, Eps: 1e-6, WeightDecay: 0.1})
			}, refAdam(0.8, 0.95, 1e-6, 0.1, false)},
		{"adam defaults", []string{"exp_avg", "exp_avg_sq"},
			func(ps []Param, lr Schedule) (*Optimizer, error) { return NewAdam(ps, AdamConfig{LR: lr}) },
			refAdam(0.9, 0.999, 1e-8, 0, false)},
		{"adamw", []string{"exp_avg", "exp_avg_sq"},
			func(ps []Param, lr Schedule) (*Optimizer, error) {
				return NewAdamW(ps, AdamConfig{LR: lr, Beta1: 0.85, Beta2: 0.99, Eps: 1e-7, WeightDecay: 0.3})
			}, refAdam(0.85, 0.99, 1e-7, 0.3, true)},
		{"lion", []string{"exp_avg"},
			func(ps []Param, lr Schedule) (*Optimizer, error) {
				return NewLion(ps, LionConfig{LR: lr, WeightDecay: 0.5})
			}, refLion(0.9, 0.99, 0.5)},
		{"lion betas", []string{"exp_avg"},
			func(ps []Param, lr Schedule) (*Optimizer, error) {
				return NewLion(ps, LionConfig{LR: lr, Beta1: 0.5, Beta2: 0.7})
			}, refLion(0.5, 0.7, 0)},
		{"sgd", nil,
			func(ps []Param, lr Schedule) (*Optimizer, error) { return NewSGD(ps, SGDConfig{LR: lr}) },
			refSGD(0, 0, 0, false)},
		{"sgd decay", nil,
			func(ps []Param, lr Schedule) (*Optimizer, error) {
				return NewSGD(ps, SGDConfig{LR: lr, WeightDecay: 0.2})
			}, refSGD(0, 0, 0.2, false)},
		{"sgd momentum dampening", []string{"momentum_buffer"},
			func(ps []Param, lr Schedule) (*Optimizer, error) {
				return NewSGD(ps, SGDConfig{LR: lr, Momentum: 0.9, Dampening: 0.3, WeightDecay: 0.05})
			}, refSGD(0.9, 0.3, 0.05, false)},
		{"sgd nesterov", []string{"momentum_buffer"},
			func(ps []Param, lr Schedule) (*Optimizer, error) {
				return NewSGD(ps, SGDConfig{LR: lr, Momentum: 0.7, Nesterov: true, WeightDecay: 0.1})
			}, refSGD(0.7, 0, 0.1, true)},
	}
}

// testParams are shaped and named to exercise the default decay mask.
func testParams(rng *rand.Rand, dtype autodiff.DType) ([]Param, []*refParam) {
	specs := []struct {
		name  string
		shape []int
		decay bool
	}{
		{"model.layers.0.mlp.up_proj.weight", []int{3, 5}, true},
		{"model.layers.0.mlp.up_proj.bias", []int{5}, false},
		{"model.layers.0.input_layernorm.weight", []int{7}, false},
		{"model.embed_tokens.weight", []int{4, 3}, false},
		{"lm_head.weight", []int{2, 33}, true},
		{"model.scale", []int{}, false},
	}
	var ps []Param
	var refs []*refParam
	for _, s := range specs {
		n := 1
		for _, d := range s.shape {
			n *= d
		}
		vals := make([]float64, n)
		for i := range vals {
			vals[i] = rng.Float64()*2 - 1
		}
		t := autodiff.Empty(dtype, s.shape...)
		setValues(t, vals)
		ps = append(ps, Param{Name: s.name, Value: t})
		refs = append(refs, &refParam{name: s.name, shape: s.shape, decay: s.decay, p: t.Float64Values(), state: map[string][]float64{}})
	}
	return ps, refs
}

func setValues(t *autodiff.Tensor, vals []float64) {
	if t.DType() == autodiff.Float32 {
		for i, v := range vals {
			t.Float32s()[i] = float32(v)
		}
		return
	}
	copy(t.Float64s(), vals)
}

// randGrads makes gradients for the parameters; param skip gets nil.
func randGrads(rng *rand.Rand, ps []Param, skip int) []*autodiff.Tensor {
	gs := make([]*autodiff.Tensor, len(ps))
	for i, p := range ps {
		if i == skip {
			continue
		}
		vals := make([]float64, p.Value.Len())
		for j := range vals {
			vals[j] = rng.NormFloat64()
		}
		gs[i] = autodiff.Empty(p.Value.DType(), p.Value.Shape()...)
		setValues(gs[i], vals)
	}
	return gs
}

func release(ts []*autodiff.Tensor) {
	for _, t := range ts {
		if t != nil {
			t.Release()
		}
	}
}

func TestOptimizersMatchReference(t *testing.T) {
	lrs := []float64{0.1, 0.05, 0.2, 0.02, 0.1, 0.07}
	sched := ScheduleFunc(func(s int) float64 { return lrs[s] })
	for _, dtype := range []autodiff.DType{autodiff.Float64, autodiff.Float32} {
		for _, c := range optCases() {
			t.Run(fmt.Sprintf("%s/%s", c.name, dtype), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(7, 11))
				ps, refs := testParams(rng, dtype)
				for _, r := range refs {
					for _, s := range c.slots {
						r.state[s] = make([]float64, len(r.p))
					}
				}
				opt, err := c.make(ps, sched)
				require.NoError(t, err)
				defer opt.Release()
				for i, r := range refs {
					assert.Equal(t, r.decay, opt.Decays(i), r.name)
				}
				for step := range lrs {
					// Parameter 1 gets no gradient on step 1, parameter 3 none before step 2.
					skip := -1
					switch {
					case step == 1:
						skip = 1
					case step < 2:
						skip = 3
					}
					gs := randGrads(rng, ps, skip)
					assert.Equal(t, lrs[step], opt.LearningRate())
					assert.Equal(t, lrs[step], opt.Step(gs))
					for i, r := range refs {
						if gs[i] != nil {
							c.ref(r, gs[i].Float64Values(), lrs[step])
						}
					}
					release(gs)
				}
				assert.Equal(t, len(lrs), opt.Steps())
				tol := 1e-12
				if dtype == autodiff.Float32 {
					tol = 2e-5
				}
				state := stateMap(opt)
				assert.Equal(t, float64(len(lrs)), state["step"].Item())
				for i, r := range refs {
					assertClose(t, r.p, ps[i].Value.Float64Values(), tol, r.name)
					assert.Equal(t, float64(r.t), state[r.name+".step"].Item(), r.name)
					for _, s := range c.slots {
						require.Contains(t, state, r.name+"."+s)
						assertClose(t, r.state[s], state[r.name+"."+s].Float64Values(), tol, r.name+"."+s)
					}
				}
				assert.Len(t, opt.State(), 1+len(ps)*(1+len(c.slots)))
			})
		}
	}
}

func stateMap(o *Optimizer) map[string]*autodiff.Tensor {
	m := map[string]*autodiff.Tensor{}
	for _, s := range o.State() {
		m[s.Name] = s.Value
	}
	return m
}

func assertClose(t *testing.T, want, got []float64, tol float64, what string) {
	t.Helper()
	require.Len(t, got, len(want), what)
	for i := range want {
		if math.Abs(want[i]-got[i]) > tol*(1+math.Abs(want[i])) {
			t.Errorf("%s[%d]: got %.10g, want %.10g", what, i, got[i], want[i])
			return
		}
	}
}

// A hand-computed AdamW step, so the formula is pinned down by numbers, not only
// by a second implementation: p=1, g=0.5, lr=0.1, wd=0.1, β=(0.9,0.999), eps=1e-8.
// Decay first: p = 1·(1−0.01) = 0.99. m = 0.05, v = 0.00025; m̂ = 0.5, v̂ = 0.25, so
// the update is 0.1·0.5/(0.5+1e-8) and p = 0.99 − 0.1·(1 − 2e-8) (to first order).
func TestAdamWHandStep(t *testing.T) {
	w := autodiff.FromFloat64([]float64{1, 1}, 1, 2)
	defer w.Release()
	opt, err := NewAdamW([]Param{{Name: "w", Value: w}}, AdamConfig{LR: Constant(0.1), WeightDecay: 0.1})
	require.NoError(t, err)
	defer opt.Release()
	g := autodiff.FromFloat64([]float64{0.5, -0.5}, 1, 2)
	defer g.Release()
	opt.Step([]*autodiff.Tensor{g})
	assert.InDelta(t, 0.99-0.1*(1-2e-8), w.At(0), 1e-15)
	assert.InDelta(t, 0.99+0.1*(1-2e-8), w.At(1), 1e-15)
	st := stateMap(opt)
	assert.InDelta(t, 0.05, st["w.exp_avg"].At(0), 1e-16)
	assert.InDelta(t, 0.00025, st["w.exp_avg_sq"].At(1), 1e-18)
}

func TestDefaultDecayMask(t *testing.T) {
	mat := autodiff.Zeros(autodiff.Float32, 2, 2)
	vec := autodiff.Zeros(autodiff.Float32, 2)
	defer mat.Release()
	defer vec.Release()
	cases := []struct {
		name string
		v    *autodiff.Tensor
		want bool
	}{
		{"model.layers.0.self_attn.q_proj.weight", mat, true},
		{"lm_head.weight", mat, true},
		{"model.layers.0.self_attn.q_proj.bias", mat, false},
		{"bias", mat, false},
		{"model.norm.weight", mat, false},
		{"model.layers.3.post_attention_layernorm.weight", mat, false},
		{"transformer.LayerNorm.weight", mat, false},
		{"model.embed_tokens.weight", mat, false},
		{"wte.Embedding", mat, false},
		{"model.layers.0.mlp.gate_proj.weight", vec, false},
		{"model.biased_gate.weight", mat, true},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, DefaultDecayMask(Param{Name: c.name, Value: c.v}), c.name)
	}
	assert.True(t, DecayAll(Param{Name: "x.bias", Value: vec}))
}

// A custom mask replaces the default, and masked parameters see no decay.
func TestCustomDecayMask(t *testing.T) {
	a := autodiff.FromFloat64([]float64{1, 2}, 2)
	b := autodiff.FromFloat64([]float64{1, 2}, 1, 2)
	defer a.Release()
	defer b.Release()
	ps := []Param{{Name: "a", Value: a}, {Name: "b", Value: b}}
	onlyA := func(p Param) bool { return p.Name == "a" }
	opt, err := NewSGD(ps, SGDConfig{LR: Constant(0.5), WeightDecay: 0.1, DecayMask: onlyA})
	require.NoError(t, err)
	defer opt.Release()
	zero := autodiff.Zeros(autodiff.Float64, 2)
	zero2 := autodiff.Zeros(autodiff.Float64, 1, 2)
	defer zero.Release()
	defer zero2.Release()
	opt.Step([]*autodiff.Tensor{zero, zero2})
	// With a zero gradient only decay moves a parameter: p − lr·wd·p.
	assert.Equal(t, []float64{1 - 0.05, 2 - 0.1}, a.Float64Values())
	assert.Equal(t, []float64{1, 2}, b.Float64Values())
}

func TestNilGradsSkipped(t *testing.T) {
	for _, c := range optCases() {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, 4))
			ps, _ := testParams(rng, autodiff.Float32)
			opt, err := c.make(ps, Constant(0.1))
			require.NoError(t, err)
			defer opt.Release()
			gs := randGrads(rng, ps, -1)
			opt.Step(gs)
			release(gs)
			before := snapshot(ps, opt)
			gs = randGrads(rng, ps, 2)
			opt.Step(gs)
			release(gs)
			after := snapshot(ps, opt)
			name := ps[2].Name
			for k, v := range before {
				if k == "step" {
					assert.NotEqual(t, v, after[k])
					continue
				}
				if k == name || strings.HasPrefix(k, name+".") {
					assert.Equal(t, v, after[k], k)
				} else {
					assert.NotEqual(t, v, after[k], k)
				}
			}
			// All gradients nil: only the step counter moves.
			before = snapshot(ps, opt)
			opt.Step(make([]*autodiff.Tensor, len(ps)))
			after = snapshot(ps, opt)
			for k, v := range before {
				if k != "step" {
					assert.Equal(t, v, after[k], k)
				}
			}
		})
	}
}

// snapshot copies the bytes of every parameter and state tensor, by name.
func snapshot(ps []Param, o *Optimizer) map[string]string {
	m := map[string]string{}
	for _, p := range append(append([]Param(nil), ps...), o.State()...) {
		m[p.Name] = string(p.Value.Bytes())
	}
	return m
}

func TestStepPanicsOnMismatch(t *testing.T) {
	w := autodiff.Zeros(autodiff.Float32, 2, 3)
	b := autodiff.Zeros(autodiff.Float32, 3)
	defer w.Release()
	defer b.Release()
	opt, err := NewAdamW([]Param{{Name: "w", Value: w}, {Name: "b", Value: b}}, AdamConfig{LR: Constant(1)})
	require.NoError(t, err)
	defer opt.Release()
	good := autodiff.Full(autodiff.Float32, 1, 2, 3)
	wrongShape := autodiff.Zeros(autodiff.Float32, 3, 2)
	wrongType := autodiff.Zeros(autodiff.Float64, 3)
	defer release([]*autodiff.Tensor{good, wrongShape, wrongType})
	assert.PanicsWithValue(t, "optim: adamw: Step: 1 gradients for 2 parameters", func() { opt.Step([]*autodiff.Tensor{good}) })
	assert.Panics(t, func() { opt.Step([]*autodiff.Tensor{wrongShape, nil}) })
	assert.Panics(t, func() { opt.Step([]*autodiff.Tensor{good, wrongType}) })
	// Nothing was updated: validation precedes the first write.
	assert.Equal(t, make([]float64, 6), w.Float64Values())
	assert.Equal(t, 0, opt.Steps())
}

func TestConstructorErrors(t *testing.T) {
	w := autodiff.Zeros(autodiff.Float32, 2)
	i := autodiff.Zeros(autodiff.Int32, 2)
	defer w.Release()
	defer i.Release()
	lr := Constant(0.1)
	cases := []struct {
		name string
		make func() (*Optimizer, error)
		msg  string
	}{
		{"no lr", func() (*Optimizer, error) { return NewAdamW([]Param{{Name: "w", Value: w}}, AdamConfig{}) }, "no learning rate"},
		{"no name", func() (*Optimizer, error) { return NewAdamW([]Param{{Name: "", Value: w}}, AdamConfig{LR: lr}) }, "no name"},
		{"nil value", func() (*Optimizer, error) { return NewLion([]Param{{Name: "w", Value: nil}}, LionConfig{LR: lr}) }, "no tensor"},
		{"int param", func() (*Optimizer, error) { return NewSGD([]Param{{Name: "i", Value: i}}, SGDConfig{LR: lr}) }, "int32"},
		{"duplicate", func() (*Optimizer, error) {
			return NewAdam([]Param{{Name: "w", Value: w}, {Name: "w", Value: w}}, AdamConfig{LR: lr})
		}, "used twice"},
		{"shared storage", func() (*Optimizer, error) {
			return NewAdamW([]Param{{Name: "embed", Value: w}, {Name: "lm_head", Value: w}}, AdamConfig{LR: lr})
		}, "share storage"},
		{"beta1", func() (*Optimizer, error) { return NewAdamW(nil, AdamConfig{LR: lr, Beta1: 1}) }, "Beta1"},
		{"beta2", func() (*Optimizer, error) { return NewLion(nil, LionConfig{LR: lr, Beta2: -0.5}) }, "Beta2"},
		{"eps", func() (*Optimizer, error) { return NewAdam(nil, AdamConfig{LR: lr, Eps: -1}) }, "Eps"},
		{"decay", func() (*Optimizer, error) { return NewAdamW(nil, AdamConfig{LR: lr, WeightDecay: math.NaN()}) }, "WeightDecay"},
		{"momentum", func() (*Optimizer, error) { return NewSGD(nil, SGDConfig{LR: lr, Momentum: -1}) }, "Momentum"},
		{"dampening", func() (*Optimizer, error) { return NewSGD(nil, SGDConfig{LR: lr, Dampening: 2}) }, "Dampening"},
		{"nesterov", func() (*Optimizer, error) { return NewSGD(nil, SGDConfig{LR: lr, Nesterov: true}) }, "Nesterov"},
		{"nesterov damp", func() (*Optimizer, error) {
			return NewSGD(nil, SGDConfig{LR: lr, Nesterov: true, Momentum: 0.9, Dampening: 0.1})
		}, "Nesterov"},
	}
	for _, c := range cases {
		o, err := c.make()
		assert.Nil(t, o, c.name)
		if assert.Error(t, err, c.name) {
			assert.Contains(t, err.Error(), c.msg, c.name)
		}
	}
}

// Saving the state after k steps, loading it into a fresh optimizer over copies
// of the parameters and continuing must give exactly the bytes that training
// without the interruption gives.
func TestStateRoundTripIsExact(t *testing.T) {
	const before, after = 3, 4
	sched := CosineDecay{Init: 0.1, Final: 0.01, Steps: before + after}
	for _, dtype := range []autodiff.DType{autodiff.Float32, autodiff.Float64} {
		for _, c := range optCases() {
			t.Run(fmt.Sprintf("%s/%s", c.name, dtype), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(5, 6))
				ps, _ := testParams(rng, dtype)
				var grads [][]*autodiff.Tensor
				for k := range before + after {
					grads = append(grads, randGrads(rng, ps, k%len(ps)))
				}
				defer func() {
					for _, g := range grads {
						release(g)
					}
				}()
				a, err := c.make(ps, sched)
				require.NoError(t, err)
				defer a.Release()
				for k := range before {
					a.Step(grads[k])
				}
				// "Save": copies of the parameters and of the state, as a checkpoint holds them.
				saved := cloneParams(a.State())
				psB := cloneParams(ps)
				defer releaseParams(saved)
				defer releaseParams(psB)

				b, err := c.make(psB, sched)
				require.NoError(t, err)
				defer b.Release()
				require.NoError(t, b.LoadState(saved))
				assert.Equal(t, before, b.Steps())
				for k := before; k < before+after; k++ {
					assert.Equal(t, a.Step(grads[k]), b.Step(grads[k]))
				}
				for i := range ps {
					assert.True(t, bytes.Equal(ps[i].Value.Bytes(), psB[i].Value.Bytes()), ps[i].Name)
				}
				sa, sb := a.State(), b.State()
				require.Equal(t, len(sa), len(sb))
				for i := range sa {
					assert.Equal(t, sa[i].Name, sb[i].Name)
					assert.True(t, bytes.Equal(sa[i].Value.Bytes(), sb[i].Value.Bytes()), sa[i].Name)
				}
			})
		}
	}
}

func cloneParams(ps []Param) []Param {
	out := make([]Param, len(ps))
	for i, p := range ps {
		out[i] = Param{Name: p.Name, Value: p.Value.Clone()}
	}
	return out
}

func releaseParams(ps []Param) {
	for _, p := range ps {
		p.Value.Release()
	}
}

func TestLoadStateValidates(t *testing.T) {
	w := autodiff.Zeros(autodiff.Float32, 2, 3)
	b := autodiff.Zeros(autodiff.Float32, 3)
	defer w.Release()
	defer b.Release()
	ps := []Param{{Name: "w", Value: w}, {Name: "b", Value: b}}
	opt, err := NewAdamW(ps, AdamConfig{LR: Constant(0.1)})
	require.NoError(t, err)
	defer opt.Release()
	good := cloneParams(opt.State())
	defer releaseParams(good)
	for _, s := range good {
		if s.Value.DType() == autodiff.Float32 {
			s.Value.Fill(0.25)
		}
	}
	good[0].Value.Int32s()[0] = 9
	good[1].Value.Int32s()[0] = 4

	f64 := autodiff.Zeros(autodiff.Float64, 2, 3)
	bad := autodiff.Zeros(autodiff.Float32, 3, 2)
	neg := autodiff.FromInt32([]int32{-1})
	big := autodiff.Full(autodiff.Int32, 10)
	defer release([]*autodiff.Tensor{f64, bad, neg, big})
	replace := func(name string, v *autodiff.Tensor) []Param {
		out := append([]Param(nil), good...)
		for i := range out {
			if out[i].Name == name {
				out[i].Value = v
			}
		}
		return out
	}
	lion, err := NewLion(ps, LionConfig{LR: Constant(0.1)})
	require.NoError(t, err)
	defer lion.Release()
	cases := []struct {
		name  string
		state []Param
		msg   string
	}{
		{"missing", good[1:], `"step" is missing`},
		{"extra", append(append([]Param(nil), good...), Param{Name: "x.exp_avg", Value: bad}), `"x.exp_avg" is not state`},
		{"duplicate", append(append([]Param(nil), good...), good[2]), "appears twice"},
		{"dtype", replace("w.exp_avg", f64), `"w.exp_avg" is float64 [2 3], want float32 [2 3]`},
		{"shape", replace("w.exp_avg_sq", bad), `"w.exp_avg_sq" is float32 [3 2], want float32 [2 3]`},
		{"negative count", replace("b.step", neg), `"b.step" is -1`},
		{"count past step", replace("w.step", big), `"w.step" is 10`},
		{"nil", replace("b.exp_avg", nil), `"b.exp_avg" has no tensor`},
		{"other kind", lion.State(), `"w.exp_avg_sq" is missing`},
	}
	for _, c := range cases {
		err := opt.LoadState(c.state)
		if assert.Error(t, err, c.name) {
			assert.Contains(t, err.Error(), c.msg, c.name)
			assert.Contains(t, err.Error(), "optim: adamw: LoadState: ", c.name)
		}
		// A failed load changes nothing.
		assert.Equal(t, 0, opt.Steps(), c.name)
		assert.Equal(t, 0.0, stateMap(opt)["w.exp_avg"].At(0), c.name)
	}
	require.NoError(t, opt.LoadState(good))
	assert.Equal(t, 9, opt.Steps())
	st := stateMap(opt)
	assert.Equal(t, 4.0, st["w.step"].Item())
	assert.Equal(t, 0.25, st["b.exp_avg_sq"].At(2))
}

// The update kernels are element-wise, so any split across workers gives the same
// bits.
func TestKernelsIndependentOfThreads(t *testing.T) {
	defer metal.SetThreads(metal.Threads())
	const n = 3*grain + 17
	rng := rand.New(rand.NewPCG(1, 1))
	fill := func() []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		return x
	}
	p, g, m, v := fill(), fill(), fill(), fill()
	for i := range v {
		v[i] *= v[i]
	}
	run := func(threads int) [][]float32 {
		metal.SetThreads(threads)
		pp, mm, vv := append([]float32(nil), p...), append([]float32(nil), m...), append([]float32(nil), v...)
		AdamWKernel(pp, g, mm, vv, 1e-3, 0.9, 0.95, 1e-8, 0.1, 0.19, 0.0975)
		pl, ml := append([]float32(nil), p...), append([]float32(nil), m...)
		lionKernel(pl, g, ml, 1e-3, 0.9, 0.99, 0.1)
		ps, bs := append([]float32(nil), p...), append([]float32(nil), m...)
		sgdKernel(ps, g, bs, 1e-2, 0.9, 0.1, 0.01, false, false)
		return [][]float32{pp, mm, vv, pl, ml, ps, bs}
	}
	one, four := run(1), run(4)
	for k := range one {
		assert.Equal(t, one[k], four[k], k)
	}
}

func TestGradsFromTape(t *testing.T) {
	w := autodiff.FromFloat64([]float64{1, 2, 3}, 3)
	unused := autodiff.FromFloat64([]float64{4}, 1)
	defer w.Release()
	defer unused.Release()
	ps := []Param{{Name: "w", Value: w}, {Name: "unused", Value: unused}}
	tp := autodiff.NewTape()
	defer tp.Release()
	ww := tp.Watch(w)
	tp.Watch(unused)
	sq := autodiff.Mul(ww, ww)
	tp.BackwardWith(sq, autodiff.Full(autodiff.Float64, 1, 3))
	gs := Grads(tp, ps)
	require.NotNil(t, gs[0])
	assert.Equal(t, []float64{2, 4, 6}, gs[0].Float64Values())
	assert.Nil(t, gs[1])
}

// The AVX path computes the same operations in the same order as the Go loop, so
// it must agree bit for bit, edge values included.
func TestAdamWAsmMatchesGo(t *testing.T) {
	if !vecmath.AVX {
		t.Skip("no AVX path on this machine")
	}
	rng := rand.New(rand.NewPCG(4, 2))
	special := []float32{0, float32(math.Copysign(0, -1)), 1e-40, -1e-40, 3e38, -3e38, 1e-20, float32(math.Inf(1))}
	for _, n := range []int{0, 1, 7, 8, 9, 33, 127, 1000, 2*grain + 13} {
		fill := func(nonNeg bool) []float32 {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(9)-4)))
				if i%11 == 5 {
					x[i] = special[rng.IntN(len(special))]
				}
				if nonNeg {
					x[i] = float32(math.Abs(float64(x[i])))
				}
			}
			return x
		}
		p, g, m, v := fill(false), fill(false), fill(false), fill(true)
		c := adamwConsts{stepSize: 1e-3 / 0.19, b1: 0.9, c1: 0.1, b2: 0.95, c2: 0.05, eps: 1e-8, rbc2: 1 / float32(math.Sqrt(0.0975)), decay: 1 - 1e-4}
		pa, ma, va := append([]float32(nil), p...), append([]float32(nil), m...), append([]float32(nil), v...)
		if n < grain {
			adamwRangeAVX(pa, g, ma, va, c)
		} else { // the whole kernel: blocks of 8 across workers, then the tail
			bc1, bc2 := float32(0.19), float32(0.0975)
			lr := c.stepSize * bc1
			c.stepSize, c.rbc2, c.decay = lr/bc1, 1/float32(math.Sqrt(float64(bc2))), 1-lr*0.1
			c.c1, c.c2 = 1-c.b1, 1-c.b2
			AdamWKernel(pa, g, ma, va, lr, c.b1, c.b2, c.eps, 0.1, bc1, bc2)
		}
		adamwRange(p, g, m, v, c.stepSize, c.b1, c.c1, c.b2, c.c2, c.eps, c.rbc2, c.decay)
		for i := range p {
			for _, pair := range [][2]float32{{p[i], pa[i]}, {m[i], ma[i]}, {v[i], va[i]}} {
				if math.Float32bits(pair[0]) != math.Float32bits(pair[1]) && !(pair[0] != pair[0] && pair[1] != pair[1]) {
					t.Fatalf("n=%d element %d: go %v, asm %v", n, i, pair[0], pair[1])
				}
			}
		}
	}
}
