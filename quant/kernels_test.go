package quant

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/metal"
)

func randMatrix(t testing.TB, rng *rand.Rand, p Params, rows, cols int) (*Matrix, []float32) {
	w := make([]float32, rows*cols)
	for i := range w {
		w[i] = float32(rng.NormFloat64()) * 0.1
	}
	m, err := Quantize(p, w, rows, cols)
	require.NoError(t, err)
	return m, w
}

func randVec(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
}

// checkProduct compares y with x·Wᵀ computed here in float64 from the
// dequantized weights. The kernels factor each group as scale·Σx·q + bias·Σx,
// whose terms can be much larger than Σ|x·w|, so the bound scales with
// B = Σ|x|·(|scale|·q + |bias|): float32 rounding of up to a few hundred terms.
func checkProduct(t *testing.T, y, x []float32, rows int, m *Matrix, what string) {
	t.Helper()
	w := m.Dequantize()
	K, N, G, ng := m.Cols, m.Rows, m.GroupSize, m.Groups()
	for r := range rows {
		for o := range N {
			var want, b float64
			for k := range K {
				xv := float64(x[r*K+k])
				want += xv * float64(w[o*K+k])
				s, bb := m.Scales[o*ng+k/G], m.Biases[o*ng+k/G]
				b += math.Abs(xv) * (math.Abs(float64(s))*float64(m.Q(o, k)) + math.Abs(float64(bb)))
			}
			got := float64(y[r*N+o])
			require.InDelta(t, want, got, 3e-5*b+1e-6, "%s: row %d out %d", what, r, o)
		}
	}
}

func TestMatMulTPaths(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	paths := []metal.Path{metal.PathReference, metal.PathGo, metal.PathBLAS}
	if asmAvailable() {
		paths = append(paths, metal.PathAsm)
	}
	for _, bits := range ValidBits {
		for _, G := range ValidGroupSizes {
			for _, shape := range [][3]int{{1, 7, 1}, {7, 33, 3}, {33, 1, 2}, {127, 7, 1}, {0, 7, 1}, {2, 33, 1}} {
				rows, N, K := shape[0], shape[1], shape[2]*G
				m, _ := randMatrix(t, rng, Params{GroupSize: G, Bits: bits}, N, K)
				x := randVec(rng, rows*K)
				for _, path := range paths {
					y := make([]float32, rows*N)
					for i := range y {
						y[i] = float32(math.NaN()) // must be overwritten
					}
					MatMulTPath(path, y, x, rows, m)
					checkProduct(t, y, x, rows, m, fmt.Sprintf("bits %d group %d %v %s", bits, G, shape, path))
				}
				y := make([]float32, rows*N)
				MatMulT(y, x, rows, m)
				checkProduct(t, y, x, rows, m, fmt.Sprintf("bits %d group %d %v picked", bits, G, shape))
			}
		}
	}
}

func TestMatMulTThreads(t *testing.T) {
	defer metal.SetThreads(metal.Threads())
	metal.SetThreads(2)
	rng := rand.New(rand.NewPCG(7, 8))
	m, _ := randMatrix(t, rng, Params{GroupSize: 64, Bits: 4}, 300, 4096)
	x := randVec(rng, 4096)
	y := make([]float32, 300)
	MatMulT(y, x, 1, m)
	checkProduct(t, y, x, 1, m, "two threads")
}

func TestMatMulInputGradient(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, bits := range []int{3, 4, 8} {
		for _, shape := range [][3]int{{1, 7, 64}, {7, 33, 128}, {33, 127, 64}, {0, 3, 64}} {
			rows, N, K := shape[0], shape[1], shape[2]
			m, _ := randMatrix(t, rng, Params{GroupSize: 64, Bits: bits}, N, K)
			g := randVec(rng, rows*N)
			dx := make([]float32, rows*K)
			MatMul(dx, g, rows, m)
			w := m.Dequantize()
			for r := range rows {
				for k := range K {
					var want float64
					for o := range N {
						want += float64(g[r*N+o]) * float64(w[o*K+k])
					}
					require.InDelta(t, want, float64(dx[r*K+k]), 1e-4*math.Sqrt(float64(N)), "bits %d %v row %d col %d", bits, shape, r, k)
				}
			}
		}
	}
}

func TestGather(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	m, _ := randMatrix(t, rng, Params{GroupSize: 32, Bits: 5}, 9, 96)
	ids := []int32{3, 0, 8, 3}
	dst := make([]float32, len(ids)*96)
	Gather(dst, m, ids)
	w := m.Dequantize()
	for i, id := range ids {
		require.Equal(t, w[int(id)*96:int(id+1)*96], dst[i*96:(i+1)*96])
	}
	require.Panics(t, func() { Gather(make([]float32, 96), m, []int32{9}) })
}

func TestDequantizeRowFast(t *testing.T) {
	// Every width: 4 and 8 bits have their own kernels, the others share one.
	rng := rand.New(rand.NewPCG(15, 16))
	if !asmAvailable() {
		t.Skip("no fast dequantization here")
	}
	for _, bits := range ValidBits {
		for _, G := range ValidGroupSizes {
			m, _ := randMatrix(t, rng, Params{GroupSize: G, Bits: bits}, 3, 2*G)
			want := m.Dequantize()
			got := make([]float32, 2*G)
			for r := range 3 {
				if !dequantizeRowFast(got, m, r) {
					require.True(t, bits != 4 && bits != 8 && r == 2, "only the last row of odd widths goes elsewhere")
					continue
				}
				for c := range 2 * G {
					s, b := m.Scales[r*m.Groups()+c/G], m.Biases[r*m.Groups()+c/G]
					bound := 2e-7 * (math.Abs(float64(s))*float64(m.Q(r, c)) + math.Abs(float64(b)))
					require.InDelta(t, want[r*2*G+c], got[c], bound, "bits %d group %d row %d col %d", bits, G, r, c)
				}
			}
		}
	}
}
