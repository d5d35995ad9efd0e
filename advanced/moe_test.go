package advanced

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	ad "github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/layers"
	"github.com/mlxtrain/mlxtrain/metal"
)

// newTestMoE returns a layer with every parameter (biases too) drawn from N(0, ¼)
// so that no path hides behind a zero.
func newTestMoE(t *testing.T, dtype ad.DType, cfg MoEConfig, seed uint64) *MoE {
	t.Helper()
	m, err := NewMoE(ad.NewRNG(seed), dtype, cfg)
	require.NoError(t, err)
	rng := ad.NewRNG(seed + 1000)
	for _, p := range m.Params("") {
		r := ad.RandNormal(rng, dtype, 0, 0.5, p.Value.Shape()...)
		p.Value.CopyFrom(r)
		r.Release()
	}
	return m
}

// refMoE is the layer as a dense loop over tokens and their chosen experts,
// written with autodiff's generic ops so the tape gives its gradients: each
// token computes its router logits, picks its top k in plain Go (stable sort,
// so ties go to the lower expert), and runs each chosen expert as a small MLP
// on that expert's slices of the stacked weights, skipping pairs beyond the
// capacity in token order. It returns the output and the pairs dropped.
func refMoE(c *layers.Ctx, m *MoE, x *ad.Tensor) (*ad.Tensor, int) {
	cfg := m.Config
	D, H, E, k := cfg.Dim, cfg.Hidden, cfg.Experts, cfg.TopK
	N := x.Len() / D
	capacity := 0
	if cfg.CapacityFactor > 0 {
		capacity = int(math.Ceil(cfg.CapacityFactor * float64(N*k) / float64(E)))
	}
	taken, dropped := make([]int, E), 0
	lin := func(x, w, b *ad.Tensor) *ad.Tensor {
		y := ad.MatMulT(x, w, false, true)
		if b != nil {
			y = ad.Add(y, b)
		}
		return y
	}
	sub := func(w *ad.Tensor, e int, shape ...int) *ad.Tensor {
		if w == nil {
			return nil
		}
		return ad.Reshape(ad.Slice(c.Param(w), 0, e, e+1), shape...)
	}
	act := func(h, gate *ad.Tensor) *ad.Tensor {
		switch cfg.Act {
		case layers.ActSwiGLU:
			return ad.Mul(ad.SiLU(gate), h)
		case layers.ActGELU:
			return ad.GELU(h)
		case layers.ActGELUTanh:
			return ad.GELUTanh(h)
		case layers.ActReLU:
			return ad.ReLU(h)
		}
		return ad.SiLU(h)
	}
	param := func(l *layers.Linear) (w, b *ad.Tensor) {
		if l == nil {
			return nil, nil
		}
		return c.Param(l.Weight), c.Param(l.Bias)
	}
	x2 := ad.Reshape(x, N, D)
	rows := make([]*ad.Tensor, N)
	for n := range N {
		xn := ad.Slice(x2, 0, n, n+1)
		logits := ad.MatMulT(xn, c.Param(m.Router.Weight), false, true) // (1, E)
		vals := logits.Float64s()
		order := make([]int, E)
		for e := range order {
			order[e] = e
		}
		slices.SortStableFunc(order, func(a, b int) int {
			switch {
			case vals[a] > vals[b]:
				return -1
			case vals[a] < vals[b]:
				return 1
			}
			return 0
		})
		ids := order[:k]
		scores := ad.Softmax(logits, -1)
		if cfg.Score == ScoreSigmoid {
			scores = ad.Sigmoid(logits)
		}
		pick := func(t *ad.Tensor) *ad.Tensor {
			parts := make([]*ad.Tensor, k)
			for j, e := range ids {
				parts[j] = ad.Slice(t, 1, e, e+1)
			}
			return ad.Concat(1, parts...)
		}
		var w *ad.Tensor // (1, k)
		switch cfg.Gate {
		case GateSoftmaxTopK:
			w = ad.Softmax(pick(logits), -1)
		case GateRenormalize:
			s := pick(scores)
			w = ad.Div(s, ad.Sum(s, []int{1}, true))
		default:
			w = pick(scores)
		}
		out := ad.Zeros(x.DType(), 1, D)
		for j, e := range ids {
			if capacity > 0 && taken[e] == capacity {
				dropped++
				continue
			}
			taken[e]++
			h := lin(xn, sub(m.UpProj, e, H, D), sub(m.UpBias, e, H))
			var g *ad.Tensor
			if cfg.Act == layers.ActSwiGLU {
				g = lin(xn, sub(m.GateProj, e, H, D), sub(m.GateBias, e, H))
			}
			y := lin(act(h, g), sub(m.DownProj, e, D, H), sub(m.DownBias, e, D))
			out = ad.Add(out, ad.Mul(ad.Slice(w, 1, j, j+1), y))
		}
		if s := m.Shared; s != nil {
			uw, ub := param(s.Up)
			gw, gb := param(s.Gate)
			dw, db := param(s.Down)
			var g *ad.Tensor
			if gw != nil {
				g = lin(xn, gw, gb)
			}
			out = ad.Add(out, lin(act(lin(xn, uw, ub), g), dw, db))
		}
		rows[n] = out
	}
	return ad.Reshape(ad.Concat(0, rows...), x.Shape()...), dropped
}

// moeGrads runs fwd on a fresh tape watching x and m's parameters, seeds the
// backward pass with seed and returns the output and the gradients by name ("x"
// and the parameter names).
func moeGrads(t *testing.T, m *MoE, x, seed *ad.Tensor, fwd func(c *layers.Ctx, x *ad.Tensor) *ad.Tensor) ([]float64, map[string][]float64) {
	t.Helper()
	tp := ad.NewTape()
	defer tp.Release()
	c := &layers.Ctx{Tape: tp, Train: true}
	xw := tp.Watch(x)
	y := fwd(c, xw)
	require.Equal(t, x.Shape(), y.Shape())
	out := slices.Clone(y.Float64Values())
	tp.BackwardWith(y, seed.Clone())
	grads := map[string][]float64{}
	if g := tp.Grad(xw); g != nil {
		grads["x"] = slices.Clone(g.Float64Values())
	}
	for _, p := range m.Params("") {
		if g := tp.Grad(p.Value); g != nil {
			grads[p.Name] = slices.Clone(g.Float64Values())
		}
	}
	return out, grads
}

func moeClose(t *testing.T, want, got []float64, rtol, atol float64, msg string) {
	t.Helper()
	require.Len(t, got, len(want), msg)
	for i := range want {
		if d := math.Abs(got[i] - want[i]); d > atol+rtol*math.Abs(want[i]) || got[i] != got[i] {
			t.Errorf("%s[%d] = %.10g, want %.10g (diff %.3g)", msg, i, got[i], want[i], d)
			return
		}
	}
}

type moeCase struct {
	name string
	cfg  MoEConfig
}

// moeCases: E ∈ {1, 4, 8} × k ∈ {1, 2} × shared experts on/off × dropless or
// capacity 0.75 (which drops), the score, gate norm, activation and biases
// varying from case to case so each is crossed with several of the others.
func moeCases() []moeCase {
	variants := []struct {
		score RouterScore
		gate  GateNorm
		act   layers.Activation
		bias  bool
	}{
		{ScoreSoftmax, GateSoftmaxTopK, layers.ActGELU, true},
		{ScoreSigmoid, GateRenormalize, layers.ActSwiGLU, false},
		{ScoreSoftmax, GateScores, layers.ActGELU, false},
		{ScoreSigmoid, GateScores, layers.ActSiLU, true},
		{ScoreSoftmax, GateRenormalize, layers.ActSwiGLU, true},
		{ScoreSigmoid, GateSoftmaxTopK, layers.ActGELU, true},
		{ScoreSoftmax, GateSoftmaxTopK, layers.ActReLU, false},
		{ScoreSoftmax, GateSoftmaxTopK, layers.ActGELUTanh, true},
	}
	var cases []moeCase
	i := 0
	for _, E := range []int{1, 4, 8} {
		for _, k := range []int{1, 2} {
			if k > E {
				continue
			}
			for _, shared := range []int{0, 1} {
				for _, cf := range []float64{0, 0.75} {
					v := variants[i%len(variants)]
					i++
					cfg := MoEConfig{Dim: 6, Hidden: 5, Experts: E, TopK: k, SharedExperts: shared, SharedHidden: 3,
						CapacityFactor: cf, Score: v.score, Gate: v.gate, Act: v.act, Bias: v.bias}
					name := fmt.Sprintf("E=%d/k=%d/shared=%d/cf=%g/%s-%s-%s-bias=%v", E, k, shared, cf, v.score, v.gate, v.act, v.bias)
					cases = append(cases, moeCase{name, cfg})
				}
			}
		}
	}
	return cases
}

func TestMoEMatchesDenseLoop(t *testing.T) {
	const B, T = 2, 7
	totalDropped := 0
	for i, tc := range moeCases() {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestMoE(t, ad.Float64, tc.cfg, uint64(10+i))
			rng := ad.NewRNG(uint64(100 + i))
			x := ad.RandNormal(rng, ad.Float64, 0, 1, B, T, tc.cfg.Dim)
			seed := ad.RandNormal(rng, ad.Float64, 0, 1, B, T, tc.cfg.Dim)
			var refDropped int
			want, wantG := moeGrads(t, m, x, seed, func(c *layers.Ctx, x *ad.Tensor) *ad.Tensor {
				y, d := refMoE(c, m, x)
				refDropped = d
				return y
			})
			got, gotG := moeGrads(t, m, x, seed, m.Forward)
			moeClose(t, want, got, 1e-12, 1e-12, "output")
			require.Equal(t, len(wantG), len(gotG), "the same inputs get gradients")
			for name, g := range wantG {
				moeClose(t, g, gotG[name], 1e-10, 1e-12, "grad "+name)
			}
			st := m.Stats()
			assert.Equal(t, refDropped, st.Dropped)
			assert.Equal(t, B*T, st.Tokens)
			routed, load := 0, 0
			for e := range tc.cfg.Experts {
				routed += st.Routed[e]
				load += st.Load[e]
				if c := ExpertCapacity(tc.cfg.CapacityFactor, B*T, tc.cfg.TopK, tc.cfg.Experts); c > 0 {
					assert.LessOrEqual(t, st.Load[e], c)
				}
			}
			assert.Equal(t, B*T*tc.cfg.TopK, routed)
			assert.Equal(t, routed-st.Dropped, load)
			if tc.cfg.CapacityFactor == 0 {
				assert.Zero(t, st.Dropped)
			}
			totalDropped += refDropped
		})
	}
	assert.Positive(t, totalDropped, "the capacity cases drop pairs")
}

// The float32 layer (fast GELU, float32 GEMMs) against the float64 dense loop,
// on rows of 37 (not a multiple of the SIMD width) and a hidden width of 21.
func TestMoEFloat32MatchesDenseLoop(t *testing.T) {
	for _, act := range []layers.Activation{layers.ActGELU, layers.ActSwiGLU} {
		t.Run(string(act), func(t *testing.T) {
			cfg := MoEConfig{Dim: 37, Hidden: 21, Experts: 4, TopK: 2, Act: act, Bias: true, SharedExperts: 1, CapacityFactor: 1}
			m64 := newTestMoE(t, ad.Float64, cfg, 7)
			m32, err := NewMoE(ad.NewRNG(7), ad.Float32, cfg)
			require.NoError(t, err)
			p64 := m64.Params("")
			for i, p := range m32.Params("") {
				c := ad.Cast(p64[i].Value, ad.Float32)
				p.Value.CopyFrom(c)
				c.Release()
				// round the float64 weights to float32 so both see the same numbers
				r := ad.Cast(p.Value, ad.Float64)
				p64[i].Value.CopyFrom(r)
				r.Release()
			}
			rng := ad.NewRNG(8)
			x32 := ad.RandNormal(rng, ad.Float32, 0, 1, 3, 11, cfg.Dim)
			x64 := ad.Cast(x32, ad.Float64)
			seed32 := ad.RandNormal(rng, ad.Float32, 0, 1, 3, 11, cfg.Dim)
			seed64 := ad.Cast(seed32, ad.Float64)
			want, wantG := moeGrads(t, m64, x64, seed64, func(c *layers.Ctx, x *ad.Tensor) *ad.Tensor {
				y, _ := refMoE(c, m64, x)
				return y
			})
			got, gotG := moeGrads(t, m32, x32, seed32, m32.Forward)
			moeClose(t, want, got, 1e-4, 1e-5, "output")
			for name, g := range wantG {
				moeClose(t, g, gotG[name], 1e-4, 2e-4, "grad "+name)
			}
		})
	}
}

// Finite differences of the whole layer, router included, in float64: the
// output plus the auxiliary loss (so the load-balancing and z-loss gradients are
// checked inside the layer too).
func TestMoEGradCheck(t *testing.T) {
	cfgs := []MoEConfig{
		{Dim: 4, Hidden: 3, Experts: 4, TopK: 2, SharedExperts: 1, SharedHidden: 2, Bias: true, AuxLossCoef: 0.5, ZLossCoef: 0.1},
		{Dim: 4, Hidden: 3, Experts: 3, TopK: 1, CapacityFactor: 0.7, Score: ScoreSigmoid, Gate: GateRenormalize, Act: layers.ActSwiGLU, AuxLossCoef: 0.3},
		{Dim: 3, Hidden: 4, Experts: 4, TopK: 2, Gate: GateScores, Act: layers.ActGELU, Bias: true, ZLossCoef: 0.2, CapacityFactor: 0.8},
		{Dim: 3, Hidden: 2, Experts: 2, TopK: 2, Score: ScoreSigmoid, Gate: GateScores, Act: layers.ActSiLU, SharedExperts: 2, SharedHidden: 1, AuxLossCoef: 1},
	}
	for i, cfg := range cfgs {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			m := newTestMoE(t, ad.Float64, cfg, uint64(40+i))
			x := ad.RandNormal(ad.NewRNG(uint64(50+i)), ad.Float64, 0, 1, 2, 3, cfg.Dim)
			params := m.Params("")
			inputs := []*ad.Tensor{x}
			for _, p := range params {
				inputs = append(inputs, p.Value)
			}
			err := ad.GradCheck{Seed: uint64(i), RTol: 1e-5, ATol: 1e-7}.Check(func(in []*ad.Tensor) *ad.Tensor {
				mm := m.withParams(in[1:])
				y, aux, _ := mm.ForwardAux(&layers.Ctx{Tape: in[0].Tape(), Train: true}, in[0])
				require.NotNil(t, aux)
				return ad.Add(y, aux)
			}, inputs...)
			assert.NoError(t, err)
		})
	}
}

// withParams is a copy of m whose parameters are ps, in Params order.
func (m *MoE) withParams(ps []*ad.Tensor) *MoE {
	mm := &MoE{Config: m.Config}
	take := func(t *ad.Tensor) *ad.Tensor {
		if t == nil {
			return nil
		}
		v := ps[0]
		ps = ps[1:]
		return v
	}
	mm.Router = &layers.Linear{Weight: take(m.Router.Weight)}
	mm.GateProj, mm.GateBias = take(m.GateProj), take(m.GateBias)
	mm.UpProj, mm.UpBias = take(m.UpProj), take(m.UpBias)
	mm.DownProj, mm.DownBias = take(m.DownProj), take(m.DownBias)
	if s := m.Shared; s != nil {
		mm.Shared = &layers.MLP{Act: s.Act}
		lin := func(l *layers.Linear) *layers.Linear {
			if l == nil {
				return nil
			}
			return &layers.Linear{Weight: take(l.Weight), Bias: take(l.Bias)}
		}
		mm.Shared.Gate = lin(s.Gate)
		mm.Shared.Up = lin(s.Up)
		mm.Shared.Down = lin(s.Down)
	}
	return mm
}

func TestMoEParamsAndDefaults(t *testing.T) {
	m, err := NewMoE(ad.NewRNG(1), ad.Float32, MoEConfig{Dim: 8, Experts: 4, Act: layers.ActSwiGLU, Bias: true, SharedExperts: 2, SharedHidden: 3})
	require.NoError(t, err)
	assert.Equal(t, MoEConfig{Dim: 8, Hidden: 32, Experts: 4, TopK: 2, Act: layers.ActSwiGLU, Bias: true, Score: ScoreSoftmax,
		Gate: GateSoftmaxTopK, SharedExperts: 2, SharedHidden: 3}, m.Config)
	shapes := map[string][]int{}
	var names []string
	for _, p := range m.Params("model.layers.0.mlp.") {
		names = append(names, p.Name)
		shapes[p.Name] = p.Value.Shape()
	}
	p := "model.layers.0.mlp."
	assert.Equal(t, []string{p + "gate.weight",
		p + "switch_mlp.gate_proj.weight", p + "switch_mlp.gate_proj.bias",
		p + "switch_mlp.up_proj.weight", p + "switch_mlp.up_proj.bias",
		p + "switch_mlp.down_proj.weight", p + "switch_mlp.down_proj.bias",
		p + "shared_experts.gate_proj.weight", p + "shared_experts.gate_proj.bias",
		p + "shared_experts.up_proj.weight", p + "shared_experts.up_proj.bias",
		p + "shared_experts.down_proj.weight", p + "shared_experts.down_proj.bias"}, names)
	assert.Equal(t, []int{4, 8}, shapes[p+"gate.weight"])
	assert.Equal(t, []int{4, 32, 8}, shapes[p+"switch_mlp.up_proj.weight"])
	assert.Equal(t, []int{4, 8, 32}, shapes[p+"switch_mlp.down_proj.weight"])
	assert.Equal(t, []int{4, 8}, shapes[p+"switch_mlp.down_proj.bias"])
	assert.Equal(t, []int{6, 8}, shapes[p+"shared_experts.up_proj.weight"])
	var lin []string
	for _, l := range m.Linears("mlp.") {
		lin = append(lin, l.Name)
	}
	assert.Equal(t, []string{"mlp.gate", "mlp.shared_experts.gate_proj", "mlp.shared_experts.up_proj", "mlp.shared_experts.down_proj"}, lin)

	m2, err := NewMoE(ad.NewRNG(1), ad.Float32, MoEConfig{Dim: 8, Experts: 1})
	require.NoError(t, err)
	assert.Equal(t, 1, m2.Config.TopK)
	assert.Nil(t, m2.GateProj)
	assert.Nil(t, m2.UpBias)
	assert.Len(t, m2.Params(""), 3)

	bad := []struct {
		cfg  MoEConfig
		want string
	}{
		{MoEConfig{Experts: 4}, "dim 0"},
		{MoEConfig{Dim: 4}, "experts 0"},
		{MoEConfig{Dim: 4, Experts: 2, TopK: 3}, "top_k 3"},
		{MoEConfig{Dim: 4, Experts: 2, CapacityFactor: -1}, "capacity factor -1"},
		{MoEConfig{Dim: 4, Experts: 2, AuxLossCoef: math.NaN()}, "aux loss coefficient NaN"},
		{MoEConfig{Dim: 4, Experts: 2, Score: "relu"}, `score "relu"`},
		{MoEConfig{Dim: 4, Experts: 2, Gate: "max"}, `gate "max"`},
		{MoEConfig{Dim: 4, Experts: 2, Act: "tanh"}, `activation "tanh"`},
		{MoEConfig{Dim: 4, Experts: 2, SharedExperts: -1}, "shared experts -1"},
	}
	for _, b := range bad {
		_, err := NewMoE(ad.NewRNG(1), ad.Float32, b.cfg)
		assert.ErrorContains(t, err, b.want)
	}
	_, err = NewMoE(ad.NewRNG(1), ad.Int32, MoEConfig{Dim: 4, Experts: 2})
	assert.ErrorContains(t, err, "dtype")
	_, err = NewMoE(nil, ad.Float32, MoEConfig{Dim: 4, Experts: 2})
	assert.ErrorContains(t, err, "RNG")
}

// A training forward leaves its auxiliary loss (once) and statistics; an
// inference forward leaves nothing and releases its intermediates.
func TestMoEAuxLossAndStats(t *testing.T) {
	cfg := MoEConfig{Dim: 8, Hidden: 16, Experts: 4, TopK: 2, AuxLossCoef: 0.01, ZLossCoef: 0.001, CapacityFactor: 1}
	m := newTestMoE(t, ad.Float32, cfg, 3)
	x := ad.RandNormal(ad.NewRNG(4), ad.Float32, 0, 1, 2, 16, 8)

	base := metal.HostPool.InUse()
	y := m.Forward(nil, x)
	assert.Nil(t, m.TakeAuxLoss())
	assert.Zero(t, m.Stats().Tokens)
	y.Release()
	assert.Equal(t, base, metal.HostPool.InUse(), "an inference forward returns its scratch to the pool")

	tp := ad.NewTape()
	defer tp.Release()
	y = m.Forward(&layers.Ctx{Tape: tp, Train: true}, x)
	aux := m.TakeAuxLoss()
	require.NotNil(t, aux)
	assert.Nil(t, m.TakeAuxLoss(), "taken once")
	st := m.Stats()
	assert.Equal(t, 32, st.Tokens)
	assert.Equal(t, 2, st.TopK)
	assert.InDelta(t, 0.01*st.Balance+0.001*st.ZLoss, aux.Item(), 1e-6)

	// The statistics against the routing done by hand.
	logits := ad.MatMulT(ad.Reshape(x, 32, 8), m.Router.Weight, false, true)
	_, experts := ad.TopK(logits, 2)
	wantRouted := make([]int, 4)
	for _, e := range experts.Int32s() {
		wantRouted[e]++
	}
	assert.Equal(t, wantRouted, st.Routed)
	wantBal := LoadBalanceForward(logits.Float32s(), experts.Int32s(), 32, 4, 2, ScoreSoftmax, nil, nil)
	assert.InDelta(t, wantBal, st.Balance, 1e-6)
	dropped := 0
	for e := range 4 {
		dropped += max(0, wantRouted[e]-16) // capacity ⌈1·32·2/4⌉ = 16
		assert.Equal(t, min(16, wantRouted[e]), st.Load[e])
	}
	assert.Equal(t, dropped, st.Dropped)
	assert.InDelta(t, float64(dropped)/64, st.DropRate(), 1e-12)

	loss := ad.Add(ad.SumAll(y), aux)
	tp.Backward(loss)
	assert.NotNil(t, tp.Grad(m.Router.Weight))

	// ForwardAux without a tape: values, no recording, and (not training) no
	// capacity limit.
	y2, aux2, st2 := m.ForwardAux(nil, x)
	assert.Nil(t, y2.Tape())
	assert.InDelta(t, aux.Item(), aux2.Item(), 1e-6)
	assert.Equal(t, st.Routed, st2.Routed)
	assert.Equal(t, st.Routed, st2.Load)
	assert.Zero(t, st2.Dropped)
	require.Positive(t, st.Dropped, "the training forward dropped pairs")
	y2.Release()
	aux2.Release()
}

func TestMoEStatsHelpers(t *testing.T) {
	s := MoEStats{Tokens: 10, TopK: 2, Load: []int{8, 4, 4, 4}, Dropped: 3}
	assert.InDelta(t, 8*4/20.0, s.MaxLoad(), 1e-12)
	assert.InDelta(t, 0.15, s.DropRate(), 1e-12)
	assert.Zero(t, MoEStats{}.DropRate())
	assert.Zero(t, MoEStats{}.MaxLoad())
}

func TestExpertCapacity(t *testing.T) {
	assert.Equal(t, 0, ExpertCapacity(0, 100, 2, 8))
	assert.Equal(t, 25, ExpertCapacity(1, 100, 2, 8))
	assert.Equal(t, 32, ExpertCapacity(1.25, 100, 2, 8)) // 31.25 rounds up
	assert.Equal(t, 1, ExpertCapacity(0.01, 10, 1, 4))
	assert.Equal(t, 512, ExpertCapacity(1, 2048, 2, 8))
}

func TestNewRouting(t *testing.T) {
	// 5 tokens, k = 2, 3 experts, capacity 3: expert 0 is asked by tokens 0, 1,
	// 2, 4 (token 4 dropped), expert 1 by 0, 3, expert 2 by 1, 2, 3, 4 (token 4
	// dropped).
	experts := []int32{0, 1, 2, 0, 0, 2, 1, 2, 2, 0}
	r := NewRouting(experts, 5, 2, 3, 3)
	assert.Equal(t, []int{4, 2, 4}, r.Routed)
	assert.Equal(t, []int{0, 3, 5, 8}, r.Offsets)
	assert.Equal(t, []int32{0, 1, 2, 0, 3, 1, 2, 3}, r.Token)
	assert.Equal(t, []int32{0, 3, 5, 1, 2, 6, 4, 7, -1, -1}, r.Pos)
	assert.Equal(t, 2, r.Dropped)
	assert.Equal(t, 8, r.Rows())
	assert.Equal(t, []int{3, 2, 3}, r.Load())

	all := NewRouting(experts, 5, 2, 3, 0)
	assert.Zero(t, all.Dropped)
	assert.Equal(t, []int{0, 4, 6, 10}, all.Offsets)
	assert.Equal(t, []int32{0, 1, 2, 4, 0, 3, 1, 2, 3, 4}, all.Token)

	empty := NewRouting(nil, 0, 2, 4, 0)
	assert.Equal(t, 0, empty.Rows())
	assert.Panics(t, func() { NewRouting([]int32{0, 4}, 1, 2, 4, 0) })
	assert.Panics(t, func() { NewRouting([]int32{0}, 1, 2, 4, 0) })
}

func TestSelectTopK(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		row  []float64
		k    int
		want []int32
	}{
		{[]float64{1, 3, 2}, 1, []int32{1}},
		{[]float64{1, 3, 2}, 2, []int32{1, 2}},
		{[]float64{1, 3, 2}, 3, []int32{1, 2, 0}},
		{[]float64{2, 2, 2, 1}, 2, []int32{0, 1}},
		{[]float64{0, 5, 5, 7}, 3, []int32{3, 1, 2}},
		{[]float64{1, nan, 3}, 2, []int32{1, 2}},
		{[]float64{-1, -2, -0.5, -3, 4, 0}, 3, []int32{4, 5, 2}},
	} {
		ids := make([]int32, tc.k)
		selectTopK(ids, tc.row)
		assert.Equal(t, tc.want, ids, "%v k=%d", tc.row, tc.k)
	}
}

// The gate weights of each (score, norm) against their formulas, and their
// gradients against finite differences.
func TestRouterGates(t *testing.T) {
	logits := []float64{0.5, -1, 2, 0.25, 1.5, -0.5, 0, 3}
	sm := func(xs ...float64) []float64 {
		var s float64
		out := make([]float64, len(xs))
		for i, v := range xs {
			out[i] = math.Exp(v)
			s += out[i]
		}
		for i := range out {
			out[i] /= s
		}
		return out
	}
	sg := func(v float64) float64 { return 1 / (1 + math.Exp(-v)) }
	p0, p1 := sm(logits[:4]...), sm(logits[4:]...)
	cases := []struct {
		score RouterScore
		norm  GateNorm
		want  []float64
	}{
		{ScoreSoftmax, GateSoftmaxTopK, append(sm(2, 0.5), sm(3, 1.5)...)},
		{ScoreSigmoid, GateSoftmaxTopK, append(sm(2, 0.5), sm(3, 1.5)...)},
		{ScoreSoftmax, GateRenormalize, append(sm(2, 0.5), sm(3, 1.5)...)},
		{ScoreSigmoid, GateRenormalize, []float64{sg(2) / (sg(2) + sg(0.5)), sg(0.5) / (sg(2) + sg(0.5)), sg(3) / (sg(3) + sg(1.5)), sg(1.5) / (sg(3) + sg(1.5))}},
		{ScoreSoftmax, GateScores, []float64{p0[2], p0[0], p1[3], p1[0]}},
		{ScoreSigmoid, GateScores, []float64{sg(2), sg(0.5), sg(3), sg(1.5)}},
	}
	for _, tc := range cases {
		t.Run(string(tc.score)+"/"+string(tc.norm), func(t *testing.T) {
			g, e := RouterGates(ad.FromFloat64(logits, 2, 4), 2, tc.score, tc.norm)
			assert.Equal(t, []int32{2, 0, 3, 0}, e.Int32s())
			moeClose(t, tc.want, g.Float64s(), 1e-14, 1e-15, "gates")
			g32, e32 := RouterGates(ad.FromFloat32(to32(logits), 2, 4), 2, tc.score, tc.norm)
			assert.Equal(t, e.Int32s(), e32.Int32s())
			moeClose(t, tc.want, to64(g32.Float32s()), 1e-6, 1e-7, "float32 gates")

			x := ad.RandNormal(ad.NewRNG(5), ad.Float64, 0, 1, 3, 5, 6)
			err := ad.GradCheck{Seed: 2}.Check(func(in []*ad.Tensor) *ad.Tensor {
				g, _ := RouterGates(in[0], 3, tc.score, tc.norm)
				return g
			}, x)
			assert.NoError(t, err)
		})
	}
	assert.Panics(t, func() { RouterGates(ad.FromFloat64(logits, 2, 4), 5, ScoreSoftmax, GateScores) })
	assert.Panics(t, func() { RouterGates(ad.FromFloat64(logits, 2, 4), 1, "x", GateScores) })
}

// The load-balancing loss and z-loss against hand computations, and their
// gradients against finite differences.
func TestRouterLosses(t *testing.T) {
	// Uniform router, even load: E·Σ (k/E)·(1/E) = k.
	zero := ad.Zeros(ad.Float64, 4, 4)
	even := ad.FromInt32([]int32{0, 1, 2, 3, 1, 0, 3, 2}, 4, 2)
	assert.InDelta(t, 2, LoadBalanceLoss(zero, even, ScoreSoftmax).Item(), 1e-14)
	assert.InDelta(t, 2, LoadBalanceLoss(zero, even, ScoreSigmoid).Item(), 1e-14)
	// Everything to expert 0, 2 experts, k = 1: f = (1, 0), P = mean softmax.
	logits := []float64{1, 0, 3, 1, -1, 0.5}
	first := ad.FromInt32([]int32{0, 0, 0}, 3, 1)
	p := (1/(1+math.Exp(-1)) + 1/(1+math.Exp(-2)) + 1/(1+math.Exp(1.5))) / 3
	assert.InDelta(t, 2*1*p, LoadBalanceLoss(ad.FromFloat64(logits, 3, 2), first, ScoreSoftmax).Item(), 1e-14)
	// Sigmoid scores are normalised per token before averaging.
	sg := func(v float64) float64 { return 1 / (1 + math.Exp(-v)) }
	q := 0.0
	for n := range 3 {
		a, b := sg(logits[2*n]), sg(logits[2*n+1])
		q += a / (a + b) / 3
	}
	assert.InDelta(t, 2*q, LoadBalanceLoss(ad.FromFloat64(logits, 3, 2), first, ScoreSigmoid).Item(), 1e-14)
	frac, prob := make([]float64, 2), make([]float64, 2)
	LoadBalanceForward(logits, []int32{0, 0, 0}, 3, 2, 1, ScoreSoftmax, frac, prob)
	assert.Equal(t, []float64{1, 0}, frac)
	assert.InDelta(t, p, prob[0], 1e-14)
	assert.InDelta(t, 1-p, prob[1], 1e-14)

	// z-loss: mean of logsumexp².
	lse0, lse1, lse2 := math.Log(math.E+1), math.Log(math.Exp(3)+math.E), math.Log(math.Exp(-1)+math.Exp(0.5))
	assert.InDelta(t, (lse0*lse0+lse1*lse1+lse2*lse2)/3, RouterZLoss(ad.FromFloat64(logits, 3, 2)).Item(), 1e-14)
	assert.InDelta(t, math.Ln2*math.Ln2, RouterZLoss(ad.Zeros(ad.Float64, 5, 2)).Item(), 1e-14)
	assert.InDelta(t, math.Ln2*math.Ln2, RouterZLoss(ad.Zeros(ad.Float32, 5, 2)).Item(), 1e-6)

	x := ad.RandNormal(ad.NewRNG(6), ad.Float64, 0, 1, 70, 5) // over one partial-sum block
	_, experts := ad.TopK(x, 2)
	for _, score := range []RouterScore{ScoreSoftmax, ScoreSigmoid} {
		err := ad.GradCheck{Seed: 3}.Check(func(in []*ad.Tensor) *ad.Tensor {
			return LoadBalanceLoss(in[0], experts, score)
		}, x)
		assert.NoError(t, err, score)
	}
	err := ad.GradCheck{Seed: 4}.Check(func(in []*ad.Tensor) *ad.Tensor { return RouterZLoss(in[0]) }, x)
	assert.NoError(t, err)
	assert.Zero(t, LoadBalanceLoss(ad.Zeros(ad.Float64, 0, 3), ad.FromInt32(nil, 0, 1), ScoreSoftmax).Item())
	assert.Zero(t, RouterZLoss(ad.Zeros(ad.Float64, 0, 3)).Item())
}

// Dispatch, the grouped linears and Combine on their own: against direct
// formulas, with empty groups, and through finite differences.
func TestDispatchGroupedCombine(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const N, k, E, D, H = 9, 2, 5, 4, 3
	experts := make([]int32, N*k)
	for n := range N { // expert 3 is never chosen
		a := int32(rng.IntN(3))
		experts[n*k], experts[n*k+1] = a, 4
	}
	r := NewRouting(experts, N, k, E, 3)
	require.Zero(t, r.Load()[3])
	require.Positive(t, r.Dropped)
	x := ad.FromFloat64(normals(rng, N*D), N, D)
	w := ad.FromFloat64(normals(rng, E*H*D), E, H, D)
	b := ad.FromFloat64(normals(rng, E*H), E, H)
	gates := ad.FromFloat64(normals(rng, N*k), N, k)

	xs := Dispatch(x, r)
	for i, tok := range r.Token {
		assert.Equal(t, x.Float64s()[int(tok)*D:int(tok+1)*D], xs.Float64s()[i*D:(i+1)*D])
	}
	for _, gelu := range []bool{false, true} {
		var h *ad.Tensor
		if gelu {
			h = GroupedLinearGELU(xs, w, b, r.Offsets)
		} else {
			h = GroupedLinear(xs, w, b, r.Offsets)
		}
		for e := range E {
			for i := r.Offsets[e]; i < r.Offsets[e+1]; i++ {
				for o := range H {
					v := b.Float64s()[e*H+o]
					for j := range D {
						v += w.Float64s()[(e*H+o)*D+j] * xs.Float64s()[i*D+j]
					}
					if gelu {
						v = v * 0.5 * math.Erfc(-v/math.Sqrt2)
					}
					assert.InDelta(t, v, h.Float64s()[i*H+o], 1e-13)
				}
			}
		}
	}
	y := Combine(xs, gates, r)
	for n := range N {
		for j := range D {
			var v float64
			for s := range k {
				if p := r.Pos[n*k+s]; p >= 0 {
					v += gates.Float64s()[n*k+s] * xs.Float64s()[int(p)*D+j]
				}
			}
			assert.InDelta(t, v, y.Float64s()[n*D+j], 1e-14)
		}
	}

	err := ad.GradCheck{Seed: 5}.Check(func(in []*ad.Tensor) *ad.Tensor {
		h := GroupedLinearGELU(Dispatch(in[0], r), in[1], in[2], r.Offsets)
		return Combine(GroupedLinear(h, in[3], nil, r.Offsets), in[4], r)
	}, x, w, b, ad.FromFloat64(normals(rng, E*D*H), E, D, H), gates)
	assert.NoError(t, err)
	assert.Panics(t, func() { GroupedLinear(xs, w, b, []int{0, 1, 2}) })
	assert.Panics(t, func() { GroupedLinear(xs, w, b, []int{0, 5, 4, 6, 6, r.Rows()}) })
	assert.Panics(t, func() { Dispatch(ad.Zeros(ad.Float64, N+1, D), r) })
}

// Gradient descent on the auxiliary loss alone evens out a skewed router's
// load (64 tokens, nearly all on expert 0 at first): the balance loss falls
// from above 2 to about its minimum, 1.
func TestMoEAuxLossBalancesLoad(t *testing.T) {
	cfg := MoEConfig{Dim: 8, Hidden: 8, Experts: 4, TopK: 1, AuxLossCoef: 1}
	m := newTestMoE(t, ad.Float64, cfg, 11)
	w := m.Router.Weight.Float64s()
	for j := range 8 { // every token prefers expert 0
		w[j] += 0.5
	}
	x := ad.RandNormal(ad.NewRNG(12), ad.Float64, 0.5, 0.2, 64, 8)
	var first, last float64
	for step := range 60 {
		tp := ad.NewTape()
		_ = m.Forward(&layers.Ctx{Tape: tp, Train: true}, x)
		aux := m.TakeAuxLoss()
		tp.Backward(aux)
		g := tp.Grad(m.Router.Weight).Float64s()
		for i := range w {
			w[i] -= 0.1 * g[i]
		}
		if step == 0 {
			first = m.Stats().Balance
		}
		last = m.Stats().Balance
		tp.Release()
	}
	assert.Greater(t, first, 2.0)
	assert.Less(t, last, 1.05, "balance loss %g → %g", first, last)
	assert.Less(t, m.Stats().MaxLoad(), 1.25, "load %v", m.Stats().Load)
}

// A training step gives every buffer back to the pool when its tape is
// released, whether backward ran or not.
func TestMoEReleasesEverything(t *testing.T) {
	for _, cfg := range []MoEConfig{
		{Dim: 16, Hidden: 24, Experts: 4, TopK: 2, Bias: true, SharedExperts: 1, AuxLossCoef: 0.1, ZLossCoef: 0.1, CapacityFactor: 1},
		{Dim: 16, Hidden: 24, Experts: 4, TopK: 1, Act: layers.ActSwiGLU, SharedExperts: 2},
		{Dim: 16, Hidden: 24, Experts: 3, TopK: 2, Act: layers.ActReLU, Score: ScoreSigmoid, Gate: GateScores},
	} {
		m := newTestMoE(t, ad.Float32, cfg, 21)
		x := ad.RandNormal(ad.NewRNG(22), ad.Float32, 0, 1, 2, 9, 16)
		for _, backward := range []bool{false, true} {
			base := metal.HostPool.InUse()
			tp := ad.NewTape()
			y := m.Forward(&layers.Ctx{Tape: tp, Train: true}, tp.Watch(x))
			if aux := m.TakeAuxLoss(); aux != nil {
				y = ad.Add(y, aux)
			}
			if backward {
				tp.BackwardWith(y, ad.Full(ad.Float32, 1, y.Shape()...))
			}
			tp.Release()
			assert.Equal(t, base, metal.HostPool.InUse(), "%s, backward %v", cfg.Act, backward)
		}
	}
}

// An empty batch goes through, forward and backward.
func TestMoEEmptyBatch(t *testing.T) {
	cfg := MoEConfig{Dim: 4, Hidden: 6, Experts: 3, TopK: 2, Bias: true, SharedExperts: 1, AuxLossCoef: 1, ZLossCoef: 1, CapacityFactor: 1}
	m := newTestMoE(t, ad.Float32, cfg, 31)
	tp := ad.NewTape()
	defer tp.Release()
	x := tp.Watch(ad.Zeros(ad.Float32, 2, 0, 4))
	y, aux, st := m.ForwardAux(&layers.Ctx{Tape: tp, Train: true}, x)
	assert.Equal(t, []int{2, 0, 4}, y.Shape())
	assert.Zero(t, aux.Item())
	assert.Zero(t, st.Tokens)
	tp.Backward(ad.Add(ad.SumAll(y), aux))
	assert.Equal(t, []float32{0, 0, 0, 0}, tp.Grad(m.DownBias).Float32s()[:4])
}

// MoE has the method set of models.FeedForward, plus what the model calls to
// add the auxiliary loss and LoRA's linear lister.
var _ interface {
	Params(prefix string) []ad.Param
	Forward(c *layers.Ctx, x *ad.Tensor) *ad.Tensor
	TakeAuxLoss() *ad.Tensor
	Linears(prefix string) []layers.NamedLinear
} = (*MoE)(nil)
