package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/attention"
	"github.com/mlxtrain/mlxtrain/metal"
)

// RoPE checks rotary embeddings forward and backward against the CPU package
// attention's kernels in float64: half-split and interleaved, whole and partial
// rotation, BSHD and BHSD, and positions up to 150000+33 with other bases and a
// position scale, where the angle must be formed more carefully than pos·freq in
// float32. The scale of each output is |a| + |b| of its pair.
func RoPE(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(23, 24))
	const batch = 2
	variants := []metal.RoPEConfig{
		{},
		{Dims: -1, Offset: 4093, Base: 500000, Scale: 0.25}, // Dims −1: half the head
		{Offset: 7, Base: 1e6},
		{Offset: 150000},
	}
	for _, headDim := range []int{8, 32, 64} {
		for _, seq := range []int{1, 7, 33} {
			for _, heads := range []int{1, 3} {
				for _, interleaved := range []bool{false, true} {
					for _, layout := range []metal.AttentionLayout{metal.LayoutBSHD, metal.LayoutBHSD} {
						for vi, v := range variants {
							c := v
							if c.Dims < 0 {
								c.Dims = headDim / 2
							}
							c.Interleaved, c.Layout = interleaved, layout
							n := batch * seq * heads * headDim
							x := Random(r, n, -2, 2)
							in, out, back := Upload(t, d, x), Empty(t, d, n), Empty(t, d, n)
							require.NoError(t, metal.RunRoPE(d, out, in, batch, seq, heads, headDim, c))
							require.NoError(t, metal.RunRoPEBackward(d, back, in, batch, seq, heads, headDim, c))
							opt := attention.RoPEOptions{Base: c.Base, Dims: c.Dims, Interleaved: c.Interleaved,
								Offset: c.Offset, Scale: c.Scale, Layout: attention.BSHD}
							if layout == metal.LayoutBHSD {
								opt.Layout = attention.BHSD
							}
							x64 := f64(x)
							want, wantBack := make([]float64, n), make([]float64, n)
							attention.RoPEForward(want, x64, batch, seq, heads, headDim, opt)
							attention.RoPEBackward(wantBack, x64, batch, seq, heads, headDim, opt)
							scale := ropeScale(x64, headDim, c)
							what := fmt.Sprintf("rope D=%d T=%d H=%d interleaved=%v %v variant %d", headDim, seq, heads, interleaved, layout, vi)
							AssertClose(t, Download(out, n), want, scale, what)
							AssertClose(t, Download(back, n), wantBack, scale, what+" backward")
							release(in, out, back)
						}
					}
				}
			}
		}
	}
	require.NoError(t, d.Synchronize())
}

// ropeScale is |a| + |b| for both elements of each rotated pair (a, b), |x| for
// the dims that pass through.
func ropeScale(x []float64, headDim int, c metal.RoPEConfig) []float64 {
	rot := c.Dims
	if rot == 0 {
		rot = headDim
	}
	s := make([]float64, len(x))
	for base := 0; base < len(x); base += headDim {
		for i := 0; i < rot/2; i++ {
			a, b := base+i, base+i+rot/2
			if c.Interleaved {
				a, b = base+2*i, base+2*i+1
			}
			s[a] = math.Abs(x[a]) + math.Abs(x[b])
			s[b] = s[a]
		}
		for j := rot; j < headDim; j++ {
			s[base+j] = math.Abs(x[base+j])
		}
	}
	return s
}
