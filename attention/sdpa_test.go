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

// attnCase is one attention problem.
type attnCase struct {
	B, Tq, Tk, Hq, Hkv, D, Dv int
	opt                       Options
}

func (c attnCase) dims() Dims {
	dv := c.Dv
	if dv == 0 {
		dv = c.D
	}
	return Dims{Batch: c.B, QLen: c.Tq, KLen: c.Tk, QHeads: c.Hq, KVHeads: c.Hkv, HeadDim: c.D, VDim: dv}
}

func (c attnCase) String() string {
	d := c.dims()
	return fmt.Sprintf("B%d_Tq%d_Tk%d_H%d/%d_D%d_Dv%d_causal%v_win%d_%s", d.Batch, d.QLen, d.KLen, d.QHeads, d.KVHeads, d.HeadDim, d.VDim, c.opt.Causal, c.opt.Window, c.opt.Layout)
}

func (c attnCase) shapes() (q, k, v []int) {
	d := c.dims()
	if c.opt.Layout == BHSD {
		return []int{d.Batch, d.QHeads, d.QLen, d.HeadDim}, []int{d.Batch, d.KVHeads, d.KLen, d.HeadDim}, []int{d.Batch, d.KVHeads, d.KLen, d.VDim}
	}
	return []int{d.Batch, d.QLen, d.QHeads, d.HeadDim}, []int{d.Batch, d.KLen, d.KVHeads, d.HeadDim}, []int{d.Batch, d.KLen, d.KVHeads, d.VDim}
}

func normals(rng *rand.Rand, n int) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = rng.NormFloat64()
	}
	return x
}

func to32(x []float64) []float32 {
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = float32(v)
	}
	return y
}

func to64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

// naiveAttention is the test's own oracle, written from the Options doc: element
// (b, s, h, d) of a BSHD or BHSD tensor is found by explicit index arithmetic, the
// mask by the position rule, and every score is kept in float64.
func naiveAttention(c attnCase, q, k, v []float64) []float64 {
	d := c.dims()
	idx := func(b, s, h, x, S, H, X int) int {
		if c.opt.Layout == BHSD {
			return ((b*H+h)*S+s)*X + x
		}
		return ((b*S+s)*H+h)*X + x
	}
	scale := c.opt.Scale
	if scale == 0 {
		scale = 1 / math.Sqrt(float64(d.HeadDim))
	}
	out := make([]float64, d.Batch*d.QLen*d.QHeads*d.VDim)
	for b := range d.Batch {
		for h := range d.QHeads {
			hk := h / (d.QHeads / d.KVHeads)
			for i := range d.QLen {
				p := d.KLen - d.QLen + i
				s := make([]float64, d.KLen)
				allowed := make([]bool, d.KLen)
				m := math.Inf(-1)
				for j := range d.KLen {
					ok := true
					if c.opt.Causal && j > p {
						ok = false
					}
					if w := c.opt.Window; w > 0 {
						if c.opt.Causal && j <= p-w {
							ok = false
						}
						if !c.opt.Causal && (j <= p-w || j >= p+w) {
							ok = false
						}
					}
					if !ok {
						continue
					}
					allowed[j] = true
					for x := range d.HeadDim {
						s[j] += q[idx(b, i, h, x, d.QLen, d.QHeads, d.HeadDim)] * k[idx(b, j, hk, x, d.KLen, d.KVHeads, d.HeadDim)]
					}
					s[j] *= scale
					m = math.Max(m, s[j])
				}
				z := 0.0
				for j := range d.KLen {
					if allowed[j] {
						s[j] = math.Exp(s[j] - m)
						z += s[j]
					}
				}
				for j := range d.KLen {
					if !allowed[j] {
						continue
					}
					for x := range d.VDim {
						out[idx(b, i, h, x, d.QLen, d.QHeads, d.VDim)] += s[j] / z * v[idx(b, j, hk, x, d.KLen, d.KVHeads, d.VDim)]
					}
				}
			}
		}
	}
	return out
}

func TestSDPAMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	cases := []attnCase{
		{B: 1, Tq: 1, Tk: 1, Hq: 1, Hkv: 1, D: 4},
		{B: 2, Tq: 7, Tk: 7, Hq: 2, Hkv: 2, D: 5, opt: Options{Causal: true}},
		{B: 1, Tq: 7, Tk: 7, Hq: 4, Hkv: 1, D: 8, Dv: 3, opt: Options{Causal: true, Window: 3}},
		{B: 1, Tq: 9, Tk: 9, Hq: 2, Hkv: 1, D: 6, opt: Options{Window: 2, Layout: BHSD}},
		{B: 2, Tq: 3, Tk: 8, Hq: 4, Hkv: 2, D: 6, opt: Options{Causal: true, Scale: 0.3}},
		{B: 1, Tq: 6, Tk: 4, Hq: 2, Hkv: 2, D: 4, opt: Options{Causal: true, Layout: BHSD}}, // two rows see nothing
		{B: 1, Tq: 5, Tk: 12, Hq: 8, Hkv: 1, D: 4, opt: Options{Causal: true, Window: 4}},
		{B: 1, Tq: 0, Tk: 3, Hq: 1, Hkv: 1, D: 4},
		{B: 1, Tq: 3, Tk: 0, Hq: 1, Hkv: 1, D: 4},
	}
	for _, c := range cases {
		t.Run(c.String(), func(t *testing.T) {
			d := c.dims()
			q := normals(rng, d.Batch*d.QLen*d.QHeads*d.HeadDim)
			k := normals(rng, d.Batch*d.KLen*d.KVHeads*d.HeadDim)
			v := normals(rng, d.Batch*d.KLen*d.KVHeads*d.VDim)
			want := naiveAttention(c, q, k, v)
			got := make([]float64, len(want))
			SDPAForward(got, q, k, v, d, c.opt)
			assert.InDeltaSlice(t, want, got, 1e-12)
			flash := make([]float64, len(want))
			FlashForward(flash, nil, q, k, v, d, c.opt)
			assert.InDeltaSlice(t, want, flash, 1e-12)
		})
	}
}

func TestFullyMaskedRowsAreZero(t *testing.T) {
	// Tq > Tk with a causal mask: query i sits at position Tk−Tq+i < 0 for the first
	// Tq−Tk rows, which see no key at all.
	rng := rand.New(rand.NewPCG(5, 6))
	c := attnCase{B: 1, Tq: 5, Tk: 3, Hq: 2, Hkv: 1, D: 4, opt: Options{Causal: true}}
	d := c.dims()
	q, k, v := normals(rng, 5*2*4), normals(rng, 3*4), normals(rng, 3*4)
	out := make([]float64, len(q))
	lse := make([]float64, 2*5)
	FlashForward(out, lse, q, k, v, d, c.opt)
	for h := range 2 {
		for i := range 5 {
			row := out[(i*2+h)*4:][:4]
			if i < 2 {
				assert.Equal(t, []float64{0, 0, 0, 0}, row)
				assert.True(t, math.IsInf(lse[h*5+i], -1))
			} else {
				assert.NotEqual(t, []float64{0, 0, 0, 0}, row)
				assert.False(t, math.IsInf(lse[h*5+i], 0))
			}
		}
	}
	dout := normals(rng, len(out))
	dq, dk, dv := make([]float64, len(q)), make([]float64, len(k)), make([]float64, len(v))
	FlashBackward(dq, dk, dv, q, k, v, out, dout, lse, d, c.opt)
	rq, rk, rv := make([]float64, len(q)), make([]float64, len(k)), make([]float64, len(v))
	SDPABackward(rq, rk, rv, q, k, v, dout, d, c.opt)
	for i := range 2 * 2 * 4 { // rows 0 and 1 of both heads
		assert.Zero(t, dq[i])
	}
	assert.InDeltaSlice(t, rq, dq, 1e-12)
	assert.InDeltaSlice(t, rk, dk, 1e-12)
	assert.InDeltaSlice(t, rv, dv, 1e-12)
}

func TestShapeDims(t *testing.T) {
	d := ShapeDims("t", BSHD, []int{2, 5, 8, 16}, []int{2, 9, 2, 16}, []int{2, 9, 2, 12})
	assert.Equal(t, Dims{Batch: 2, QLen: 5, KLen: 9, QHeads: 8, KVHeads: 2, HeadDim: 16, VDim: 12}, d)
	d = ShapeDims("t", BHSD, []int{2, 8, 5, 16}, []int{2, 2, 9, 16}, []int{2, 2, 9, 12})
	assert.Equal(t, Dims{Batch: 2, QLen: 5, KLen: 9, QHeads: 8, KVHeads: 2, HeadDim: 16, VDim: 12}, d)
	bad := []struct {
		q, k, v []int
		why     string
	}{
		{[]int{2, 5, 8, 16}, []int{2, 9, 3, 16}, []int{2, 9, 3, 16}, "query heads are not a multiple of key/value heads"},
		{[]int{2, 5, 8, 16}, []int{2, 9, 2, 8}, []int{2, 9, 2, 16}, "q and k head dims differ"},
		{[]int{2, 5, 8, 16}, []int{1, 9, 2, 16}, []int{1, 9, 2, 16}, "batch sizes differ"},
		{[]int{2, 5, 8, 16}, []int{2, 9, 2, 16}, []int{2, 8, 2, 16}, "k and v differ in length or heads"},
		{[]int{5, 8, 16}, []int{2, 9, 2, 16}, []int{2, 9, 2, 16}, "want rank-4 tensors"},
	}
	for _, c := range bad {
		want := fmt.Sprintf("attention: t: %s: q %v, k %v, v %v (BSHD)", c.why, c.q, c.k, c.v)
		assert.PanicsWithValue(t, want, func() { ShapeDims("t", BSHD, c.q, c.k, c.v) })
	}
	q := autodiff.Zeros(autodiff.Float32, 1, 2, 2, 4)
	k := autodiff.Zeros(autodiff.Float64, 1, 2, 2, 4)
	require.Panics(t, func() { FlashAttention(q, k, k, Options{}) }, "mixed dtypes")
}
