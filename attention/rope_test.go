package attention

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ropeClosedForm rotates x (BSHD or BHSD) pair by pair with an explicit 2×2
// rotation matrix, the pairs and angles written from the published conventions:
// GPT-J rotates (x[2i], x[2i+1]); Llama/NeoX rotate (x[i], x[i+R/2]), both by
// position·base^(−2i/R).
func ropeClosedForm(x []float64, B, S, H, D int, opt RoPEOptions) []float64 {
	out := append([]float64(nil), x...)
	base, r, scale := opt.Base, opt.Dims, opt.Scale
	if base == 0 {
		base = 10000
	}
	if r == 0 {
		r = D
	}
	if scale == 0 {
		scale = 1
	}
	for b := range B {
		for s := range S {
			for h := range H {
				row := ((b*S+s)*H + h) * D
				if opt.Layout == BHSD {
					row = ((b*H+h)*S + s) * D
				}
				for i := range r / 2 {
					theta := float64(opt.Offset+s) * scale / math.Pow(base, float64(2*i)/float64(r))
					rot := [2][2]float64{{math.Cos(theta), -math.Sin(theta)}, {math.Sin(theta), math.Cos(theta)}}
					ia, ib := row+i, row+i+r/2
					if opt.Interleaved {
						ia, ib = row+2*i, row+2*i+1
					}
					a, c := x[ia], x[ib]
					out[ia] = rot[0][0]*a + rot[0][1]*c
					out[ib] = rot[1][0]*a + rot[1][1]*c
				}
			}
		}
	}
	return out
}

var ropeCases = []struct {
	B, S, H, D int
	opt        RoPEOptions
}{
	{1, 1, 1, 2, RoPEOptions{}},
	{2, 7, 3, 8, RoPEOptions{}},
	{2, 7, 3, 8, RoPEOptions{Interleaved: true}},
	{1, 33, 2, 16, RoPEOptions{Dims: 8, Base: 500000, Offset: 100}},
	{1, 33, 2, 16, RoPEOptions{Dims: 6, Interleaved: true, Scale: 0.25, Layout: BHSD}},
	{3, 5, 4, 64, RoPEOptions{Offset: 4090, Layout: BHSD}},
	{1, 0, 2, 8, RoPEOptions{}},
}

func TestRoPEMatchesClosedForm(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, c := range ropeCases {
		t.Run(fmt.Sprintf("%d_%d_%d_%d_%+v", c.B, c.S, c.H, c.D, c.opt), func(t *testing.T) {
			x := normals(rng, c.B*c.S*c.H*c.D)
			want := ropeClosedForm(x, c.B, c.S, c.H, c.D, c.opt)
			got := make([]float64, len(x))
			RoPEForward(got, x, c.B, c.S, c.H, c.D, c.opt)
			assert.InDeltaSlice(t, want, got, 1e-12)

			x32 := to32(x)
			got32 := make([]float32, len(x))
			RoPEForward(got32, x32, c.B, c.S, c.H, c.D, c.opt)
			err, scale := maxErr(got32, want)
			assert.LessOrEqual(t, err, 1e-6*math.Max(scale, 1))

			// The backward is the inverse rotation, also in place.
			back := append([]float64(nil), got...)
			RoPEBackward(back, back, c.B, c.S, c.H, c.D, c.opt)
			assert.InDeltaSlice(t, x, back, 1e-12)
		})
	}
}

func TestRoPEKnownValues(t *testing.T) {
	// D = 2: a single pair rotated by the position itself; position 0 is identity.
	x := []float64{1, 0, 1, 0, 0, 1}
	out := make([]float64, 6)
	RoPEForward(out, x, 1, 3, 1, 2, RoPEOptions{})
	assert.InDeltaSlice(t, []float64{1, 0, math.Cos(1), math.Sin(1), -math.Sin(2), math.Cos(2)}, out, 1e-15)
	// Half-split against Hugging Face's formula x·cos + rotate_half(x)·sin with
	// rotate_half(x) = (−x2, x1) and cos, sin repeated over both halves.
	rng := rand.New(rand.NewPCG(23, 24))
	const D, pos = 8, 5
	x = normals(rng, D)
	out = make([]float64, D)
	RoPEForward(out, x, 1, 1, 1, D, RoPEOptions{Offset: pos})
	for i := range D {
		f := float64(pos) / math.Pow(10000, float64(2*(i%(D/2)))/D)
		var rh float64
		if i < D/2 {
			rh = -x[i+D/2]
		} else {
			rh = x[i-D/2]
		}
		assert.InDelta(t, x[i]*math.Cos(f)+rh*math.Sin(f), out[i], 1e-14, "dim %d", i)
	}
}

// TestRoPERelativePosition checks the property RoPE exists for: the score
// ⟨RoPE(q, m), RoPE(k, n)⟩ depends on m − n only.
func TestRoPERelativePosition(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	for _, opt := range []RoPEOptions{{}, {Interleaved: true}, {Dims: 12, Base: 1000}} {
		q, k := normals(rng, 16), normals(rng, 16)
		score := func(m, n int) float64 {
			qo, ko := opt, opt
			qo.Offset, ko.Offset = m, n
			rq, rk := make([]float64, 16), make([]float64, 16)
			RoPEForward(rq, q, 1, 1, 1, 16, qo)
			RoPEForward(rk, k, 1, 1, 1, 16, ko)
			return dot(rq, rk)
		}
		for _, mn := range [][2]int{{0, 0}, {5, 2}, {2, 5}, {100, 37}} {
			want := score(mn[0], mn[1])
			for _, shift := range []int{1, 17, 1000} {
				assert.InDelta(t, want, score(mn[0]+shift, mn[1]+shift), 1e-9, "%+v m=%d n=%d shift %d", opt, mn[0], mn[1], shift)
			}
		}
		assert.NotEqual(t, score(3, 0), score(0, 3), "rotation depends on the sign of m − n")
	}
}

func TestRoPEGradCheck(t *testing.T) {
	rng := rand.New(rand.NewPCG(27, 28))
	for _, c := range []struct {
		shape []int
		opt   RoPEOptions
	}{
		{[]int{1, 1, 1, 4}, RoPEOptions{}},
		{[]int{2, 7, 2, 6}, RoPEOptions{Offset: 3}},
		{[]int{1, 5, 3, 8}, RoPEOptions{Interleaved: true, Dims: 4, Base: 100}},
		{[]int{1, 2, 7, 4}, RoPEOptions{Layout: BHSD, Scale: 0.5}},
	} {
		x := autodiff.FromFloat64(normals(rng, numel(c.shape)), c.shape...)
		err := autodiff.GradCheck{}.Check(func(in []*autodiff.Tensor) *autodiff.Tensor { return RoPE(in[0], c.opt) }, x)
		assert.NoError(t, err, "%v %+v", c.shape, c.opt)
	}
	require.Panics(t, func() { RoPE(autodiff.Zeros(autodiff.Float32, 1, 2, 2, 6), RoPEOptions{Dims: 3}) })
	require.Panics(t, func() { RoPE(autodiff.Zeros(autodiff.Float32, 2, 2, 6), RoPEOptions{}) })
}
