package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/metal"
)

// MatMulTransposed checks the four forms a·b, aᵀ·b, a·bᵀ and aᵀ·bᵀ with every
// matmul kernel the device has, on odd shapes; the tolerance scales with Σ|a·b|.
func MatMulTransposed(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(31, 32))
	kernels := []metal.MatMulKernel{metal.MatMulTiled}
	if d.Facts().SimdgroupMatrix() {
		kernels = append(kernels, metal.MatMulSimdgroup)
	}
	shapes := [][3]int{{1, 1, 1}, {1, 7, 33}, {7, 1, 127}, {33, 127, 1}, {127, 33, 7}, {33, 33, 33}, {127, 127, 33}, {1, 127, 127}, {127, 1, 33}}
	for _, s := range shapes {
		m, n, k := s[0], s[1], s[2]
		// x is op(a) (m×k) and y is op(b) (k×n), row-major
		x, y := Random(r, m*k, -1, 1), Random(r, k*n, -1, 1)
		want := make([]float64, m*n)
		scale := make([]float64, m*n)
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				for p := 0; p < k; p++ {
					v := float64(x[i*k+p]) * float64(y[p*n+j])
					want[i*n+j] += v
					scale[i*n+j] += math.Abs(v)
				}
			}
		}
		for _, transA := range []bool{false, true} {
			for _, transB := range []bool{false, true} {
				sa, sb := x, y
				if transA {
					sa = transpose(x, m, k)
				}
				if transB {
					sb = transpose(y, k, n)
				}
				a, b := Upload(t, d, sa), Upload(t, d, sb)
				for _, kern := range kernels {
					c := Empty(t, d, m*n)
					require.NoError(t, metal.RunMatMulTWith(d, kern, c, a, b, m, n, k, transA, transB))
					AssertClose(t, Download(c, m*n), want, scale, fmt.Sprintf("%s %dx%dx%d transA=%v transB=%v", kern, m, n, k, transA, transB))
					c.Release()
				}
				release(a, b)
			}
		}
	}
	require.NoError(t, d.Synchronize())
}

// transpose returns the cols × rows transpose of row-major x.
func transpose(x []float32, rows, cols int) []float32 {
	out := make([]float32, len(x))
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			out[j*rows+i] = x[i*cols+j]
		}
	}
	return out
}

// MatMulBatched checks RunMatMulTAt: a batch of products stored back to back,
// launched one per matrix at its offsets, in every transposition.
func MatMulBatched(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(33, 34))
	const batch, m, n, k = 3, 7, 33, 5
	for _, transA := range []bool{false, true} {
		for _, transB := range []bool{false, true} {
			as, bs := Random(r, batch*m*k, -1, 1), Random(r, batch*k*n, -1, 1)
			a, b, c := Upload(t, d, as), Upload(t, d, bs), Empty(t, d, batch*m*n)
			want := make([]float64, batch*m*n)
			for i := 0; i < batch; i++ {
				for row := 0; row < m; row++ {
					for col := 0; col < n; col++ {
						s := 0.0
						for p := 0; p < k; p++ {
							ai := i*m*k + row*k + p
							if transA {
								ai = i*m*k + p*m + row
							}
							bi := i*k*n + p*n + col
							if transB {
								bi = i*k*n + col*k + p
							}
							s += float64(as[ai]) * float64(bs[bi])
						}
						want[i*m*n+row*n+col] = s
					}
				}
				require.NoError(t, metal.RunMatMulTAt(d, c, a, b, i*m*n, i*m*k, i*k*n, m, n, k, transA, transB))
			}
			AssertClose(t, Download(c, batch*m*n), want, nil, fmt.Sprintf("batched transA=%v transB=%v", transA, transB))
			release(a, b, c)
		}
	}
	c := Empty(t, d, 4)
	require.Error(t, metal.RunMatMulTAt(d, c, c, c, 1, 0, 0, 2, 2, 1, false, false), "c too short from its offset")
	c.Release()
	require.NoError(t, d.Synchronize())
}
