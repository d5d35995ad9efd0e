package metal

import "math"

// AdamWStep holds the hyperparameters of one AdamW step, as optim.AdamWKernel
// takes them: BC1 = 1 − β1ᵗ and BC2 = 1 − β2ᵗ are the bias corrections (1 for none).
type AdamWStep struct {
	LR, Beta1, Beta2, Eps, WeightDecay, BC1, BC2 float32
}

type adamwParams struct {
	N                              uint32
	StepSize, Beta1, C1, Beta2, C2 float32
	Eps, RBC2, Decay               float32
}

// RunAdamW applies one AdamW step to the n parameters p in place, updating the
// moments m and v, in one pass (adamw_f32), as optim.AdamWKernel does:
//
//	p ← p·(1 − lr·wd);  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
//	p ← p − (lr/bc1)·m / (√v/√bc2 + eps)
func RunAdamW(d Compute, p, g, m, v *Buffer, n int, s AdamWStep) error {
	const kernel = "adamw_f32"
	if err := checkCount(kernel, n); err != nil {
		return err
	}
	if err := checkBuffers(kernel, need{"p", p, n, false}, need{"g", g, n, false}, need{"m", m, n, false}, need{"v", v, n, false}); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	// the same float32 arithmetic as optim.AdamWKernel[float32]
	stepSize := s.LR / s.BC1
	rbc2 := 1 / float32(math.Sqrt(float64(s.BC2)))
	decay := 1 - s.LR*s.WeightDecay
	return d.Dispatch(&Launch{
		Kernel:  kernel,
		Groups:  [3]int{groupsFor(n, elementwiseGroup), 1, 1},
		Threads: [3]int{elementwiseGroup, 1, 1},
		Args: []Arg{InOut(0, p), In(1, g), InOut(2, m), InOut(3, v),
			Params(4, adamwParams{uint32(n), stepSize, s.Beta1, 1 - s.Beta1, s.Beta2, 1 - s.Beta2, s.Eps, rbc2, decay})},
	})
}
