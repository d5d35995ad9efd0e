package autodiff

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/mlxtrain/mlxtrain/metal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// refMatMul is the independent reference: NumPy's matmul written out with index
// arithmetic, in float64. It returns the result and its shape.
func refMatMul(a []float64, as []int, b []float64, bs []int, tA, tB bool) ([]float64, []int) {
	// Promote vectors, remembering which axes to drop.
	dropM, dropN := len(as) == 1, len(bs) == 1
	if dropM {
		as, tA = []int{1, as[0]}, false
	}
	if dropN {
		bs, tB = []int{bs[0], 1}, false
	}
	ra, ca := as[len(as)-2], as[len(as)-1]
	rb, cb := bs[len(bs)-2], bs[len(bs)-1]
	m, k := ra, ca
	if tA {
		m, k = ca, ra
	}
	n := cb
	if tB {
		n = rb
	}
	ba, bb := as[:len(as)-2], bs[:len(bs)-2]
	nb := max(len(ba), len(bb))
	batch := make([]int, nb)
	dim := func(s []int, i int) int { // axis i of the right-aligned batch
		if j := len(s) - nb + i; j >= 0 {
			return s[j]
		}
		return 1
	}
	for i := range nb {
		batch[i] = max(dim(ba, i), dim(bb, i))
		if dim(ba, i) == 0 || dim(bb, i) == 0 {
			batch[i] = 0
		}
	}
	count := 1
	for _, d := range batch {
		count *= d
	}
	out := make([]float64, count*m*n)
	idx := make([]int, nb)
	for o := range count {
		rem := o
		for i := nb - 1; i >= 0; i-- {
			idx[i] = rem % batch[i]
			rem /= batch[i]
		}
		matIndex := func(s []int) int {
			f := 0
			for i := range nb {
				if j := len(s) - nb + i; j >= 0 {
					x := idx[i]
					if s[j] == 1 {
						x = 0
					}
					f = f*s[j] + x
				}
			}
			return f
		}
		am, bm := matIndex(ba)*ra*ca, matIndex(bb)*rb*cb
		for i := range m {
			for j := range n {
				s := 0.0
				for p := range k {
					ai, bi := am+i*ca+p, bm+p*cb+j
					if tA {
						ai = am + p*ca + i
					}
					if tB {
						bi = bm + j*cb + p
					}
					s += a[ai] * b[bi]
				}
				out[o*m*n+i*n+j] = s
			}
		}
	}
	shape := append([]int(nil), batch...)
	if !dropM {
		shape = append(shape, m)
	}
	if !dropN {
		shape = append(shape, n)
	}
	return out, shape
}

type matmulCase struct {
	a, b   []int
	tA, tB bool
}

func (c matmulCase) String() string {
	return fmt.Sprintf("%s·%s_tA%v_tB%v", shapeString(c.a), shapeString(c.b), c.tA, c.tB)
}

var matmulCases = []matmulCase{
	{a: []int{7}, b: []int{7}},
	{a: []int{7}, b: []int{7, 33}},
	{a: []int{33, 7}, b: []int{7}},
	{a: []int{7}, b: []int{33, 7}, tB: true},
	{a: []int{1, 1}, b: []int{1, 1}},
	{a: []int{33, 7}, b: []int{7, 127}},
	{a: []int{7, 33}, b: []int{7, 127}, tA: true},
	{a: []int{33, 7}, b: []int{127, 7}, tB: true},
	{a: []int{7, 33}, b: []int{127, 7}, tA: true, tB: true},
	{a: []int{2, 3, 7, 5}, b: []int{5, 4}},
	{a: []int{2, 3, 5, 7}, b: []int{5, 4}, tA: true},
	{a: []int{2, 3, 7, 5}, b: []int{4, 5}, tB: true},
	{a: []int{2, 1, 7, 5}, b: []int{3, 5, 4}},
	{a: []int{2, 1, 5, 7}, b: []int{3, 4, 5}, tA: true, tB: true},
	{a: []int{7, 5}, b: []int{2, 5, 4}},
	{a: []int{5, 7}, b: []int{2, 4, 5}, tA: true, tB: true},
	{a: []int{2, 7, 5}, b: []int{2, 5, 4}},
	{a: []int{1, 7, 5}, b: []int{1, 1, 5, 4}},
	{a: []int{3, 6}, b: []int{2, 6}, tB: true},
	{a: []int{4, 33, 65}, b: []int{65, 97}},
	{a: []int{4, 65, 33}, b: []int{97, 65}, tA: true, tB: true},
	{a: []int{16, 64, 64}, b: []int{16, 128, 64}, tB: true}, // enough products to share out
	{a: []int{0, 5}, b: []int{5, 3}},
	{a: []int{4, 0}, b: []int{0, 3}},
	{a: []int{4, 5}, b: []int{5, 0}},
	{a: []int{2, 0, 7, 5}, b: []int{5, 3}},
	{a: []int{0, 7, 5}, b: []int{0, 5, 3}},
	{a: []int{3, 0}, b: []int{2, 0, 4}},
}

func randData(rng *rand.Rand, n int) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = rng.Float64()*2 - 1
	}
	return x
}

func TestMatMulMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, c := range matmulCases {
		ad, bd := randData(rng, numel(c.a)), randData(rng, numel(c.b))
		want, wantShape := refMatMul(ad, c.a, bd, c.b, c.tA, c.tB)
		k := c.a[len(c.a)-1]
		if c.tA && len(c.a) > 1 {
			k = c.a[len(c.a)-2]
		}
		for _, dt := range []DType{Float64, Float32} {
			a := Cast(FromFloat64(ad, c.a...), dt)
			b := Cast(FromFloat64(bd, c.b...), dt)
			out := MatMulT(a, b, c.tA, c.tB)
			require.Equal(t, wantShape, out.Shape(), "%v", c)
			require.Equal(t, dt, out.DType())
			tol := 1e-12 * float64(k+1)
			if dt == Float32 {
				tol = 2e-7 * float64(k+1) // inputs rounded to float32, |a|,|b| ≤ 1
			}
			assert.InDeltaSlice(t, want, out.Float64Values(), tol, "%v %s", c, dt)
			for _, x := range []*Tensor{a, b, out} {
				x.Release()
			}
		}
	}
}

func TestMatMulGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, c := range matmulCases {
		a := FromFloat64(randData(rng, numel(c.a)), c.a...)
		b := FromFloat64(randData(rng, numel(c.b)), c.b...)
		// The product is linear in each input, so central differences are exact but
		// for rounding, which a larger step keeps small on large outputs.
		err := GradCheck{Seed: 1, Eps: 1e-3}.Check(func(in []*Tensor) *Tensor { return MatMulT(in[0], in[1], c.tA, c.tB) }, a, b)
		assert.NoError(t, err, "%v", c)
	}
}

// TestMatMulFloat32GradientsMatchFloat64 checks the float32 backward (Sgemm with
// transpose flags) against the float64 one that GradCheck verified.
func TestMatMulFloat32GradientsMatchFloat64(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, c := range matmulCases {
		ad, bd := randData(rng, numel(c.a)), randData(rng, numel(c.b))
		var grads [2][2][]float64
		for d, dt := range []DType{Float64, Float32} {
			tp := NewTape()
			a := tp.Watch(Cast(FromFloat64(ad, c.a...), dt))
			b := tp.Watch(Cast(FromFloat64(bd, c.b...), dt))
			out := MatMulT(a, b, c.tA, c.tB)
			seed := Empty(dt, out.Shape()...)
			for i := range out.Len() {
				if dt == Float32 {
					seed.Float32s()[i] = float32(math.Sin(float64(i)))
				} else {
					seed.Float64s()[i] = float64(float32(math.Sin(float64(i))))
				}
			}
			tp.BackwardWith(out, seed)
			for i, x := range []*Tensor{a, b} {
				if g := tp.Grad(x); g != nil {
					grads[d][i] = g.Float64Values()
				} else {
					grads[d][i] = make([]float64, x.Len())
				}
			}
			tp.Release()
		}
		size := numel(c.a) + numel(c.b)
		for i := range 2 {
			assert.InDeltaSlice(t, grads[0][i], grads[1][i], 1e-6*float64(size+1), "%v input %d", c, i)
		}
	}
}

func TestMatMulShapeErrors(t *testing.T) {
	a := Zeros(Float32, 3, 4)
	assert.PanicsWithValue(t, "autodiff: matmul: shapes (3,4) and (3,4) (transposed false, false): inner sizes 4 and 3 differ",
		func() { MatMul(a, Zeros(Float32, 3, 4)) })
	assert.NotPanics(t, func() { MatMulT(a, Zeros(Float32, 3, 4), false, true) })
	assert.PanicsWithValue(t, "autodiff: matmul: shapes (2,3,4) and (3,4,5): batch axes: shapes (2) and (3) do not broadcast",
		func() { MatMul(Zeros(Float32, 2, 3, 4), Zeros(Float32, 3, 4, 5)) })
	assert.Panics(t, func() { MatMul(Scalar(Float32, 1), a) })
	assert.Panics(t, func() { MatMul(a, Zeros(Float64, 4, 2)) }, "mixed dtypes")
}

// TestMatMulBatchedWeightIsOneProduct checks that (B,T,D)·(D,N) runs as one gemm
// forward and one per gradient backward, the weight never copied per batch.
func TestMatMulBatchedWeightIsOneProduct(t *testing.T) {
	wasOn := metal.Profiling()
	metal.SetProfiling(true)
	metal.ResetProfile()
	defer func() {
		metal.SetProfiling(wasOn)
		metal.ResetProfile()
	}()
	calls := func() int64 {
		var n int64
		for _, e := range metal.ProfileSnapshot() {
			if e.Op == "matmul" {
				n += e.Calls
			}
		}
		return n
	}
	tp := NewTape()
	defer tp.Release()
	x := tp.Watch(Full(Float32, 1, 4, 8, 16))
	w := tp.Watch(Full(Float32, 0.5, 16, 32))
	y := MatMul(x, w)
	assert.EqualValues(t, 1, calls())
	tp.BackwardWith(y, Full(Float32, 1, y.Shape()...))
	assert.EqualValues(t, 3, calls())
	// dW = Σ over the 32 rows of x of 1·1
	assert.InDelta(t, 32.0, tp.Grad(w).At(0), 1e-5)
	assert.InDelta(t, 16.0, tp.Grad(x).At(0), 1e-5) // Σ over N of 0.5
}

// A Linear layer's product: (batch, seq, in) activations times an (in, out) weight,
// with the gradients of both.
func ExampleMatMul() {
	tp := NewTape()
	defer tp.Release()
	x := tp.Watch(FromFloat32([]float32{1, 2, 3, 4, 5, 6, 7, 8}, 2, 2, 2))
	w := tp.Watch(FromFloat32([]float32{1, 0, 0, 1}, 2, 2))
	y := MatMul(x, w)
	fmt.Println(y.Shape(), y.Float32s())
	tp.BackwardWith(y, Full(Float32, 1, y.Shape()...))
	fmt.Println(tp.Grad(w).Float32s())
	// Output:
	// [2 2 2] [1 2 3 4 5 6 7 8]
	// [16 16 20 20]
}
