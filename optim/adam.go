package optim

import (
	"fmt"
	"math"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// AdamConfig configures Adam and AdamW.
type AdamConfig struct {
	// LR is the learning-rate schedule (Constant(1e-3) for a fixed rate). Required.
	LR Schedule
	// Beta1 and Beta2 are the decay rates of the first and second moments; zero
	// means the defaults 0.9 and 0.999.
	Beta1, Beta2 float64
	// Eps is added to the root of the second moment; zero means 1e-8.
	Eps float64
	// WeightDecay is the decay coefficient: coupled (added to the gradient as
	// WeightDecay·p) for Adam, decoupled (p shrinks by lr·WeightDecay) for AdamW.
	// Zero turns decay off.
	WeightDecay float64
	// DecayMask picks the parameters weight decay applies to; nil means
	// DefaultDecayMask.
	DecayMask func(Param) bool
}

func (c AdamConfig) withDefaults(kind string) (AdamConfig, error) {
	if c.Beta1 == 0 {
		c.Beta1 = 0.9
	}
	if c.Beta2 == 0 {
		c.Beta2 = 0.999
	}
	if c.Eps == 0 {
		c.Eps = 1e-8
	}
	if err := checkBeta(kind, "Beta1", c.Beta1); err != nil {
		return c, err
	}
	if err := checkBeta(kind, "Beta2", c.Beta2); err != nil {
		return c, err
	}
	if !(c.Eps > 0) || math.IsInf(c.Eps, 0) {
		return c, fmt.Errorf("optim: %s: Eps %v must be positive", kind, c.Eps)
	}
	return c, checkNonNegative(kind, "WeightDecay", c.WeightDecay)
}

func checkBeta(kind, name string, b float64) error {
	if !(b >= 0 && b < 1) {
		return fmt.Errorf("optim: %s: %s %v must be in [0, 1)", kind, name, b)
	}
	return nil
}

func checkNonNegative(kind, name string, v float64) error {
	if !(v >= 0) || math.IsInf(v, 0) {
		return fmt.Errorf("optim: %s: %s %v must be finite and ≥ 0", kind, name, v)
	}
	return nil
}

// NewAdam returns Adam (Kingma & Ba) with bias correction and, when WeightDecay is
// set, coupled L2 decay as PyTorch's Adam applies it: g ← g + wd·p, then
//
//	m ← β1·m + (1−β1)·g,  v ← β2·v + (1−β2)·g²
//	p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + eps)
//
// with t the parameter's update count. Its state is "<name>.exp_avg" (m) and
// "<name>.exp_avg_sq" (v).
func NewAdam(params []Param, cfg AdamConfig) (*Optimizer, error) {
	cfg, err := cfg.withDefaults("adam")
	if err != nil {
		return nil, err
	}
	return newOptimizer("adam", params, cfg.LR, cfg.DecayMask, adamRule{cfg, false}, "exp_avg", "exp_avg_sq")
}

// NewAdamW returns AdamW (Loshchilov & Hutter) in PyTorch's form: the decoupled
// decay shrinks the parameter first, p ← p·(1 − lr·wd), and the Adam update of
// [NewAdam] (without the L2 term) follows; see [AdamWKernel], which does both in one
// pass. The decay follows the learning rate's schedule, as in PyTorch and MLX.
// The default mask (DefaultDecayMask) spares biases, norms, embeddings and vectors.
func NewAdamW(params []Param, cfg AdamConfig) (*Optimizer, error) {
	cfg, err := cfg.withDefaults("adamw")
	if err != nil {
		return nil, err
	}
	return newOptimizer("adamw", params, cfg.LR, cfg.DecayMask, adamRule{cfg, true}, "exp_avg", "exp_avg_sq")
}

type adamRule struct {
	cfg       AdamConfig
	decoupled bool
}

func (r adamRule) update(p, g *autodiff.Tensor, st []*autodiff.Tensor, lr float64, t int, decay bool) {
	if p.DType() == autodiff.Float32 {
		adamUpdate[float32](r, p, g, st, lr, t, decay)
	} else {
		adamUpdate[float64](r, p, g, st, lr, t, decay)
	}
}

func adamUpdate[T autodiff.Float](r adamRule, p, g *autodiff.Tensor, st []*autodiff.Tensor, lr float64, t int, decay bool) {
	c := r.cfg
	wd := 0.0
	if decay {
		wd = c.WeightDecay
	}
	bc1 := 1 - math.Pow(c.Beta1, float64(t))
	bc2 := 1 - math.Pow(c.Beta2, float64(t))
	kernel := adamKernel[T]
	if r.decoupled && adamwOnDevice(p, g, st[0], st[1], metal.AdamWStep{LR: float32(lr), Beta1: float32(c.Beta1), Beta2: float32(c.Beta2),
		Eps: float32(c.Eps), WeightDecay: float32(wd), BC1: float32(bc1), BC2: float32(bc2)}) {
		return
	}
	if r.decoupled {
		kernel = AdamWKernel[T]
	}
	kernel(view[T](p), view[T](g), view[T](st[0]), view[T](st[1]), T(lr), T(c.Beta1), T(c.Beta2), T(c.Eps), T(wd), T(bc1), T(bc2))
}
