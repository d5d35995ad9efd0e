package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/metal"
	"github.com/mlxtrain/mlxtrain/optim"
)

// AdamW checks three successive AdamW steps (bias corrections of steps 1 to 3,
// with and without weight decay) against optim.AdamWKernel in float64. The scale
// of p is |p·decay| + |step|, of m and v the magnitudes of their two terms.
func AdamW(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(33, 34))
	for _, n := range append(Sizes, 1000) {
		for _, wd := range []float32{0, 0.1} {
			p, g := Random(r, n, -1, 1), Random(r, n, -1, 1)
			m, v := Random(r, n, -0.1, 0.1), Random(r, n, 0, 0.01)
			pb, gb, mb, vb := Upload(t, d, p), Upload(t, d, g), Upload(t, d, m), Upload(t, d, v)
			p64, g64, m64, v64 := f64(p), f64(g), f64(m), f64(v)
			const lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
			for step := 1; step <= 3; step++ {
				s := metal.AdamWStep{LR: lr, Beta1: b1, Beta2: b2, Eps: eps, WeightDecay: wd,
					BC1: float32(1 - math.Pow(b1, float64(step))), BC2: float32(1 - math.Pow(b2, float64(step)))}
				require.NoError(t, metal.RunAdamW(d, pb, gb, mb, vb, n, s))
				pScale, mScale, vScale := make([]float64, n), make([]float64, n), make([]float64, n)
				for i := range n {
					mScale[i] = math.Abs(float64(s.Beta1)*m64[i]) + math.Abs((1-float64(s.Beta1))*g64[i])
					vScale[i] = float64(s.Beta2)*v64[i] + (1-float64(s.Beta2))*g64[i]*g64[i]
				}
				optim.AdamWKernel(p64, g64, m64, v64, float64(s.LR), float64(s.Beta1), float64(s.Beta2), float64(s.Eps),
					float64(s.WeightDecay), float64(s.BC1), float64(s.BC2))
				for i := range n {
					step := float64(s.LR) / float64(s.BC1) * m64[i] / (math.Sqrt(v64[i]/float64(s.BC2)) + float64(s.Eps))
					pScale[i] = math.Abs(p64[i]) + 2*math.Abs(step)
				}
				what := fmt.Sprintf("adamw n=%d wd=%g step %d", n, wd, step)
				AssertClose(t, Download(pb, n), p64, pScale, what+" p")
				AssertClose(t, Download(mb, n), m64, mScale, what+" m")
				AssertClose(t, Download(vb, n), v64, vScale, what+" v")
			}
			release(pb, gb, mb, vb)
		}
	}
	require.NoError(t, d.Synchronize())
}
