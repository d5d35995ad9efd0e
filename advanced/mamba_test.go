package advanced

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	ad "github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/layers"
	"github.com/mlxtrain/mlxtrain/metal"
)

func silu(v float64) float64 { return v / (1 + math.Exp(-v)) }

func softplus(v float64) float64 {
	if v > 20 {
		return v
	}
	return math.Log1p(math.Exp(v))
}

// refMamba is the block written out with loops from its parameters by name.
func refMamba(p map[string][]float64, cfg MambaConfig, u []float64, B, L int) []float64 {
	Dm, E, N, R, K := cfg.DModel, cfg.Inner(), cfg.DState, cfg.DTRank, cfg.DConv
	lin := func(w, bias, x []float64, in, out int) []float64 {
		y := make([]float64, out)
		for o := range out {
			if bias != nil {
				y[o] = bias[o]
			}
			for i := range in {
				y[o] += w[o*in+i] * x[i]
			}
		}
		return y
	}
	out := make([]float64, B*L*Dm)
	for b := range B {
		xs, zs := make([][]float64, L), make([][]float64, L)
		for t := range L {
			xz := lin(p["in_proj.weight"], p["in_proj.bias"], u[(b*L+t)*Dm:(b*L+t+1)*Dm], Dm, 2*E)
			xs[t], zs[t] = xz[:E], xz[E:]
		}
		h := make([]float64, E*N)
		for t := range L {
			xa := make([]float64, E)
			for e := range E {
				s := p["conv1d.bias"][e]
				for j := range K {
					if ti := t - (K - 1) + j; ti >= 0 {
						s += p["conv1d.weight"][e*K+j] * xs[ti][e]
					}
				}
				xa[e] = silu(s)
			}
			xdbl := lin(p["x_proj.weight"], nil, xa, E, R+2*N)
			dt := lin(p["dt_proj.weight"], p["dt_proj.bias"], xdbl[:R], R, E)
			bv, cv := xdbl[R:R+N], xdbl[R+N:]
			gated := make([]float64, E)
			for e := range E {
				d := softplus(dt[e])
				y := p["D"][e] * xa[e]
				for n := range N {
					a := -math.Exp(p["A_log"][e*N+n])
					h[e*N+n] = math.Exp(d*a)*h[e*N+n] + d*bv[n]*xa[e]
					y += cv[n] * h[e*N+n]
				}
				gated[e] = y * silu(zs[t][e])
			}
			copy(out[(b*L+t)*Dm:], lin(p["out_proj.weight"], p["out_proj.bias"], gated, E, Dm))
		}
	}
	return out
}

func paramValues(m *Mamba) map[string][]float64 {
	out := map[string][]float64{}
	for _, p := range m.Params("") {
		out[p.Name] = p.Value.Float64Values()
	}
	return out
}

func randInput(rng *ad.RNG, dtype ad.DType, shape ...int) *ad.Tensor {
	return ad.RandNormal(rng, dtype, 0, 1, shape...)
}

func TestMambaMatchesReferenceAndNames(t *testing.T) {
	cfg := MambaConfig{DModel: 6, DState: 4, DConv: 3, Bias: true}
	m, err := NewMamba(ad.NewRNG(1), ad.Float64, cfg)
	require.NoError(t, err)
	c := m.Config
	assert.Equal(t, MambaConfig{DModel: 6, DState: 4, DConv: 3, Expand: 2, DTRank: 1, DTMin: 0.001, DTMax: 0.1, DTInitFloor: 1e-4, Bias: true}, c)
	shapes := map[string][]int{}
	var names []string
	for _, p := range m.Params("mixer.") {
		names = append(names, p.Name)
		shapes[p.Name] = p.Value.Shape()
	}
	assert.Equal(t, []string{"mixer.in_proj.weight", "mixer.in_proj.bias", "mixer.conv1d.weight", "mixer.conv1d.bias", "mixer.x_proj.weight",
		"mixer.dt_proj.weight", "mixer.dt_proj.bias", "mixer.A_log", "mixer.D", "mixer.out_proj.weight", "mixer.out_proj.bias"}, names)
	assert.Equal(t, []int{24, 6}, shapes["mixer.in_proj.weight"])
	assert.Equal(t, []int{12, 1, 3}, shapes["mixer.conv1d.weight"])
	assert.Equal(t, []int{9, 12}, shapes["mixer.x_proj.weight"])
	assert.Equal(t, []int{12, 1}, shapes["mixer.dt_proj.weight"])
	assert.Equal(t, []int{12, 4}, shapes["mixer.A_log"])
	assert.Equal(t, []int{6, 12}, shapes["mixer.out_proj.weight"])
	assert.Len(t, m.Linears(""), 4)

	// The initial values Mamba prescribes.
	p := paramValues(m)
	for e := range 12 {
		for n := range 4 {
			assert.InDelta(t, math.Log(float64(n+1)), p["A_log"][e*4+n], 1e-15)
		}
		assert.Equal(t, 1.0, p["D"][e])
		dt := softplus(p["dt_proj.bias"][e])
		assert.True(t, dt >= 0.001*(1-1e-9) && dt <= 0.1*(1+1e-9), "softplus(dt bias) = %g", dt)
		assert.LessOrEqual(t, math.Abs(p["dt_proj.weight"][e]), 1.0)
		assert.LessOrEqual(t, math.Abs(p["conv1d.bias"][e]), 1/math.Sqrt(3))
	}
	// Biases are zero at first; give them values so the test sees them used.
	for _, name := range []string{"in_proj.bias", "out_proj.bias"} {
		b := ad.RandNormal(ad.NewRNG(7), ad.Float64, 0, 0.5, len(p[name]))
		layers.ParamMap(m)[name].CopyFrom(b)
	}
	p = paramValues(m)

	for _, L := range []int{1, 7, 33} {
		u := randInput(ad.NewRNG(uint64(L)), ad.Float64, 2, L, 6)
		want := refMamba(p, c, u.Float64s(), 2, L)
		got := m.Forward(nil, u)
		assertClose(t, want, got.Float64s(), 1e-11, fmt.Sprintf("L=%d", L))
	}
}

func TestMambaStepReproducesForward(t *testing.T) {
	for _, dtype := range []ad.DType{ad.Float64, ad.Float32} {
		// N = 16 takes the assembly path in float32 where the CPU has it.
		m, err := NewMamba(ad.NewRNG(2), dtype, MambaConfig{DModel: 8, DState: 16, Chunk: 4})
		require.NoError(t, err)
		const B, L = 2, 13
		u := randInput(ad.NewRNG(3), dtype, B, L, 8)
		want := m.Forward(nil, u).Float64Values()
		tol := 1e-12
		if dtype == ad.Float32 {
			tol = 2e-5
		}
		// Token by token.
		st := m.NewState(B)
		for tt := range L {
			xt := ad.Squeeze(ad.Slice(u, 1, tt, tt+1), 1)
			y := m.Step(nil, xt, st)
			for b := range B {
				assertClose(t, want[(b*L+tt)*8:(b*L+tt+1)*8], y.Float64Values()[b*8:(b+1)*8], tol, fmt.Sprintf("%s step %d", dtype, tt))
			}
		}
		st.Release()
		// A prompt in two prefills (shorter and longer than the conv state), then steps.
		st = m.NewState(B)
		var got []*ad.Tensor
		for _, r := range [][2]int{{0, 1}, {1, 9}} {
			got = append(got, m.Prefill(&layers.Ctx{}, ad.Slice(u, 1, r[0], r[1]), st))
		}
		for tt := 9; tt < L; tt++ {
			got = append(got, ad.ExpandDims(m.Step(nil, ad.Squeeze(ad.Slice(u, 1, tt, tt+1), 1), st), 1))
		}
		assertClose(t, want, ad.Concat(1, got...).Float64Values(), tol, fmt.Sprintf("%s prefill + steps", dtype))
		st.Release()
	}
}

func TestMambaGradients(t *testing.T) {
	m, err := NewMamba(ad.NewRNG(4), ad.Float64, MambaConfig{DModel: 4, DState: 3, DConv: 3, Chunk: 2, Bias: true})
	require.NoError(t, err)
	// Move every parameter off its structured initial value.
	rng := ad.NewRNG(5)
	for _, p := range m.Params("") {
		noise := ad.RandNormal(rng, ad.Float64, 0, 0.3, p.Value.Shape()...)
		sum := ad.Add(p.Value, noise)
		p.Value.CopyFrom(sum)
	}
	params := m.Params("")
	inputs := []*ad.Tensor{randInput(ad.NewRNG(6), ad.Float64, 2, 5, 4)}
	for _, p := range params {
		inputs = append(inputs, p.Value)
	}
	err = ad.GradCheck{Seed: 8, RTol: 1e-5, ATol: 1e-7}.Check(func(in []*ad.Tensor) *ad.Tensor {
		// A block whose parameters are the checked inputs.
		mm := *m
		mm.InProj = &layers.Linear{Weight: in[1], Bias: in[2]}
		mm.ConvWeight, mm.ConvBias = in[3], in[4]
		mm.XProj = &layers.Linear{Weight: in[5]}
		mm.DTProj = &layers.Linear{Weight: in[6], Bias: in[7]}
		mm.ALog, mm.D = in[8], in[9]
		mm.OutProj = &layers.Linear{Weight: in[10], Bias: in[11]}
		return mm.Forward(&layers.Ctx{Tape: in[0].Tape()}, in[0])
	}, inputs...)
	assert.NoError(t, err)
	require.Len(t, params, 11)
}

func TestMambaTrainingStepUsesTape(t *testing.T) {
	m, err := NewMamba(ad.NewRNG(9), ad.Float32, MambaConfig{DModel: 16})
	require.NoError(t, err)
	tp := ad.NewTape()
	defer tp.Release()
	c := &layers.Ctx{Tape: tp, Train: true}
	out := m.Forward(c, randInput(ad.NewRNG(10), ad.Float32, 2, 9, 16))
	tp.BackwardWith(out, ad.Full(ad.Float32, 1, out.Shape()...))
	for _, p := range m.Params("") {
		g := tp.Grad(p.Value)
		require.NotNil(t, g, p.Name)
		nonzero := false
		for _, v := range g.Float32s() {
			require.False(t, math.IsNaN(float64(v)), p.Name)
			nonzero = nonzero || v != 0
		}
		assert.True(t, nonzero, "%s has a gradient", p.Name)
	}
	assert.Panics(t, func() { m.Step(c, ad.Zeros(ad.Float32, 2, 16), m.NewState(2)) }, "Step refuses a tape")
}

func TestMambaInferenceReleasesIntermediates(t *testing.T) {
	m, err := NewMamba(ad.NewRNG(11), ad.Float32, MambaConfig{DModel: 16})
	require.NoError(t, err)
	u := randInput(ad.NewRNG(12), ad.Float32, 2, 9, 16)
	st := m.NewState(2)
	tok := ad.Zeros(ad.Float32, 2, 16)
	// Warm up, then the pooled bytes in use after a call are the output's alone.
	m.Forward(nil, u).Release()
	before := metal.HostPool.InUse()
	m.Forward(nil, u).Release()
	m.Prefill(nil, u, st).Release()
	m.Step(nil, tok, st).Release()
	one := ad.Zeros(ad.Float32, 2, 1, 16)
	m.Prefill(nil, one, st).Release() // the step's path
	one.Release()
	assert.Equal(t, before, metal.HostPool.InUse())
}

func TestMambaConfigErrors(t *testing.T) {
	for _, c := range []MambaConfig{{}, {DModel: 4, DState: -1}, {DModel: 4, DTMin: 0.5, DTMax: 0.1}, {DModel: 4, Chunk: -2}} {
		_, err := NewMamba(ad.NewRNG(1), ad.Float32, c)
		assert.Error(t, err, "%+v", c)
	}
	_, err := NewMamba(ad.NewRNG(1), ad.Int32, MambaConfig{DModel: 4})
	assert.Error(t, err)
	_, err = NewMamba(nil, ad.Float32, MambaConfig{DModel: 4})
	assert.Error(t, err)
	m, err := NewMamba(ad.NewRNG(1), ad.Float32, MambaConfig{DModel: 4})
	require.NoError(t, err)
	assert.Panics(t, func() { m.Forward(nil, ad.Zeros(ad.Float32, 2, 3, 5)) })
	assert.Panics(t, func() { m.Step(nil, ad.Zeros(ad.Float32, 2, 4), m.NewState(3)) })
	assert.Panics(t, func() { m.Prefill(nil, ad.Zeros(ad.Float32, 2, 3, 4), nil) })
}
