package attention

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// flashCases sample the space: every sequence length in {1, 7, 128, 1000}, head dim
// in {32, 64, 80, 128} and query/key-value head ratio in {1, 2, 4, 8} appears, with
// and without causal and window masks, Tq < Tk (decoding with a cache), Tq > Tk
// (rows that see nothing), a value dim unlike the key dim, and both layouts.
var flashCases = []attnCase{
	{B: 2, Tq: 1, Tk: 1, Hq: 2, Hkv: 2, D: 32},
	{B: 1, Tq: 7, Tk: 7, Hq: 4, Hkv: 2, D: 64, opt: Options{Causal: true, Layout: BHSD}},
	{B: 1, Tq: 128, Tk: 128, Hq: 4, Hkv: 1, D: 80, opt: Options{Causal: true, Window: 32}},
	{B: 1, Tq: 128, Tk: 128, Hq: 8, Hkv: 1, D: 32, opt: Options{Layout: BHSD}},
	{B: 1, Tq: 1000, Tk: 1000, Hq: 2, Hkv: 1, D: 32, opt: Options{Causal: true}},
	{B: 1, Tq: 1000, Tk: 1000, Hq: 1, Hkv: 1, D: 64, opt: Options{Causal: true, Window: 100, Layout: BHSD}},
	{B: 2, Tq: 7, Tk: 128, Hq: 2, Hkv: 1, D: 128, opt: Options{Causal: true}},
	{B: 1, Tq: 1, Tk: 1000, Hq: 8, Hkv: 2, D: 128, opt: Options{Causal: true, Layout: BHSD}},
	{B: 1, Tq: 128, Tk: 7, Hq: 2, Hkv: 2, D: 80, opt: Options{Causal: true}},
	{B: 3, Tq: 7, Tk: 7, Hq: 8, Hkv: 8, D: 64, Dv: 32, opt: Options{Window: 3}},
	{B: 1, Tq: 128, Tk: 1000, Hq: 4, Hkv: 4, D: 64, opt: Options{Window: 64, Layout: BHSD, Scale: 0.2}},
}

// attnData is one random problem with its reference results in float64.
type attnData struct {
	q, k, v, dout         []float64
	out, dq, dk, dv       []float64 // reference, float64
	q32, k32, v32, dout32 []float32
}

func newAttnData(rng *rand.Rand, c attnCase) *attnData {
	d := c.dims()
	a := &attnData{}
	// Round the inputs to float32 first so both precisions see the same problem.
	a.q32 = to32(normals(rng, d.Batch*d.QLen*d.QHeads*d.HeadDim))
	a.k32 = to32(normals(rng, d.Batch*d.KLen*d.KVHeads*d.HeadDim))
	a.v32 = to32(normals(rng, d.Batch*d.KLen*d.KVHeads*d.VDim))
	a.dout32 = to32(normals(rng, d.Batch*d.QLen*d.QHeads*d.VDim))
	a.q, a.k, a.v, a.dout = to64(a.q32), to64(a.k32), to64(a.v32), to64(a.dout32)
	a.out = make([]float64, len(a.dout))
	SDPAForward(a.out, a.q, a.k, a.v, d, c.opt)
	a.dq, a.dk, a.dv = make([]float64, len(a.q)), make([]float64, len(a.k)), make([]float64, len(a.v))
	SDPABackward(a.dq, a.dk, a.dv, a.q, a.k, a.v, a.dout, d, c.opt)
	return a
}

// maxErr returns the largest |got − want| and the largest |want|.
func maxErr[T Float](got []T, want []float64) (err, scale float64) {
	for i, w := range want {
		if math.IsInf(w, 0) && float64(got[i]) == w { // lse of rows that see nothing
			continue
		}
		err = math.Max(err, math.Abs(float64(got[i])-w))
		scale = math.Max(scale, math.Abs(w))
	}
	return err, scale
}

func TestFlashMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, c := range flashCases {
		t.Run(c.String(), func(t *testing.T) {
			d := c.dims()
			a := newAttnData(rng, c)

			// float64: the same math in another order, so agreement to rounding.
			out := make([]float64, len(a.out))
			lse := make([]float64, d.Batch*d.QHeads*d.QLen)
			FlashForward(out, lse, a.q, a.k, a.v, d, c.opt)
			assert.InDeltaSlice(t, a.out, out, 1e-12, "out")
			dq, dk, dv := make([]float64, len(a.q)), make([]float64, len(a.k)), make([]float64, len(a.v))
			FlashBackward(dq, dk, dv, a.q, a.k, a.v, out, a.dout, lse, d, c.opt)
			assert.InDeltaSlice(t, a.dq, dq, 1e-11, "dq")
			assert.InDeltaSlice(t, a.dk, dk, 1e-11, "dk")
			assert.InDeltaSlice(t, a.dv, dv, 1e-11, "dv")

			// float32 against the float64 reference. The reduction order differs (online
			// softmax over key blocks, unrolled dot products), so the bound is on the
			// largest error relative to the largest reference value: 1e-5 (measured
			// ≤ 1e-6 over these cases).
			out32 := make([]float32, len(a.out))
			lse32 := make([]float32, len(lse))
			FlashForward(out32, lse32, a.q32, a.k32, a.v32, d, c.opt)
			dq32, dk32, dv32 := make([]float32, len(a.q)), make([]float32, len(a.k)), make([]float32, len(a.v))
			FlashBackward(dq32, dk32, dv32, a.q32, a.k32, a.v32, out32, a.dout32, lse32, d, c.opt)
			for _, x := range []struct {
				name string
				got  []float32
				want []float64
			}{{"out", out32, a.out}, {"lse", lse32, lse}, {"dq", dq32, a.dq}, {"dk", dk32, a.dk}, {"dv", dv32, a.dv}} {
				err, scale := maxErr(x.got, x.want)
				t.Logf("%s: max err %.3g, max |ref| %.3g", x.name, err, scale)
				assert.LessOrEqual(t, err, 1e-5*math.Max(scale, 1), x.name)
			}
		})
	}
}

// TestFlashThreadsAgree checks that the split of the work (and the extra dq parts
// the backward uses when there are few heads) gives the same results at any
// worker count.
func TestFlashThreadsAgree(t *testing.T) {
	defer metal.SetThreads(metal.Threads())
	rng := rand.New(rand.NewPCG(9, 10))
	c := attnCase{B: 1, Tq: 300, Tk: 300, Hq: 3, Hkv: 1, D: 16, opt: Options{Causal: true}}
	a := newAttnData(rng, c)
	d := c.dims()
	for _, threads := range []int{1, 2, 3, 5} {
		metal.SetThreads(threads)
		out := make([]float64, len(a.out))
		lse := make([]float64, d.Batch*d.QHeads*d.QLen)
		FlashForward(out, lse, a.q, a.k, a.v, d, c.opt)
		dq, dk, dv := make([]float64, len(a.q)), make([]float64, len(a.k)), make([]float64, len(a.v))
		FlashBackward(dq, dk, dv, a.q, a.k, a.v, out, a.dout, lse, d, c.opt)
		assert.InDeltaSlice(t, a.out, out, 1e-12, "threads %d", threads)
		assert.InDeltaSlice(t, a.dq, dq, 1e-11, "threads %d", threads)
		assert.InDeltaSlice(t, a.dk, dk, 1e-11, "threads %d", threads)
		assert.InDeltaSlice(t, a.dv, dv, 1e-11, "threads %d", threads)
	}
}

func TestAttentionGradCheck(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	cases := []attnCase{
		{B: 1, Tq: 1, Tk: 1, Hq: 1, Hkv: 1, D: 4},
		{B: 2, Tq: 3, Tk: 3, Hq: 2, Hkv: 1, D: 4, opt: Options{Causal: true}},
		{B: 1, Tq: 7, Tk: 7, Hq: 2, Hkv: 2, D: 8, opt: Options{Causal: true, Window: 3}},
		{B: 1, Tq: 5, Tk: 5, Hq: 4, Hkv: 1, D: 4, Dv: 6, opt: Options{Window: 2, Layout: BHSD}},
		{B: 1, Tq: 2, Tk: 6, Hq: 2, Hkv: 1, D: 6, opt: Options{Causal: true, Layout: BHSD, Scale: 0.7}},
		{B: 1, Tq: 4, Tk: 2, Hq: 1, Hkv: 1, D: 5, opt: Options{Causal: true}},
	}
	for _, c := range cases {
		qs, ks, vs := c.shapes()
		for _, op := range []struct {
			name string
			f    func(q, k, v *autodiff.Tensor, opt Options) *autodiff.Tensor
		}{{"flash", FlashAttention}, {"sdpa", SDPA}} {
			t.Run(op.name+"_"+c.String(), func(t *testing.T) {
				q := autodiff.FromFloat64(normals(rng, numel(qs)), qs...)
				k := autodiff.FromFloat64(normals(rng, numel(ks)), ks...)
				v := autodiff.FromFloat64(normals(rng, numel(vs)), vs...)
				err := autodiff.GradCheck{ElementwiseMax: 48, Directions: 4}.Check(func(in []*autodiff.Tensor) *autodiff.Tensor {
					return op.f(in[0], in[1], in[2], c.opt)
				}, q, k, v)
				assert.NoError(t, err)
			})
		}
	}
}

// TestFlashAttentionOp runs the op on a tape in float32 and compares values and
// gradients with the reference kernels, for the shared-tensor case too (q = k).
func TestFlashAttentionOp(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	c := attnCase{B: 2, Tq: 70, Tk: 70, Hq: 4, Hkv: 2, D: 16, opt: Options{Causal: true}}
	a := newAttnData(rng, c)
	qs, ks, vs := c.shapes()
	q, k, v := autodiff.FromFloat32(a.q32, qs...), autodiff.FromFloat32(a.k32, ks...), autodiff.FromFloat32(a.v32, vs...)
	tp := autodiff.NewTape()
	defer tp.Release()
	out := FlashAttention(tp.Watch(q), tp.Watch(k), v, c.opt)
	require.Equal(t, c.dims().outShape(BSHD), out.Shape())
	err, scale := maxErr(out.Float32s(), a.out)
	assert.LessOrEqual(t, err, 1e-5*scale)
	tp.BackwardWith(out, autodiff.FromFloat32(a.dout32, out.Shape()...))
	for _, x := range []struct {
		name string
		g    *autodiff.Tensor
		want []float64
	}{{"dq", tp.Grad(q), a.dq}, {"dk", tp.Grad(k), a.dk}} {
		require.NotNil(t, x.g, x.name)
		err, scale := maxErr(x.g.Float32s(), x.want)
		assert.LessOrEqual(t, err, 1e-5*math.Max(scale, 1), x.name)
	}
	assert.Nil(t, tp.Grad(v), "v is not watched")

	// Self-attention on one tensor: its gradient is the sum of the q, k and v parts.
	c2 := attnCase{B: 1, Tq: 9, Tk: 9, Hq: 2, Hkv: 2, D: 4, opt: Options{Causal: true}}
	x := autodiff.FromFloat64(normals(rng, 9*2*4), 1, 9, 2, 4)
	require.NoError(t, autodiff.GradCheck{}.Check(func(in []*autodiff.Tensor) *autodiff.Tensor {
		return FlashAttention(in[0], in[0], in[0], c2.opt)
	}, x))
}

// TestFlashMemoryIsLinear checks that what the flash kernels allocate grows with T,
// not T²: from T = 512 to 2048 (4×) the bytes may grow about 4×, never 16×.
func TestFlashMemoryIsLinear(t *testing.T) {
	allocated := func(T int) uint64 {
		c := attnCase{B: 1, Tq: T, Tk: T, Hq: 2, Hkv: 1, D: 8, opt: Options{Causal: true, Window: 64}}
		d := c.dims()
		q, k := make([]float32, T*2*8), make([]float32, T*8)
		out, lse := make([]float32, len(q)), make([]float32, 2*T)
		dq, dk, dv := make([]float32, len(q)), make([]float32, len(k)), make([]float32, len(k))
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		FlashForward(out, lse, q, k, k, d, c.opt)
		FlashBackward(dq, dk, dv, q, k, k, out, out, lse, d, c.opt)
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	small, large := allocated(512), allocated(2048)
	t.Logf("allocated %d B at T=512, %d B at T=2048", small, large)
	assert.Less(t, float64(large), 6*float64(small)+(64<<10))
	assert.Less(t, large, uint64(2048*2048), "below one T×T byte matrix")
}

func numel(shape []int) int {
	n := 1
	for _, s := range shape {
		n *= s
	}
	return n
}
