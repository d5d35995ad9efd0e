package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

var activationSpecial = []float32{0, -0.0, 1e-8, -1e-8, 0.5, -0.5, 1, -1, 1.4142135, -1.4142135, 3, -3, 5.6, -5.6, 8, -8, 20, -20, 80, -80}

// Activations checks GELU (erf and tanh forms) and SiLU, forward and backward,
// against autodiff's unary kernels in float64. The backward's scale is 2·|g|: the
// derivatives are sums of terms of magnitude at most about 1.
func Activations(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(25, 26))
	ops := []struct {
		op   metal.ActivationOp
		kind autodiff.UnaryKind
	}{
		{metal.ActGELU, autodiff.UnGELU},
		{metal.ActGELUTanh, autodiff.UnGELUTanh},
		{metal.ActSiLU, autodiff.UnSiLU},
	}
	for _, n := range append(Sizes, 1000) {
		x := append(Random(r, n, -7, 7), activationSpecial...)
		m := len(x)
		g := Random(r, m, -2, 2)
		xb, gb := Upload(t, d, x), Upload(t, d, g)
		x64, g64 := f64(x), f64(g)
		for _, o := range ops {
			out, dx := Empty(t, d, m), Empty(t, d, m)
			require.NoError(t, metal.RunActivation(d, o.op, out, xb, m))
			require.NoError(t, metal.RunActivationBackward(d, o.op, dx, gb, xb, m))
			want, wantDX := make([]float64, m), make([]float64, m)
			autodiff.UnaryKernel(o.kind, want, x64, 0, 0)
			autodiff.UnaryBackwardKernel(o.kind, wantDX, g64, x64, want, 0, 0)
			scale := make([]float64, m)
			for i := range scale {
				scale[i] = 2 * math.Abs(g64[i])
			}
			AssertClose(t, Download(out, m), want, nil, fmt.Sprintf("activation %d n=%d", o.op, m))
			AssertClose(t, Download(dx, m), wantDX, scale, fmt.Sprintf("activation %d backward n=%d", o.op, m))
			release(out, dx)
		}
		release(xb, gb)
	}
	require.NoError(t, d.Synchronize())
}

// SwiGLU checks silu(gate)·up and its two gradients against float64 formulas.
func SwiGLU(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(27, 28))
	sigmoid := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	for _, n := range append(Sizes, 1000) {
		gate := append(Random(r, n, -8, 8), activationSpecial...)
		m := len(gate)
		up, g := Random(r, m, -3, 3), Random(r, m, -2, 2)
		gateb, upb, gb := Upload(t, d, gate), Upload(t, d, up), Upload(t, d, g)
		out, dgate, dup := Empty(t, d, m), Empty(t, d, m), Empty(t, d, m)
		require.NoError(t, metal.RunSwiGLU(d, out, gateb, upb, m))
		require.NoError(t, metal.RunSwiGLUBackward(d, dgate, dup, gb, gateb, upb, m))
		want, wantDG, wantDU := make([]float64, m), make([]float64, m), make([]float64, m)
		dgScale := make([]float64, m)
		for i := range m {
			a, u, gi := float64(gate[i]), float64(up[i]), float64(g[i])
			s := sigmoid(a)
			want[i] = a * s * u
			wantDU[i] = gi * a * s
			wantDG[i] = gi * u * s * (1 + a*(1-s))
			dgScale[i] = math.Abs(gi*u) * s * (1 + math.Abs(a)*(1-s))
		}
		AssertClose(t, Download(out, m), want, nil, fmt.Sprintf("swiglu n=%d", m))
		AssertClose(t, Download(dup, m), wantDU, nil, fmt.Sprintf("swiglu dup n=%d", m))
		AssertClose(t, Download(dgate, m), wantDG, dgScale, fmt.Sprintf("swiglu dgate n=%d", m))
		release(gateb, upb, gb, out, dgate, dup)
	}
	require.NoError(t, d.Synchronize())
}
