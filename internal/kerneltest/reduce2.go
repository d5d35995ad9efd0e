package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/metal"
)

// RunReduce2Kernels runs the checks of the strided reductions, where_f32 and
// dropout_f32.
func RunReduce2Kernels(t *testing.T, d metal.Compute) {
	t.Run("ReduceStrided", func(t *testing.T) { ReduceStrided(t, d) })
	t.Run("Where", func(t *testing.T) { Where(t, d) })
	t.Run("Dropout", func(t *testing.T) { Dropout(t, d) })
}

// stridedReduceRef reduces x (contiguous, dims) over the reduced dims in float64: per
// output (row-major over the kept dims) the list of x's offsets it covers, in
// row-major order over the reduced dims.
func stridedReduceRef(dims []int, reduced []bool) (groups [][]int, outOf []int, rOf []int) {
	total := 1
	for _, v := range dims {
		total *= v
	}
	outOf, rOf = make([]int, total), make([]int, total)
	k := 1
	for i, v := range dims {
		if !reduced[i] {
			k *= v
		}
	}
	groups = make([][]int, k)
	for i := 0; i < total; i++ {
		rest, o, r, os, rs := i, 0, 0, 1, 1
		for dd := len(dims) - 1; dd >= 0; dd-- {
			c := rest % dims[dd]
			rest /= dims[dd]
			if reduced[dd] {
				r += c * rs
				rs *= dims[dd]
			} else {
				o += c * os
				os *= dims[dd]
			}
		}
		outOf[i], rOf[i] = o, r
	}
	// i runs in row-major order, so each group's offsets come in reduced row-major order
	for i := 0; i < total; i++ {
		groups[outOf[i]] = append(groups[outOf[i]], i)
	}
	return groups, outOf, rOf
}

// ReduceStrided checks reduce_strided_f32, reduce_arg_strided_f32 and
// var_strided_f32 and their backward kernels against float64 references, over
// leading, middle, trailing, alternating and all axes of odd shapes, empty ones,
// and with NaNs and ties for the maxima (the first NaN, else the first of equal
// values, wins, as on the CPU).
func ReduceStrided(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(41, 42))
	cases := []struct {
		dims    []int
		reduced []bool
	}{
		{[]int{7, 33, 5}, []bool{false, true, false}},
		{[]int{3, 7, 1, 5}, []bool{true, false, true, true}},
		{[]int{127}, []bool{true}},
		{[]int{2, 3, 5, 7}, []bool{true, false, true, false}},
		{[]int{33, 1}, []bool{false, true}},
		{[]int{1, 7}, []bool{true, false}},
		{[]int{0, 5}, []bool{true, false}},
		{[]int{5, 0}, []bool{false, true}},
		{[]int{5, 0}, []bool{true, false}},
	}
	for _, c := range cases {
		groups, outOf, rOf := stridedReduceRef(c.dims, c.reduced)
		k, total := len(groups), len(outOf)
		n := 0
		if k > 0 {
			n = len(groups[0])
			if total == 0 {
				n = 0
			}
		}
		x := Random(r, total, -3, 3)
		for i := range x {
			if i%5 == 2 { // ties
				x[i] = 1.5
			}
		}
		gv := Random(r, k, -1, 1)
		xb, gb := Upload(t, d, x), Upload(t, d, gv)
		for _, op := range []metal.ReduceOp{metal.ReduceSum, metal.ReduceMean, metal.ReduceMax, metal.ReduceMin, metal.ReduceVar} {
			what := fmt.Sprintf("op %d dims %v reduced %v", op, c.dims, c.reduced)
			if (op == metal.ReduceMax || op == metal.ReduceMin) && n == 0 {
				if k > 0 {
					out, arg := Empty(t, d, k), Empty(t, d, k)
					require.Error(t, metal.RunReduceStrided(d, op, out, arg, xb, c.dims, c.reduced), what)
					release(out, arg)
				}
				continue
			}
			want := make([]float64, k)
			aux := make([]float64, k) // means, or args
			for o, g := range groups {
				s := 0.0
				for _, i := range g {
					s += float64(x[i])
				}
				switch op {
				case metal.ReduceSum:
					want[o] = s
				case metal.ReduceMean:
					want[o] = s / float64(n)
				case metal.ReduceVar:
					m := s / float64(n)
					q := 0.0
					for _, i := range g {
						q += (float64(x[i]) - m) * (float64(x[i]) - m)
					}
					want[o], aux[o] = q/varDiv(n), m
				default:
					best, at := x[g[0]], 0
					for j, i := range g {
						v := x[i]
						if (op == metal.ReduceMax && v > best) || (op == metal.ReduceMin && v < best) {
							best, at = v, j
						}
					}
					want[o], aux[o] = float64(best), float64(at)
				}
			}
			out, a := Empty(t, d, max(k, 1)), Empty(t, d, max(k, 1))
			if op == metal.ReduceVar {
				require.NoError(t, metal.RunVarStrided(d, out, a, xb, c.dims, c.reduced, 1), what)
			} else {
				require.NoError(t, metal.RunReduceStrided(d, op, out, a, xb, c.dims, c.reduced), what)
			}
			scale := make([]float64, k)
			for o := range scale {
				scale[o] = 1e-6 * float64(n) * 3 * 3
			}
			AssertClose(t, Download(out, k), want, scale, what)
			switch op {
			case metal.ReduceMax, metal.ReduceMin:
				a.Wait()
				args := unsafe.Slice((*int32)(a.Pointer()), k)
				for o := range args {
					assert.Equal(t, int32(aux[o]), args[o], "%s: arg %d", what, o)
				}
			case metal.ReduceVar:
				AssertClose(t, Download(a, k), aux, nil, what+" means")
			}

			// backward
			dx := Empty(t, d, max(total, 1))
			var ab *metal.Buffer
			switch op {
			case metal.ReduceVar:
				ab = Upload(t, d, narrow(aux))
			case metal.ReduceMax, metal.ReduceMin:
				ints := make([]int32, k)
				for o := range ints {
					ints[o] = int32(aux[o])
				}
				ab = UploadInt32(t, d, ints)
			}
			require.NoError(t, metal.RunReduceStridedBackward(d, op, dx, gb, xb, ab, c.dims, c.reduced, 1), what)
			wdx := make([]float64, total)
			for i := range wdx {
				o, gi := outOf[i], float64(gv[outOf[i]])
				switch op {
				case metal.ReduceSum:
					wdx[i] = gi
				case metal.ReduceMean:
					wdx[i] = gi / float64(n)
				case metal.ReduceVar:
					wdx[i] = 2 * gi * (float64(x[i]) - aux[o]) / varDiv(n)
				default:
					if rOf[i] == int(aux[o]) {
						wdx[i] = gi
					}
				}
			}
			AssertClose(t, Download(dx, total), wdx, nil, what+" backward")
			release(out, a, dx)
			if ab != nil {
				ab.Release()
			}
		}
		release(xb, gb)
	}

	// NaNs: the first NaN wins a maximum and a minimum, with its index
	x := []float32{1, 2, float32(math.NaN()), 7, float32(math.NaN()), 3, 7}
	xb, out, arg := Upload(t, d, x), Empty(t, d, 1), Empty(t, d, 1)
	for _, op := range []metal.ReduceOp{metal.ReduceMax, metal.ReduceMin} {
		require.NoError(t, metal.RunReduceStrided(d, op, out, arg, xb, []int{7}, []bool{true}))
		assert.True(t, math.IsNaN(float64(Download(out, 1)[0])), "op %d NaN", op)
		assert.Equal(t, int32(2), unsafe.Slice((*int32)(arg.Pointer()), 1)[0], "op %d: the first NaN", op)
	}
	require.Error(t, metal.RunReduceStrided(d, metal.ReduceVar, out, arg, xb, []int{7}, []bool{true}), "var needs RunVarStrided")
	seven := []int{2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2}
	alt := []bool{true, false, true, false, true, false, true, false, true, false, true, false, true}
	require.False(t, metal.ReduceLayoutFits(seven, alt))
	require.Error(t, metal.RunReduceStrided(d, metal.ReduceSum, out, arg, xb, seven, alt), "13 alternating runs")
	release(xb, out, arg)
	require.NoError(t, d.Synchronize())
}

func narrow(xs []float64) []float32 {
	out := make([]float32, len(xs))
	for i, v := range xs {
		out[i] = float32(v)
	}
	return out
}

// varDiv is n − 1 (ddof 1), NaN when that is not positive.
func varDiv(n int) float64 {
	if n-1 <= 0 {
		return math.NaN()
	}
	return float64(n - 1)
}
