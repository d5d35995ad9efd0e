package kerneltest

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/metal"
)

// BinaryBroadcast checks binary_bcast_f32 on NumPy broadcasts of either or both
// operands (a middle axis, a trailing one, a scalar), ranks 1 to 6, against the
// same float32 arithmetic in Go (the results are exact).
func BinaryBroadcast(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(5, 6))
	cases := []struct{ out, a, b []int }{
		{[]int{7, 33}, []int{7, 33}, []int{7, 1}},
		{[]int{3, 7, 33}, []int{3, 1, 33}, []int{3, 7, 33}},
		{[]int{3, 7, 5}, []int{3, 7, 1}, []int{1, 7, 5}},
		{[]int{127}, []int{127}, []int{1}},
		{[]int{2, 3, 1, 4, 5, 3}, []int{2, 1, 1, 4, 1, 3}, []int{1, 3, 1, 1, 5, 1}},
		{[]int{4, 0, 3}, []int{4, 0, 3}, []int{1, 1, 3}},
	}
	for _, c := range cases {
		n, an, bn := numel(c.out), numel(c.a), numel(c.b)
		x, y := Random(r, an, -4, 4), Random(r, bn, 0.5, 3)
		sa, sb := bcastStrides(c.a, c.out), bcastStrides(c.b, c.out)
		a, b := Upload(t, d, x), Upload(t, d, y)
		for op := metal.BinaryAdd; op <= metal.BinaryDiv; op++ {
			out := Empty(t, d, n)
			require.NoError(t, metal.RunBinaryBroadcast(d, op, out, a, b, c.out, sa, sb))
			want := make([]float64, n)
			for i := range want {
				rest, ai, bi := i, 0, 0
				for k := len(c.out) - 1; k >= 0; k-- {
					co := rest % c.out[k]
					rest /= c.out[k]
					ai += co * sa[k]
					bi += co * sb[k]
				}
				u, v := x[ai], y[bi]
				var w float32
				switch op {
				case metal.BinaryAdd:
					w = u + v
				case metal.BinarySub:
					w = u - v
				case metal.BinaryMul:
					w = u * v
				default:
					w = u / v
				}
				want[i] = float64(w)
			}
			AssertClose(t, Download(out, n), want, nil, fmt.Sprintf("op %d %v = %v · %v", op, c.out, c.a, c.b))
			out.Release()
		}
		release(a, b)
	}
	out := Empty(t, d, 8)
	require.Error(t, metal.RunBinaryBroadcast(d, metal.BinaryAdd, out, out, out, []int{1, 1, 1, 1, 1, 1, 8}, make([]int, 7), make([]int, 7)), "rank 7")
	require.Error(t, metal.RunBinaryBroadcast(d, metal.BinaryAdd, out, out, out, []int{2, 8}, []int{8, 1}, []int{0, 1}), "a too short")
	out.Release()
	require.NoError(t, d.Synchronize())
}

// bcastStrides is the element strides of a tensor of shape (same rank as out)
// read as broadcast to out: 0 along its axes of size 1.
func bcastStrides(shape, out []int) []int {
	s, step := make([]int, len(out)), 1
	for i := len(out) - 1; i >= 0; i-- {
		if shape[i] != 1 {
			s[i] = step
		}
		step *= shape[i]
	}
	return s
}

// numel is the number of elements of shape s.
func numel(s []int) int {
	n := 1
	for _, v := range s {
		n *= v
	}
	return n
}
