package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/metal"
)

// reduceRef returns op over the n values at x[off], x[off+stride], ..., and the
// scale its float32 rounding grows with (Σ|x|, or Σ|x|/n for a mean).
func reduceRef(op metal.ReduceOp, x []float32, off, stride, n int) (want, scale float64) {
	sum, abs, m := 0.0, 0.0, math.Inf(-1)
	for i := 0; i < n; i++ {
		v := float64(x[off+i*stride])
		sum += v
		abs += math.Abs(v)
		m = math.Max(m, v)
	}
	switch op {
	case metal.ReduceMax:
		return m, 0
	case metal.ReduceMean:
		return sum / float64(n), abs / float64(n)
	}
	return sum, abs
}

var reduceOps = []metal.ReduceOp{metal.ReduceSum, metal.ReduceMax, metal.ReduceMean}

// ReduceRows checks sum, max and mean over the last axis, including rows longer
// than a threadgroup. Sums are compared within 1e-5·Σ|x| (the kernel adds in a
// tree order, with an error below (cols/256 + 8)·2⁻²⁴·Σ|x|); max is exact.
func ReduceRows(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, rows := range Sizes {
		for _, cols := range append(Sizes, 1000) {
			x := Random(r, rows*cols, -3, 3)
			in := Upload(t, d, x)
			for _, op := range reduceOps {
				out := Empty(t, d, rows)
				require.NoError(t, metal.RunReduceRows(d, op, out, in, rows, cols))
				want, scale := make([]float64, rows), make([]float64, rows)
				for i := range rows {
					want[i], scale[i] = reduceRef(op, x, i*cols, 1, cols)
				}
				AssertClose(t, Download(out, rows), want, scale, fmt.Sprintf("reduce rows op %d %dx%d", op, rows, cols))
				out.Release()
			}
			in.Release()
		}
	}
	require.NoError(t, d.Synchronize())
}

// ReduceCols checks sum, max and mean over the leading axis, with one pass (up to
// 64 rows) and with two (chunks of rows, then the chunks).
func ReduceCols(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(13, 14))
	for _, rows := range append(Sizes, 1000, 40000) {
		for _, cols := range Sizes {
			if rows*cols > 400000 {
				continue
			}
			x := Random(r, rows*cols, -3, 3)
			in := Upload(t, d, x)
			for _, op := range reduceOps {
				out := Empty(t, d, cols)
				require.NoError(t, metal.RunReduceCols(d, op, out, in, rows, cols))
				want, scale := make([]float64, cols), make([]float64, cols)
				for c := range cols {
					want[c], scale[c] = reduceRef(op, x, c, cols, rows)
				}
				AssertClose(t, Download(out, cols), want, scale, fmt.Sprintf("reduce cols op %d %dx%d", op, rows, cols))
				out.Release()
			}
			in.Release()
		}
	}
	require.NoError(t, d.Synchronize())
}
