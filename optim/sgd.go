package optim

import (
	"fmt"

	"github.com/mlxtrain/mlxtrain/autodiff"
)

// SGDConfig configures stochastic gradient descent.
type SGDConfig struct {
	// LR is the learning-rate schedule. Required.
	LR Schedule
	// Momentum μ (0 for plain SGD) and Dampening d of the momentum buffer.
	Momentum, Dampening float64
	// Nesterov uses Nesterov momentum; it needs Momentum > 0 and Dampening 0.
	Nesterov bool
	// WeightDecay is coupled L2 decay: the gradient becomes g + WeightDecay·p.
	WeightDecay float64
	// DecayMask picks the parameters weight decay applies to; nil means
	// DefaultDecayMask (use DecayAll for PyTorch's decay-everything behaviour).
	DecayMask func(Param) bool
}

// NewSGD returns SGD with PyTorch's momentum formulation:
//
//	g ← g + wd·p
//	b ← g on a parameter's first update, μ·b + (1−d)·g after
//	g ← g + μ·b with Nesterov, b without
//	p ← p − lr·g
//
// With momentum its state is "<name>.momentum_buffer" (b); the first update
// copies the gradient into b undamped, as PyTorch does (MLX starts b at zero and
// damps from the first step).
func NewSGD(params []Param, cfg SGDConfig) (*Optimizer, error) {
	if err := checkNonNegative("sgd", "Momentum", cfg.Momentum); err != nil {
		return nil, err
	}
	if !(cfg.Dampening >= 0 && cfg.Dampening <= 1) {
		return nil, fmt.Errorf("optim: sgd: Dampening %v must be in [0, 1]", cfg.Dampening)
	}
	if cfg.Nesterov && (cfg.Momentum == 0 || cfg.Dampening != 0) {
		return nil, fmt.Errorf("optim: sgd: Nesterov needs Momentum > 0 and Dampening 0 (have %v and %v)", cfg.Momentum, cfg.Dampening)
	}
	if err := checkNonNegative("sgd", "WeightDecay", cfg.WeightDecay); err != nil {
		return nil, err
	}
	var slots []string
	if cfg.Momentum != 0 {
		slots = []string{"momentum_buffer"}
	}
	return newOptimizer("sgd", params, cfg.LR, cfg.DecayMask, sgdRule{cfg}, slots...)
}

type sgdRule struct{ cfg SGDConfig }

func (r sgdRule) update(p, g *autodiff.Tensor, st []*autodiff.Tensor, lr float64, t int, decay bool) {
	if p.DType() == autodiff.Float32 {
		sgdUpdate[float32](r.cfg, p, g, st, lr, t, decay)
	} else {
		sgdUpdate[float64](r.cfg, p, g, st, lr, t, decay)
	}
}

func sgdUpdate[T autodiff.Float](c SGDConfig, p, g *autodiff.Tensor, st []*autodiff.Tensor, lr float64, t int, decay bool) {
	wd := 0.0
	if decay {
		wd = c.WeightDecay
	}
	var buf []T
	if len(st) > 0 {
		buf = view[T](st[0])
	}
	sgdKernel(view[T](p), view[T](g), buf, T(lr), T(c.Momentum), T(c.Dampening), T(wd), c.Nesterov, t == 1)
}
