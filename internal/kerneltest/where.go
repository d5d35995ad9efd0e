package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/metal"
)

// Where checks where_f32 with float32 and int32 masks (−0 counts as zero, NaN as
// set) broadcast against a and b in every combination the ops use, on odd and
// empty sizes, exactly against a Go reference.
func Where(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(61, 62))
	type tc struct{ out, m, a, b []int }
	var cases []tc
	for _, n := range append(Sizes, 0) {
		cases = append(cases,
			tc{[]int{3, n}, []int{3, n}, []int{3, n}, []int{3, n}},
			tc{[]int{2, n, 5}, []int{1, n, 1}, []int{2, n, 5}, []int{1, 1, 1}}, // masked_fill: b a scalar
			tc{[]int{n, 7}, []int{1, 7}, []int{1, 1}, []int{n, 7}},
		)
	}
	cases = append(cases, tc{[]int{2, 3, 1, 4, 5, 3}, []int{2, 1, 1, 4, 1, 3}, []int{1, 3, 1, 1, 5, 1}, []int{2, 3, 1, 4, 5, 3}})
	for _, c := range cases {
		n, mn := numel(c.out), numel(c.m)
		x, y := Random(r, numel(c.a), -4, 4), Random(r, numel(c.b), -4, 4)
		mf := Random(r, mn, -1, 1)
		mi := make([]int32, mn)
		for i := range mf {
			switch i % 4 {
			case 0:
				mf[i], mi[i] = 0, 0
			case 1:
				mf[i], mi[i] = float32(math.Copysign(0, -1)), math.MinInt32 // −0: a zero float, a set int
			case 2:
				mf[i], mi[i] = float32(math.NaN()), -7
			}
			if i%4 == 3 {
				mi[i] = int32(i)
			}
		}
		sm, sa, sb := bcastStrides(c.m, c.out), bcastStrides(c.a, c.out), bcastStrides(c.b, c.out)
		a, b := Upload(t, d, x), Upload(t, d, y)
		for _, float := range []bool{true, false} {
			var mb *metal.Buffer
			if float {
				mb = Upload(t, d, mf)
			} else {
				mb = UploadInt32(t, d, mi)
			}
			out := Empty(t, d, n)
			require.NoError(t, metal.RunWhere(d, out, mb, a, b, float, c.out, sm, sa, sb))
			want := make([]float32, n)
			for i := range want {
				rest, im, ia, ib := i, 0, 0, 0
				for k := len(c.out) - 1; k >= 0; k-- {
					co := rest % c.out[k]
					rest /= c.out[k]
					im += co * sm[k]
					ia += co * sa[k]
					ib += co * sb[k]
				}
				set := mi[im] != 0
				if float {
					set = mf[im] != 0
				}
				if set {
					want[i] = x[ia]
				} else {
					want[i] = y[ib]
				}
			}
			assert.Equal(t, want, Download(out, n), fmt.Sprintf("float mask %v: %v = %v ? %v : %v", float, c.out, c.m, c.a, c.b))
			release(out, mb)
		}
		release(a, b)
	}
	out := Empty(t, d, 8)
	require.Error(t, metal.RunWhere(d, out, out, out, out, true, []int{1, 1, 1, 1, 1, 1, 8}, make([]int, 7), make([]int, 7), make([]int, 7)), "rank 7")
	require.Error(t, metal.RunWhere(d, out, out, out, out, true, []int{2, 8}, []int{8, 1}, []int{0, 1}, []int{0, 1}), "mask too short")
	out.Release()
	require.NoError(t, d.Synchronize())
}
