package optim

import "github.com/mlxtrain/mlxtrain/autodiff"

// LionConfig configures Lion.
type LionConfig struct {
	// LR is the learning-rate schedule. Required. Lion's sign update makes every
	// step of size lr, so its rate is usually 3–10× smaller than AdamW's.
	LR Schedule
	// Beta1 interpolates the update direction and Beta2 the momentum; zero means
	// the paper's defaults 0.9 and 0.99.
	Beta1, Beta2 float64
	// WeightDecay is decoupled, as in AdamW: p shrinks by lr·WeightDecay each step.
	WeightDecay float64
	// DecayMask picks the parameters weight decay applies to; nil means
	// DefaultDecayMask.
	DecayMask func(Param) bool
}

// NewLion returns Lion (Chen et al. 2023, "Symbolic Discovery of Optimization
// Algorithms"):
//
//	c ← β1·m + (1−β1)·g
//	p ← p·(1 − lr·wd) − lr·sign(c)
//	m ← β2·m + (1−β2)·g
//
// with sign(0) = 0. Its state is "<name>.exp_avg" (m).
func NewLion(params []Param, cfg LionConfig) (*Optimizer, error) {
	if cfg.Beta1 == 0 {
		cfg.Beta1 = 0.9
	}
	if cfg.Beta2 == 0 {
		cfg.Beta2 = 0.99
	}
	if err := checkBeta("lion", "Beta1", cfg.Beta1); err != nil {
		return nil, err
	}
	if err := checkBeta("lion", "Beta2", cfg.Beta2); err != nil {
		return nil, err
	}
	if err := checkNonNegative("lion", "WeightDecay", cfg.WeightDecay); err != nil {
		return nil, err
	}
	return newOptimizer("lion", params, cfg.LR, cfg.DecayMask, lionRule{cfg}, "exp_avg")
}

type lionRule struct{ cfg LionConfig }

func (r lionRule) update(p, g *autodiff.Tensor, st []*autodiff.Tensor, lr float64, _ int, decay bool) {
	c := r.cfg
	wd := 0.0
	if decay {
		wd = c.WeightDecay
	}
	if p.DType() == autodiff.Float32 {
		lionKernel(p.Float32s(), g.Float32s(), st[0].Float32s(), float32(lr), float32(c.Beta1), float32(c.Beta2), float32(wd))
	} else {
		lionKernel(p.Float64s(), g.Float64s(), st[0].Float64s(), lr, c.Beta1, c.Beta2, wd)
	}
}
