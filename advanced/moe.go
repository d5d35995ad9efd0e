package advanced

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/internal/vecmath"
	"github.com/mlxtrain/mlxtrain/layers"
	"github.com/mlxtrain/mlxtrain/metal"
)

// MoEConfig sizes and configures a [MoE] feed-forward. Zero fields take the
// defaults noted per field; see [MoEConfig.WithDefaults].
type MoEConfig struct {
	Dim     int // the model width (hidden_size); required
	Hidden  int // each expert's hidden width (moe_intermediate_size): 4·Dim
	Experts int // E, the routed experts (num_local_experts); required
	TopK    int // experts per token (num_experts_per_tok): min(2, E)

	// Act is the experts' activation: layers.ActGELU (the default; bias and GELU
	// fused after each expert's GEMM), ActGELUTanh, ActReLU, ActSiLU, or ActSwiGLU
	// (a gate_proj as well: down(silu(gate(x))·up(x))).
	Act  layers.Activation
	Bias bool // biases on the experts' projections (and the shared experts')

	Score RouterScore // the router's scores: ScoreSoftmax
	Gate  GateNorm    // the chosen experts' weights: GateSoftmaxTopK

	// SharedExperts always-on experts (n_shared_experts) process every token
	// with weight 1, held as one MLP of width SharedExperts·SharedHidden as
	// DeepSeek does; SharedHidden is Hidden when 0.
	SharedExperts, SharedHidden int

	// CapacityFactor limits each expert to ⌈CapacityFactor·tokens·TopK/E⌉ (token,
	// slot) pairs of a training batch (see [ExpertCapacity]); the earliest
	// tokens are kept, the rest dropped (they add nothing; the residual carries
	// the token). 0 is dropless. Inference (a Ctx not training) never drops, so
	// evaluation and generation do not depend on what else is in the batch.
	CapacityFactor float64

	// The auxiliary loss is AuxLossCoef·LoadBalanceLoss + ZLossCoef·RouterZLoss
	// (router_aux_loss_coef, router_z_loss_coef); both 0 by default.
	AuxLossCoef, ZLossCoef float64

	// Init draws the router and the input projections (gate_proj, up_proj);
	// OutInit the output projections (down_proj), which write into the
	// residual stream. A zero Std is uniform in ±1/√fan_in.
	Init, OutInit layers.Init
}

// WithDefaults fills the zero fields with the defaults.
func (c MoEConfig) WithDefaults() MoEConfig {
	if c.Hidden == 0 {
		c.Hidden = 4 * c.Dim
	}
	if c.TopK == 0 {
		c.TopK = min(2, max(c.Experts, 1))
	}
	if c.Act == "" {
		c.Act = layers.ActGELU
	}
	if c.Score == "" {
		c.Score = ScoreSoftmax
	}
	if c.Gate == "" {
		c.Gate = GateSoftmaxTopK
	}
	if c.SharedHidden == 0 {
		c.SharedHidden = c.Hidden
	}
	return c
}

// Validate reports the first invalid field of a config (after defaults).
func (c MoEConfig) Validate() error {
	switch {
	case c.Dim <= 0 || c.Hidden <= 0:
		return fmt.Errorf("moe: dim %d, hidden %d: want > 0", c.Dim, c.Hidden)
	case c.Experts <= 0:
		return fmt.Errorf("moe: experts %d: want > 0", c.Experts)
	case c.TopK <= 0 || c.TopK > c.Experts:
		return fmt.Errorf("moe: top_k %d: want 1 … %d (the experts)", c.TopK, c.Experts)
	case c.SharedExperts < 0 || c.SharedHidden <= 0:
		return fmt.Errorf("moe: shared experts %d of width %d: want ≥ 0 experts of width > 0", c.SharedExperts, c.SharedHidden)
	case !(c.CapacityFactor >= 0) || math.IsInf(c.CapacityFactor, 0):
		return fmt.Errorf("moe: capacity factor %g: want ≥ 0 (0 is dropless)", c.CapacityFactor)
	case !(c.AuxLossCoef >= 0) || !(c.ZLossCoef >= 0):
		return fmt.Errorf("moe: aux loss coefficient %g, z-loss coefficient %g: want ≥ 0", c.AuxLossCoef, c.ZLossCoef)
	case !c.Score.valid():
		return fmt.Errorf("moe: score %q is not %q or %q", c.Score, ScoreSoftmax, ScoreSigmoid)
	case !c.Gate.valid():
		return fmt.Errorf("moe: gate %q is not %q, %q or %q", c.Gate, GateSoftmaxTopK, GateRenormalize, GateScores)
	}
	switch c.Act {
	case layers.ActGELU, layers.ActGELUTanh, layers.ActReLU, layers.ActSiLU, layers.ActSwiGLU:
	default:
		return fmt.Errorf("moe: activation %q is not one of gelu, gelu_tanh, relu, silu, swiglu", c.Act)
	}
	return nil
}

// MoE is a mixture-of-experts feed-forward on (..., Dim) inputs (a model's
// (batch, seq, hidden)):
//
//	logits = x·Routerᵀ                       (E per token; no bias)
//	gates, experts = top-k of logits        (see RouterGates)
//	y = Σ_j gates_j · expert_{e_j}(x) + shared(x)
//
// computed by sorting the (token, slot) pairs by expert ([NewRouting]),
// gathering each expert's tokens into a contiguous block ([Dispatch]), one GEMM
// per expert and projection ([GroupedLinearGELU], [GroupedLinear]), and a
// weighted scatter back ([Combine]), each with its own backward.
//
// On a device (Metal, or MLXTRAIN_DEVICE=sim) every step has a kernel: the
// router's top-k, the sort by expert (the host reads back only the group
// offsets), the auxiliary losses, and each projection as one launch over
// every expert (MLX's gather_mm).
//
// Parameter names follow mlx-lm's SwitchGLU/SwitchMLP layout, one stacked
// tensor per projection: gate.weight (E, Dim) for the router;
// switch_mlp.gate_proj.weight (E, Hidden, Dim) with SwiGLU,
// switch_mlp.up_proj.weight (E, Hidden, Dim), switch_mlp.down_proj.weight (E,
// Dim, Hidden), their .bias (E, Hidden) and (E, Dim) with Bias; the shared
// experts under shared_experts.{gate,up,down}_proj as a dense MLP.
//
// A training Forward (with a tape) also leaves the auxiliary loss for
// [MoE.TakeAuxLoss] and the routing statistics for [MoE.Stats].
type MoE struct {
	Config MoEConfig // with defaults filled in

	Router   *layers.Linear   // (E, Dim), no bias: "gate"
	GateProj *autodiff.Tensor // (E, Hidden, Dim), SwiGLU only
	UpProj   *autodiff.Tensor // (E, Hidden, Dim)
	DownProj *autodiff.Tensor // (E, Dim, Hidden)
	GateBias *autodiff.Tensor // (E, Hidden), SwiGLU with Bias only
	UpBias   *autodiff.Tensor // (E, Hidden), with Bias only
	DownBias *autodiff.Tensor // (E, Dim), with Bias only
	Shared   *layers.MLP      // nil without shared experts

	// Frozen, quantized stacks (package quant) in place of GateProj, UpProj and
	// DownProj, or nil.
	GatePacked, UpPacked, DownPacked PackedExperts

	mu      sync.Mutex
	pending *autodiff.Tensor // the last training forward's auxiliary loss
	stats   MoEStats
}

// MoEStats describes the routing of one forward pass.
type MoEStats struct {
	Tokens  int
	TopK    int
	Routed  []int   // (token, slot) pairs routed to each expert
	Load    []int   // pairs each expert processed: Routed less the dropped ones
	Dropped int     // pairs dropped for capacity
	Balance float64 // LoadBalanceLoss (before its coefficient)
	ZLoss   float64 // RouterZLoss (before its coefficient)
}

// DropRate is the fraction of (token, slot) pairs dropped.
func (s MoEStats) DropRate() float64 {
	if s.Tokens == 0 {
		return 0
	}
	return float64(s.Dropped) / float64(s.Tokens*s.TopK)
}

// MaxLoad is the busiest expert's load over the mean load (1 when even).
func (s MoEStats) MaxLoad() float64 {
	total, most := 0, 0
	for _, n := range s.Load {
		total += n
		most = max(most, n)
	}
	if total == 0 {
		return 0
	}
	return float64(most) * float64(len(s.Load)) / float64(total)
}

// NewMoE returns a mixture of experts with weights drawn from rng (see
// [MoEConfig] for the inits); biases start at zero.
func NewMoE(rng *autodiff.RNG, dtype autodiff.DType, cfg MoEConfig) (*MoE, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !dtype.IsFloat() {
		return nil, fmt.Errorf("moe: dtype %s: want float32 or float64", dtype)
	}
	if rng == nil {
		return nil, errors.New("moe: no RNG for the initial weights")
	}
	E, D, H := cfg.Experts, cfg.Dim, cfg.Hidden
	m := &MoE{Config: cfg}
	m.Router = layers.NewLinear(rng, dtype, D, E, false, cfg.Init)
	draw := func(init layers.Init, shape ...int) *autodiff.Tensor {
		if init.Std > 0 {
			return autodiff.RandNormal(rng, dtype, 0, init.Std, shape...)
		}
		bound := 1 / math.Sqrt(float64(shape[len(shape)-1]))
		return autodiff.RandUniform(rng, dtype, -bound, bound, shape...)
	}
	if cfg.Act == layers.ActSwiGLU {
		m.GateProj = draw(cfg.Init, E, H, D)
		if cfg.Bias {
			m.GateBias = autodiff.Zeros(dtype, E, H)
		}
	}
	m.UpProj = draw(cfg.Init, E, H, D)
	m.DownProj = draw(cfg.OutInit, E, D, H)
	if cfg.Bias {
		m.UpBias = autodiff.Zeros(dtype, E, H)
		m.DownBias = autodiff.Zeros(dtype, E, D)
	}
	if cfg.SharedExperts > 0 {
		S := cfg.SharedExperts * cfg.SharedHidden
		m.Shared = &layers.MLP{Act: cfg.Act}
		if cfg.Act == layers.ActSwiGLU {
			m.Shared.Gate = layers.NewLinear(rng, dtype, D, S, cfg.Bias, cfg.Init)
		}
		m.Shared.Up = layers.NewLinear(rng, dtype, D, S, cfg.Bias, cfg.Init)
		m.Shared.Down = layers.NewLinear(rng, dtype, S, D, cfg.Bias, cfg.OutInit)
	}
	return m, nil
}

// PackedExperts is a frozen stack of expert matrices (E, out, in) kept in a
// compact form (package quant: MLX's QuantizedSwitchLinear) in place of a
// projection's stacked weight.
type PackedExperts interface {
	Dims() (experts, out, in int)
	// GroupedLinear is GroupedLinear with the packed stack: x·W_eᵀ + b_e on each
	// expert's rows, differentiable with respect to x and b.
	GroupedLinear(x, b *autodiff.Tensor, offsets []int) *autodiff.Tensor
	// Params lists the stored tensors under prefix (MLX: weight, scales, biases).
	Params(prefix string) []autodiff.Param
}

// deviceOffsetExperts is a PackedExperts whose grouped products also take
// the offsets as a device tensor (int32, at least E+1: a device routing's),
// calling offsets only on a CPU path (quant.Experts): a forward on the device
// then reads the routing back only for the statistics.
type deviceOffsetExperts interface {
	GroupedLinearOffsets(x, b *autodiff.Tensor, offsets func() []int, dev *autodiff.Tensor) *autodiff.Tensor
}

// Params lists the parameters: the router, the experts' stacked projections,
// the shared experts.
func (m *MoE) Params(prefix string) []autodiff.Param {
	ps := m.Router.Params(prefix + "gate.")
	add := func(name string, t *autodiff.Tensor) {
		if t != nil {
			ps = append(ps, autodiff.Param{Name: prefix + "switch_mlp." + name, Value: t})
		}
	}
	addW := func(name string, t *autodiff.Tensor, p PackedExperts) {
		if p != nil {
			ps = append(ps, p.Params(prefix+"switch_mlp."+name+".")...)
		} else {
			add(name+".weight", t)
		}
	}
	addW("gate_proj", m.GateProj, m.GatePacked)
	add("gate_proj.bias", m.GateBias)
	addW("up_proj", m.UpProj, m.UpPacked)
	add("up_proj.bias", m.UpBias)
	addW("down_proj", m.DownProj, m.DownPacked)
	add("down_proj.bias", m.DownBias)
	if m.Shared != nil {
		ps = append(ps, m.Shared.Params(prefix+"shared_experts.")...)
	}
	return ps
}

// Linears lists the router and the shared experts' projections, for LoRA (the
// stacked expert weights are not layers.Linear).
func (m *MoE) Linears(prefix string) []layers.NamedLinear {
	ls := []layers.NamedLinear{{Name: prefix + "gate", Linear: m.Router}}
	if m.Shared != nil {
		ls = append(ls, m.Shared.Linears(prefix+"shared_experts.")...)
	}
	return ls
}

// Forward applies the layer to x (..., Dim). When it records on a tape
// (training) it also keeps the auxiliary loss for [MoE.TakeAuxLoss] (when a
// coefficient is set) and the statistics for [MoE.Stats], replacing those of
// the previous training forward; otherwise it keeps nothing.
func (m *MoE) Forward(c *layers.Ctx, x *autodiff.Tensor) *autodiff.Tensor {
	y, aux, stats := m.forward(c, x, nil, false)
	if y.Tape() != nil {
		m.mu.Lock()
		m.pending, m.stats = aux, stats
		m.mu.Unlock()
	}
	return y
}

// ForwardAux is Forward returning, instead of keeping them, the auxiliary loss
// (AuxLossCoef·LoadBalanceLoss + ZLossCoef·RouterZLoss, a scalar recorded on
// the tape as y is; nil when both coefficients are 0) and the statistics of
// this call.
func (m *MoE) ForwardAux(c *layers.Ctx, x *autodiff.Tensor) (y, aux *autodiff.Tensor, stats MoEStats) {
	return m.forward(c, x, nil, true)
}

// ForwardAuxResidual is ForwardAux with the residual connection: y = res +
// MoE(x), res shaped like x, the sum formed as the experts' outputs are
// combined rather than in a pass of its own.
func (m *MoE) ForwardAuxResidual(c *layers.Ctx, x, res *autodiff.Tensor) (y, aux *autodiff.Tensor, stats MoEStats) {
	if !slices.Equal(x.Shape(), res.Shape()) || res.DType() != x.DType() {
		panic(fmt.Sprintf("advanced: MoE.ForwardAuxResidual: residual %s %v for input %s %v", res.DType(), res.Shape(), x.DType(), x.Shape()))
	}
	return m.forward(c, x, res, true)
}

// TakeAuxLoss returns the auxiliary loss of the last training Forward and
// forgets it, or nil (no coefficient set, or already taken). Add it to the
// language-model loss before Backward: its gradient reaches the router through
// the tape that forward used.
func (m *MoE) TakeAuxLoss() *autodiff.Tensor {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.pending
	m.pending = nil
	return t
}

// Stats returns the routing statistics of the last training Forward.
func (m *MoE) Stats() MoEStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

// forward computes the output (plus res, when not nil) and, when it records or
// always is set, the auxiliary loss and the statistics.
func (m *MoE) forward(c *layers.Ctx, x, res *autodiff.Tensor, always bool) (*autodiff.Tensor, *autodiff.Tensor, MoEStats) {
	cfg := m.Config
	if x.Rank() == 0 || x.Dim(-1) != cfg.Dim || x.DType() != m.Router.DType() {
		panic(fmt.Sprintf("advanced: MoE.Forward: input %s %v for a layer of width %d in %s", x.DType(), x.Shape(), cfg.Dim, m.Router.DType()))
	}
	E, k := cfg.Experts, cfg.TopK
	N := x.Len() / cfg.Dim
	var tmp scratchTensors
	logits := tmp.add(m.Router.Forward(c, x))
	gates, experts := RouterGates(logits, k, cfg.Score, cfg.Gate)
	tmp.add(gates)
	defer experts.Release()
	capacity := 0
	if c.Training() {
		capacity = ExpertCapacity(cfg.CapacityFactor, N, k, E)
	}
	r := route(experts, N, k, E, capacity)

	ys := tmp.add(m.experts(c, x, r, &tmp))
	var y *autodiff.Tensor
	if res != nil {
		res2 := tmp.add(autodiff.Reshape(res, N, cfg.Dim))
		y = autodiff.Reshape(tmp.add(CombineResidual(ys, gates, r, res2)), x.Shape()...)
	} else {
		y = autodiff.Reshape(tmp.add(Combine(ys, gates, r)), x.Shape()...)
	}
	if m.Shared != nil {
		y = autodiff.Add(tmp.add(y), tmp.add(m.shared(c, x, &tmp)))
	}
	recorded := y.Tape() != nil
	if !recorded {
		// Nothing recorded: the intermediates are ours to release.
		defer tmp.release()
		defer releaseTensors(r.tensors()...)
	} else {
		autodiff.Own(y, r.tensors()...) // the backward ops use the routing
	}
	if !recorded && !always {
		return y, nil, MoEStats{}
	}

	r.host() // the statistics read the routing back
	st := MoEStats{Tokens: N, TopK: k, Routed: r.Routed, Load: r.Load(), Dropped: r.Dropped}
	if cfg.AuxLossCoef == 0 || cfg.ZLossCoef == 0 {
		st.Balance, st.ZLoss = routerStatValues(logits, experts, k, cfg.Score)
	}
	var aux, lb, z *autodiff.Tensor
	if cfg.AuxLossCoef > 0 && cfg.ZLossCoef > 0 {
		lb, z = routerLossesDevice(logits, experts, cfg.Score) // one pass over the logits for both
	}
	if cfg.AuxLossCoef > 0 {
		if lb == nil {
			lb = LoadBalanceLoss(logits, experts, cfg.Score)
		}
		tmp.add(lb)
		st.Balance = lb.Item()
		aux = tmp.add(autodiff.MulScalar(lb, cfg.AuxLossCoef))
	}
	if cfg.ZLossCoef > 0 {
		if z == nil {
			z = RouterZLoss(logits)
		}
		tmp.add(z)
		st.ZLoss = z.Item()
		zc := tmp.add(autodiff.MulScalar(z, cfg.ZLossCoef))
		if aux == nil {
			aux = zc
		} else {
			aux = tmp.add(autodiff.Add(aux, zc))
		}
	}
	if aux != nil && !recorded {
		aux = aux.Clone() // tmp releases the original
	}
	return y, aux, st
}

// routerStatValues returns the load-balancing loss and the router z-loss of a
// batch, without recording them: for the statistics.
func routerStatValues(logits, experts *autodiff.Tensor, k int, score RouterScore) (balance, z float64) {
	E := logits.Dim(-1)
	rows := logits.Len() / E
	tm := startTimer()
	if sums, lse := routerStatsDevice(logits, experts, k, score); sums != nil {
		v := sums.Float32s()
		balance, z = balanceOf(v, rows, E), float64(v[2*E])/float64(rows)
		releaseTensors(sums, lse)
		tm.doneOn("moe_router_stats", metal.PathMetal, logits.Len()*4)
		return balance, z
	}
	switch {
	case score == ScoreSoftmax && logits.DType() == autodiff.Float32:
		balance, z = routerStatsSoftmax(logits.Float32s(), experts.Int32s(), rows, E)
	case score == ScoreSoftmax:
		balance, z = routerStatsSoftmax(logits.Float64s(), experts.Int32s(), rows, E)
	case logits.DType() == autodiff.Float32:
		balance = LoadBalanceForward(logits.Float32s(), experts.Int32s(), rows, E, k, score, nil, nil)
		z = RouterZForward(logits.Float32s(), rows, E, nil)
	default:
		balance = LoadBalanceForward(logits.Float64s(), experts.Int32s(), rows, E, k, score, nil, nil)
		z = RouterZForward(logits.Float64s(), rows, E, nil)
	}
	tm.done("moe_router_stats", logits.Len()*logits.DType().Size())
	return balance, z
}

// routerStatsSoftmax is LoadBalanceForward (softmax scores) and RouterZForward
// of the same logits in one pass: each row's exponentials give both its
// probabilities and its log-sum-exp. The partial sums cover lossBlock rows, as
// LoadBalanceForward's do, so the result does not depend on the thread count.
// Float32 logits take vecmath's exponential (relative error below 2e-7).
func routerStatsSoftmax[T autodiff.Float](logits []T, experts []int32, rows, E int) (balance, z float64) {
	if rows <= 0 || E < 1 {
		return 0, 0
	}
	f := make([]float64, E)
	for _, e := range experts {
		if e < 0 || int(e) >= E {
			panic(fmt.Sprintf("advanced: router statistics: expert %d of %d", e, E))
		}
		f[e]++
	}
	blocks := ceilDiv(rows, lossBlock)
	part := make([]float64, blocks*(E+1)) // per block: Σ p[e] over its rows, then Σ lse²
	l32, _ := any(logits).([]float32)
	metal.ParallelFor(blocks, 1, func(lo, hi int) {
		p := make([]float64, E)
		var e32 []float32
		if l32 != nil {
			e32 = make([]float32, E)
		}
		for b := lo; b < hi; b++ {
			sum := part[b*(E+1) : (b+1)*(E+1)]
			for n := b * lossBlock; n < min(rows, (b+1)*lossBlock); n++ {
				if l32 != nil && routerStatsRow32(sum, e32, l32[n*E:(n+1)*E]) {
					continue
				}
				row := logits[n*E : (n+1)*E]
				top := math.Inf(-1)
				for _, v := range row {
					top = math.Max(top, float64(v))
				}
				var s float64
				for e, v := range row {
					p[e] = math.Exp(float64(v) - top)
					s += p[e]
				}
				inv := 1 / s
				for e, v := range p {
					sum[e] += v * inv
				}
				lse := top
				if !math.IsInf(top, 0) {
					lse += math.Log(s)
				}
				sum[E] += lse * lse
			}
		}
	})
	for e := range E {
		var P float64
		for b := range blocks {
			P += part[b*(E+1)+e]
		}
		balance += f[e] / float64(rows) * (P / float64(rows))
	}
	for b := range blocks {
		z += part[b*(E+1)+E]
	}
	return float64(E) * balance, z / float64(rows)
}

// routerStatsRow32 adds one float32 row's probabilities to sum[:E] and its
// lse² to sum[E], with vecmath's (inlined) exponential; e32 is scratch of E.
// It returns false, adding nothing, for a row holding a NaN or +Inf or all
// −Inf, which the float64 path then takes.
func routerStatsRow32(sum []float64, e32, row []float32) bool {
	top := row[0]
	for _, v := range row {
		if v != v {
			return false
		}
		top = max(top, v)
	}
	if math.IsInf(float64(top), 0) {
		return false
	}
	var s float32
	for e, v := range row {
		x := vecmath.Exp(v - top)
		e32[e] = x
		s += x
	}
	inv := 1 / s
	for e, v := range e32 {
		sum[e] += float64(v * inv)
	}
	lse := float64(top) + math.Log(float64(s))
	sum[len(e32)] += lse * lse
	return true
}

// hidden is the experts' activations on the dispatched rows xs.
func (m *MoE) hidden(c *layers.Ctx, xs *autodiff.Tensor, r *Routing, tmp *scratchTensors) *autodiff.Tensor {
	switch {
	case m.Config.Act == layers.ActGELU && m.UpPacked == nil:
		return tmp.add(groupedLinear("moe_grouped_linear_gelu", xs, c.Param(m.UpProj), c.Param(m.UpBias), nil, r, true))
	case m.Config.Act == layers.ActSwiGLU:
		g := tmp.add(m.grouped(c, xs, m.GateProj, m.GatePacked, m.GateBias, r))
		u := tmp.add(m.grouped(c, xs, m.UpProj, m.UpPacked, m.UpBias, r))
		return tmp.add(layers.SwiGLUOp(g, u))
	}
	pre := tmp.add(m.grouped(c, xs, m.UpProj, m.UpPacked, m.UpBias, r))
	return tmp.add(activate(m.Config.Act, pre))
}

// grouped is GroupedLinear with the stacked weight w, or with its packed form.
func (m *MoE) grouped(c *layers.Ctx, x, w *autodiff.Tensor, p PackedExperts, b *autodiff.Tensor, r *Routing) *autodiff.Tensor {
	if p != nil {
		if q, ok := p.(deviceOffsetExperts); ok && r.dev != nil {
			return q.GroupedLinearOffsets(x, c.Param(b), func() []int { return r.host().Offsets }, r.dev.info)
		}
		return p.GroupedLinear(x, c.Param(b), r.host().Offsets)
	}
	return groupedLinear("moe_grouped_linear", x, c.Param(w), c.Param(b), nil, r, false)
}

func activate(act layers.Activation, x *autodiff.Tensor) *autodiff.Tensor {
	switch act {
	case layers.ActGELU:
		return autodiff.GELU(x)
	case layers.ActGELUTanh:
		return autodiff.GELUTanh(x)
	case layers.ActReLU:
		return autodiff.ReLU(x)
	case layers.ActSiLU:
		return autodiff.SiLU(x)
	}
	panic("advanced: MoE: unknown activation " + string(act))
}

// shared applies the shared experts; a GELU MLP without LoRA runs its up
// projection as a one-group GroupedLinearGELU (bias and GELU fused).
func (m *MoE) shared(c *layers.Ctx, x *autodiff.Tensor, tmp *scratchTensors) *autodiff.Tensor {
	s := m.Shared
	if s.Act != layers.ActGELU || s.Up.LoRA != nil || s.Down.LoRA != nil || s.Up.Packed != nil || s.Down.Packed != nil {
		return s.Forward(c, x)
	}
	D, S := m.Config.Dim, s.Up.Out()
	N := x.Len() / D
	w := tmp.add(autodiff.Reshape(c.Param(s.Up.Weight), 1, S, D))
	var b *autodiff.Tensor
	if s.Up.Bias != nil {
		b = tmp.add(autodiff.Reshape(c.Param(s.Up.Bias), 1, S))
	}
	x2 := tmp.add(autodiff.Reshape(x, N, D))
	h := tmp.add(GroupedLinearGELU(x2, w, b, []int{0, N}))
	y := tmp.add(layers.LinearOp(h, c.Param(s.Down.Weight), c.Param(s.Down.Bias)))
	return autodiff.Reshape(y, x.Shape()...)
}
