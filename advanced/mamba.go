package advanced

import (
	"errors"
	"fmt"
	"math"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/layers"
)

// MambaConfig sizes a [Mamba] block. Zero fields take the defaults of Mamba and
// Hugging Face's MambaConfig (noted per field); see [MambaConfig.WithDefaults].
type MambaConfig struct {
	DModel int // the model width (hidden_size); required
	DState int // N, the state size of each channel (state_size): 16
	DConv  int // the width of the causal convolution (conv_kernel): 4
	Expand int // the inner width E = Expand·DModel (expand): 2
	DTRank int // the rank of Δ's projection (time_step_rank): ⌈DModel/16⌉

	// The initial Δ = softplus(dt_proj.bias) is log-uniform in [DTMin, DTMax]
	// (time_step_min 0.001, time_step_max 0.1), at least DTInitFloor (1e-4).
	DTMin, DTMax, DTInitFloor float64

	Bias  bool // biases on in_proj and out_proj (use_bias; off by default)
	Chunk int  // the selective scan's checkpoint interval; 0 picks [SSMChunk]
}

// WithDefaults fills the zero fields with the defaults.
func (c MambaConfig) WithDefaults() MambaConfig {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.DState, 16)
	def(&c.DConv, 4)
	def(&c.Expand, 2)
	def(&c.DTRank, ceilDiv(c.DModel, 16))
	deff := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	deff(&c.DTMin, 0.001)
	deff(&c.DTMax, 0.1)
	deff(&c.DTInitFloor, 1e-4)
	return c
}

// Validate reports the first invalid field of a config (after defaults).
func (c MambaConfig) Validate() error {
	switch {
	case c.DModel <= 0:
		return fmt.Errorf("mamba: d_model %d: want > 0", c.DModel)
	case c.DState <= 0, c.DConv <= 0, c.Expand <= 0, c.DTRank <= 0:
		return fmt.Errorf("mamba: d_state %d, d_conv %d, expand %d, dt_rank %d: want > 0", c.DState, c.DConv, c.Expand, c.DTRank)
	case !(c.DTMin > 0 && c.DTMin <= c.DTMax), c.DTInitFloor < 0:
		return fmt.Errorf("mamba: dt_min %g, dt_max %g, dt_init_floor %g: want 0 < dt_min ≤ dt_max and floor ≥ 0", c.DTMin, c.DTMax, c.DTInitFloor)
	case c.Chunk < 0:
		return fmt.Errorf("mamba: chunk %d: want ≥ 0", c.Chunk)
	}
	return nil
}

// Inner is the inner width E = Expand·DModel.
func (c MambaConfig) Inner() int { return c.Expand * c.DModel }

// Mamba is the Mamba (S6) mixer block on (batch, length, DModel) inputs:
//
//	x, z = split(in_proj(u))                  (E each)
//	x = silu(conv1d(x))                         causal, depthwise
//	Δ, B, C = split(x_proj(x))                (DTRank, N, N)
//	Δ = softplus(dt_proj(Δ))                  (E)
//	y = selective_scan(x, Δ, −exp(A_log), B, C, D)
//	out = out_proj(y · silu(z))
//
// Parameter names and shapes are Hugging Face's MambaMixer's: in_proj.weight (2E,
// DModel), conv1d.weight (E, 1, DConv), conv1d.bias (E), x_proj.weight
// (DTRank+2N, E), dt_proj.weight (E, DTRank), dt_proj.bias (E), A_log (E, N), D
// (E), out_proj.weight (DModel, E). [Mamba.Step] runs one token at a time
// against a [MambaState] for generation.
type Mamba struct {
	Config     MambaConfig // with defaults filled in
	InProj     *layers.Linear
	ConvWeight *autodiff.Tensor // (E, 1, DConv)
	ConvBias   *autodiff.Tensor // (E)
	XProj      *layers.Linear
	DTProj     *layers.Linear
	ALog       *autodiff.Tensor // (E, N)
	D          *autodiff.Tensor // (E)
	OutProj    *layers.Linear
}

// NewMamba returns a block initialised as Mamba does: linear layers and the
// convolution uniform in ±1/√fan_in (PyTorch's default), linear biases zero,
// dt_proj.weight uniform in ±DTRank^−½, dt_proj.bias the inverse softplus of a
// log-uniform Δ in [DTMin, DTMax], A_log[e, n] = log(n+1), D = 1. (Hugging Face
// also divides out_proj.weight by √layers; that is the model's business.)
func NewMamba(rng *autodiff.RNG, dtype autodiff.DType, cfg MambaConfig) (*Mamba, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !dtype.IsFloat() {
		return nil, fmt.Errorf("mamba: dtype %s: want float32 or float64", dtype)
	}
	if rng == nil {
		return nil, errors.New("mamba: no RNG for the initial weights")
	}
	E, N, R, K := cfg.Inner(), cfg.DState, cfg.DTRank, cfg.DConv
	m := &Mamba{Config: cfg}
	m.InProj = layers.NewLinear(rng, dtype, cfg.DModel, 2*E, cfg.Bias, layers.Init{})
	bound := 1 / math.Sqrt(float64(K))
	m.ConvWeight = autodiff.RandUniform(rng, dtype, -bound, bound, E, 1, K)
	m.ConvBias = autodiff.RandUniform(rng, dtype, -bound, bound, E)
	m.XProj = layers.NewLinear(rng, dtype, E, R+2*N, false, layers.Init{})
	std := 1 / math.Sqrt(float64(R))
	m.DTProj = &layers.Linear{Weight: autodiff.RandUniform(rng, dtype, -std, std, E, R)}
	u := autodiff.RandUniform(rng, autodiff.Float64, 0, 1, E)
	bias := make([]float64, E)
	lo, hi := math.Log(cfg.DTMin), math.Log(cfg.DTMax)
	for i, v := range u.Float64s() {
		dt := math.Max(math.Exp(lo+v*(hi-lo)), cfg.DTInitFloor)
		bias[i] = dt + math.Log(-math.Expm1(-dt)) // softplus⁻¹(dt)
	}
	u.Release()
	m.DTProj.Bias = fromFloat64(dtype, bias, E)
	alog := make([]float64, E*N)
	for e := range E {
		for n := range N {
			alog[e*N+n] = math.Log(float64(n + 1))
		}
	}
	m.ALog = fromFloat64(dtype, alog, E, N)
	m.D = autodiff.Full(dtype, 1, E)
	m.OutProj = layers.NewLinear(rng, dtype, E, cfg.DModel, cfg.Bias, layers.Init{})
	return m, nil
}

func fromFloat64(dtype autodiff.DType, v []float64, shape ...int) *autodiff.Tensor {
	t := autodiff.FromFloat64(v, shape...)
	if dtype == autodiff.Float64 {
		return t
	}
	c := autodiff.Cast(t, dtype)
	t.Release()
	return c
}

// Params lists the parameters under Hugging Face's names.
func (m *Mamba) Params(prefix string) []autodiff.Param {
	var ps []autodiff.Param
	ps = append(ps, m.InProj.Params(prefix+"in_proj.")...)
	ps = append(ps, autodiff.Param{Name: prefix + "conv1d.weight", Value: m.ConvWeight}, autodiff.Param{Name: prefix + "conv1d.bias", Value: m.ConvBias})
	ps = append(ps, m.XProj.Params(prefix+"x_proj.")...)
	ps = append(ps, m.DTProj.Params(prefix+"dt_proj.")...)
	ps = append(ps, autodiff.Param{Name: prefix + "A_log", Value: m.ALog}, autodiff.Param{Name: prefix + "D", Value: m.D})
	return append(ps, m.OutProj.Params(prefix+"out_proj.")...)
}

// Linears lists the projections by name, for LoRA.
func (m *Mamba) Linears(prefix string) []layers.NamedLinear {
	return []layers.NamedLinear{
		{Name: prefix + "in_proj", Linear: m.InProj}, {Name: prefix + "x_proj", Linear: m.XProj},
		{Name: prefix + "dt_proj", Linear: m.DTProj}, {Name: prefix + "out_proj", Linear: m.OutProj},
	}
}

// Forward applies the block to x (batch, length, DModel), recording on c's tape
// when there is one.
func (m *Mamba) Forward(c *layers.Ctx, x *autodiff.Tensor) *autodiff.Tensor {
	m.checkInput("Forward", x, 3)
	return m.run(c, x, nil)
}

// Prefill is Forward for generation: it starts from state (the block's memory of
// the tokens before x) and leaves in it the state after x's last token, ready for
// [Mamba.Step]. A one-token x takes Step's recurrent form (and its device
// kernels). It records nothing, and panics if c has a tape.
func (m *Mamba) Prefill(c *layers.Ctx, x *autodiff.Tensor, state *MambaState) *autodiff.Tensor {
	m.checkInput("Prefill", x, 3)
	m.checkState("Prefill", c, state, x.Dim(0))
	if x.Dim(1) == 1 {
		// a decoding step: the recurrent form, on the device's step kernels when
		// it takes them
		xt := autodiff.Reshape(x, x.Dim(0), x.Dim(2))
		defer xt.Release()
		y := m.Step(nil, xt, state)
		defer y.Release()
		return autodiff.Reshape(y, y.Dim(0), 1, y.Dim(1))
	}
	return m.run(nil, x, state)
}

// run is the parallel forward; with a state it also reads and advances it.
func (m *Mamba) run(c *layers.Ctx, x *autodiff.Tensor, state *MambaState) *autodiff.Tensor {
	cfg := m.Config
	E, N, R := cfg.Inner(), cfg.DState, cfg.DTRank
	var tmp scratchTensors
	if c == nil || c.Tape == nil {
		defer tmp.release()
	}
	xz := tmp.add(m.InProj.Forward(c, x))
	parts := autodiff.Split(xz, -1, E, E)
	xi, z := tmp.add(parts[0]), tmp.add(parts[1])
	var xc *autodiff.Tensor
	if state == nil {
		xc = tmp.add(CausalConv1d(xi, c.Param(m.ConvWeight), c.Param(m.ConvBias)))
	} else {
		xc = tmp.add(m.convFrom(xi, state))
	}
	xa := tmp.add(autodiff.SiLU(xc))
	xdbl := tmp.add(m.XProj.Forward(c, xa))
	parts = autodiff.Split(xdbl, -1, R, N, N)
	dtr, bm, cm := tmp.add(parts[0]), tmp.add(parts[1]), tmp.add(parts[2])
	dt := tmp.add(autodiff.Softplus(tmp.add(m.DTProj.Forward(c, dtr))))
	A := tmp.add(autodiff.Neg(tmp.add(autodiff.Exp(c.Param(m.ALog)))))
	opt := SSMOptions{Chunk: cfg.Chunk}
	if state != nil {
		opt.H0, opt.Final = state.SSM, state.SSM // each unit reads its h0 before writing its final state
	}
	y := tmp.add(SelectiveScan(xa, dt, A, bm, cm, c.Param(m.D), opt))
	gated := tmp.add(autodiff.Mul(y, tmp.add(autodiff.SiLU(z))))
	return m.OutProj.Forward(c, gated)
}

// convFrom is the convolution continuing from a decoding state, which it advances.
func (m *Mamba) convFrom(xi *autodiff.Tensor, state *MambaState) *autodiff.Tensor {
	B, L, E, K := xi.Dim(0), xi.Dim(1), xi.Dim(2), m.Config.DConv
	out := autodiff.Empty(xi.DType(), xi.Shape()...)
	if convContinueDevice(out, state.Conv, xi, m.ConvWeight, m.ConvBias, B, L, E, K) {
		return out
	}
	tm := startTimer()
	defer tm.done("causal_conv1d_continue", 3*xi.Len()*xi.DType().Size())
	switch {
	case xi.DType() == autodiff.Float32:
		CausalConv1dForward(out.Float32s(), xi.Float32s(), m.ConvWeight.Float32s(), m.ConvBias.Float32s(), state.Conv.Float32s(), B, L, E, K)
		CausalConv1dAdvance(state.Conv.Float32s(), xi.Float32s(), B, L, E, K)
	default:
		CausalConv1dForward(out.Float64s(), xi.Float64s(), m.ConvWeight.Float64s(), m.ConvBias.Float64s(), state.Conv.Float64s(), B, L, E, K)
		CausalConv1dAdvance(state.Conv.Float64s(), xi.Float64s(), B, L, E, K)
	}
	return out
}

// Step runs the block on one token per sequence, x (batch, DModel), against the
// decoding state, which it advances; the result is (batch, DModel). It equals the
// last position of Forward over the whole sequence so far. It records nothing,
// and panics if c has a tape.
func (m *Mamba) Step(c *layers.Ctx, x *autodiff.Tensor, state *MambaState) *autodiff.Tensor {
	m.checkInput("Step", x, 2)
	m.checkState("Step", c, state, x.Dim(0))
	cfg := m.Config
	B, E, N, R, K := x.Dim(0), cfg.Inner(), cfg.DState, cfg.DTRank, cfg.DConv
	var tmp scratchTensors
	defer tmp.release()
	xz := tmp.add(m.InProj.Forward(nil, x))
	parts := autodiff.Split(xz, -1, E, E)
	xi, z := tmp.add(parts[0]), tmp.add(parts[1])
	xc := tmp.add(autodiff.Empty(x.DType(), B, E))
	convStep(xc, state.Conv, xi, m.ConvWeight, m.ConvBias, B, E, K)
	xa := tmp.add(autodiff.SiLU(xc))
	xdbl := tmp.add(m.XProj.Forward(nil, xa))
	parts = autodiff.Split(xdbl, -1, R, N, N)
	dtr, bm, cm := tmp.add(parts[0]), tmp.add(parts[1]), tmp.add(parts[2])
	dt := tmp.add(autodiff.Softplus(tmp.add(m.DTProj.Forward(nil, dtr))))
	A := tmp.add(autodiff.Neg(tmp.add(autodiff.Exp(m.ALog))))
	y := tmp.add(autodiff.Empty(x.DType(), B, E))
	ssmStep(y, state.SSM, xa, dt, A, bm, cm, m.D, B, E, N)
	gated := tmp.add(autodiff.Mul(y, tmp.add(autodiff.SiLU(z))))
	return m.OutProj.Forward(nil, gated)
}

func (m *Mamba) checkInput(op string, x *autodiff.Tensor, rank int) {
	if x.Rank() != rank || x.Dim(-1) != m.Config.DModel || x.DType() != m.ALog.DType() {
		panic(fmt.Sprintf("advanced: Mamba.%s: input %s %v for a block of width %d in %s", op, x.DType(), x.Shape(), m.Config.DModel, m.ALog.DType()))
	}
}

func (m *Mamba) checkState(op string, c *layers.Ctx, s *MambaState, batch int) {
	if c != nil && c.Tape != nil {
		panic("advanced: Mamba." + op + " is for generation and records nothing: train with Forward")
	}
	E, K, N := m.Config.Inner(), m.Config.DConv, m.Config.DState
	if s == nil || s.Conv == nil || s.SSM == nil || s.Conv.Len() != batch*(K-1)*E || s.SSM.Len() != batch*E*N ||
		s.Conv.DType() != m.ALog.DType() || s.SSM.DType() != m.ALog.DType() {
		panic(fmt.Sprintf("advanced: Mamba.%s: state does not fit a batch of %d (want conv (%d, %d, %d) and ssm (%d, %d, %d) of %s)",
			op, batch, batch, K-1, E, batch, E, N, m.ALog.DType()))
	}
}

// MambaState is what a [Mamba] block remembers of a sequence while generating.
type MambaState struct {
	Conv *autodiff.Tensor // (batch, DConv−1, E): the last inputs of the convolution, oldest first
	SSM  *autodiff.Tensor // (batch, E, N): the selective scan's state
}

// NewState returns the empty state (before any token) for batch sequences.
func (m *Mamba) NewState(batch int) *MambaState {
	E, K, N, dt := m.Config.Inner(), m.Config.DConv, m.Config.DState, m.ALog.DType()
	return &MambaState{Conv: autodiff.Zeros(dt, batch, K-1, E), SSM: autodiff.Zeros(dt, batch, E, N)}
}

// Release gives the state's storage back.
func (s *MambaState) Release() {
	s.Conv.Release()
	s.SSM.Release()
}

// scratchTensors collects intermediates to release when no tape owns them.
type scratchTensors []*autodiff.Tensor

func (s *scratchTensors) add(t *autodiff.Tensor) *autodiff.Tensor {
	*s = append(*s, t)
	return t
}

func (s *scratchTensors) release() {
	for _, t := range *s {
		t.Release()
	}
}
