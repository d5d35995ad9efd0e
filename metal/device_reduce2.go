package metal

import (
	"fmt"
	"math"
)

// More reductions (ReduceOp values of [RunReduceStrided] and
// [RunReduceStridedBackward]; the row and column kernels take only the first three).
const (
	ReduceMin ReduceOp = ReduceMean + 1 + iota
	ReduceVar
)

func init() {
	Tunings["reduce_strided"] = Tuning{0: {1 << 15}, 9: {1 << 14}}
}

// ReduceMaxRank is the largest number of kept, and of reduced, dims a strided
// reduction takes once runs of adjacent dims of one kind are merged.
const ReduceMaxRank = 6

type stridedReduceParams struct {
	K, N, KRank, RRank uint32
	KDims, KStrides    [ReduceMaxRank]uint32
	RDims, RStrides    [ReduceMaxRank]uint32
	Scale              float32
}

type reduceBackwardParams struct {
	N, Rank            uint32
	Dims               [ReduceMaxRank]uint32
	GStrides, RStrides [ReduceMaxRank]uint32
	Scale              float32
}

// reduceRuns merges runs of adjacent dims that are all reduced or all kept and
// drops dims of size 1: the reduction is the same on the runs.
func reduceRuns(dims []int, reduced []bool) (rd []int, rr []bool) {
	for i, n := range dims {
		if n == 1 {
			continue
		}
		if k := len(rd) - 1; k >= 0 && rr[k] == reduced[i] {
			rd[k] *= n
			continue
		}
		rd, rr = append(rd, n), append(rr, reduced[i])
	}
	return rd, rr
}

// ReduceLayoutFits reports whether a strided reduction of a contiguous tensor
// of dims over the reduced ones fits the kernels (at most [ReduceMaxRank] kept
// and reduced runs).
func ReduceLayoutFits(dims []int, reduced []bool) bool {
	rd, rr := reduceRuns(dims, reduced)
	kept := 0
	for _, r := range rr {
		if !r {
			kept++
		}
	}
	return kept <= ReduceMaxRank && len(rd)-kept <= ReduceMaxRank
}

// stridedLayout builds the forward parameters of a reduction of contiguous x
// (dims) over the reduced dims.
func stridedLayout(kernel string, dims []int, reduced []bool) (stridedReduceParams, int, int, error) {
	var p stridedReduceParams
	if len(reduced) != len(dims) {
		return p, 0, 0, fmt.Errorf("%s: %d dims and %d reduced flags", kernel, len(dims), len(reduced))
	}
	if err := checkCount(kernel, dims...); err != nil {
		return p, 0, 0, err
	}
	if !ReduceLayoutFits(dims, reduced) {
		return p, 0, 0, fmt.Errorf("%s: dims %v reduced %v: more than %d runs of one kind", kernel, dims, reduced, ReduceMaxRank)
	}
	rd, rr := reduceRuns(dims, reduced)
	k, n, stride := 1, 1, 1
	for i := len(rd) - 1; i >= 0; i-- {
		if rr[i] {
			n *= rd[i]
		} else {
			k *= rd[i]
		}
	}
	// strides: innermost first, then the kept and reduced dims in order
	strides := make([]int, len(rd))
	for i := len(rd) - 1; i >= 0; i-- {
		strides[i] = stride
		stride *= rd[i]
	}
	for i, d := range rd {
		if rr[i] {
			p.RDims[p.RRank], p.RStrides[p.RRank] = uint32(d), uint32(strides[i])
			p.RRank++
		} else {
			p.KDims[p.KRank], p.KStrides[p.KRank] = uint32(d), uint32(strides[i])
			p.KRank++
		}
	}
	p.K, p.N = uint32(k), uint32(n)
	return p, k, n, nil
}

// reduceThreads is the threadgroup size of a strided reduction: a power of two
// covering n, from 32 to 256.
func reduceThreads(n int) int {
	t := 32
	for t < 256 && t < n {
		t *= 2
	}
	return t
}

// RunReduceStrided writes out[o] = op over the reduced dims of contiguous x
// (dims, rank any, reduced marks the reduced dims), the outputs in row-major
// order over the kept dims: the sum, mean (op [ReduceSum], [ReduceMean]), or
// maximum or minimum ([ReduceMax], [ReduceMin]), whose first winning index (in
// row-major order over the reduced dims) goes to arg (int32; nil for sums).
// An empty reduction sums to 0 (a mean to NaN); maxima of one are an error. One
// launch (reduce_strided_f32 or reduce_arg_strided_f32), a threadgroup per output.
func RunReduceStrided(d Compute, op ReduceOp, out, arg, x *Buffer, dims []int, reduced []bool) error {
	kernel := "reduce_strided_f32"
	if op == ReduceMax || op == ReduceMin {
		kernel = "reduce_arg_strided_f32"
	}
	p, k, n, err := stridedLayout(kernel, dims, reduced)
	if err != nil {
		return err
	}
	switch op {
	case ReduceSum:
		p.Scale = 1
	case ReduceMean:
		p.Scale = float32(1 / float64(n))
	case ReduceMax, ReduceMin:
		if n == 0 && k > 0 {
			return fmt.Errorf("%s: maximum or minimum over no elements", kernel)
		}
	default:
		return fmt.Errorf("%s: reduction %d: want sum, mean, max or min", kernel, op)
	}
	if k == 0 {
		return nil
	}
	if err := checkBuffers(kernel, need{"out", out, k, false}, need{"x", x, k * n, false}); err != nil {
		return err
	}
	l := &Launch{Kernel: kernel, Groups: [3]int{k, 1, 1}, Threads: [3]int{reduceThreads(n), 1, 1}}
	if kernel == "reduce_strided_f32" {
		l.Args = []Arg{Out(0, out), In(1, x), Params(2, p)}
	} else {
		if err := checkBuffers(kernel, need{"arg", arg, k, false}); err != nil {
			return err
		}
		l.Constants = []Constant{{Index: 0, Value: op == ReduceMax}}
		l.Args = []Arg{Out(0, out), Out(1, arg), In(2, x), Params(3, p)}
	}
	return d.Dispatch(l)
}

// varScale is 1/(n − ddof), NaN when that is not positive.
func varScale(n, ddof int, num float64) float32 {
	if n-ddof <= 0 {
		return float32(math.NaN())
	}
	return float32(num / float64(n-ddof))
}

// RunVarStrided writes the variance of contiguous x over the reduced dims to out
// (the sum of squared deviations over n − ddof, NaN when that is not positive)
// and the means to mean, the outputs in row-major order over the kept dims. Two
// passes over x in one launch (var_strided_f32).
func RunVarStrided(d Compute, out, mean, x *Buffer, dims []int, reduced []bool, ddof int) error {
	const kernel = "var_strided_f32"
	p, k, n, err := stridedLayout(kernel, dims, reduced)
	if err != nil {
		return err
	}
	if k == 0 {
		return nil
	}
	if err := checkBuffers(kernel, need{"out", out, k, false}, need{"mean", mean, k, false}, need{"x", x, k * n, false}); err != nil {
		return err
	}
	p.Scale = varScale(n, ddof, 1)
	return d.Dispatch(&Launch{
		Kernel: kernel, Groups: [3]int{k, 1, 1}, Threads: [3]int{reduceThreads(n), 1, 1},
		Args: []Arg{Out(0, out), Out(1, mean), In(2, x), Params(3, p)},
	})
}

// RunReduceStridedBackward writes dx (x's dims), the gradient of a strided
// reduction for the output gradient g: g (times 1/n for a mean) for a sum or a
// mean, g at the winner and 0 elsewhere for a maximum or minimum (aux: the arg
// of RunReduceStrided), 2·g·(x − mean)/(n − ddof) for a variance (aux: the means
// of RunVarStrided). One launch, a thread per element of dx.
func RunReduceStridedBackward(d Compute, op ReduceOp, dx, g, x, aux *Buffer, dims []int, reduced []bool, ddof int) error {
	kernel := map[ReduceOp]string{ReduceSum: "reduce_strided_bwd_f32", ReduceMean: "reduce_strided_bwd_f32",
		ReduceMax: "reduce_arg_strided_bwd_f32", ReduceMin: "reduce_arg_strided_bwd_f32", ReduceVar: "var_strided_bwd_f32"}[op]
	if kernel == "" {
		return fmt.Errorf("reduce_strided_bwd: unknown reduction %d", op)
	}
	if len(reduced) != len(dims) {
		return fmt.Errorf("%s: %d dims and %d reduced flags", kernel, len(dims), len(reduced))
	}
	if err := checkCount(kernel, dims...); err != nil {
		return err
	}
	rd, rr := reduceRuns(dims, reduced)
	if len(rd) > ReduceMaxRank {
		return fmt.Errorf("%s: dims %v reduced %v: %d runs (at most %d)", kernel, dims, reduced, len(rd), ReduceMaxRank)
	}
	total, k, n := 1, 1, 1
	for _, v := range dims {
		total *= v
	}
	for i, v := range dims {
		if reduced[i] {
			n *= v
		} else {
			k *= v
		}
	}
	if total == 0 {
		return nil
	}
	p := reduceBackwardParams{N: uint32(total), Rank: uint32(len(rd))}
	gs, rs := 1, 1
	for i := len(rd) - 1; i >= 0; i-- {
		p.Dims[i] = uint32(rd[i])
		if rr[i] {
			p.RStrides[i] = uint32(rs)
			rs *= rd[i]
		} else {
			p.GStrides[i] = uint32(gs)
			gs *= rd[i]
		}
	}
	if err := checkBuffers(kernel, need{"dx", dx, total, false}, need{"g", g, k, false}); err != nil {
		return err
	}
	l := &Launch{Kernel: kernel, Groups: [3]int{groupsFor(total, elementwiseGroup), 1, 1}, Threads: [3]int{elementwiseGroup, 1, 1}}
	switch op {
	case ReduceSum, ReduceMean:
		p.Scale = 1
		if op == ReduceMean {
			p.Scale = float32(1 / float64(n))
		}
		l.Args = []Arg{Out(0, dx), In(1, g), Params(2, p)}
	case ReduceMax, ReduceMin:
		if err := checkBuffers(kernel, need{"arg", aux, k, false}); err != nil {
			return err
		}
		l.Args = []Arg{Out(0, dx), In(1, g), In(2, aux), Params(3, p)}
	default:
		if err := checkBuffers(kernel, need{"x", x, total, false}, need{"mean", aux, k, false}); err != nil {
			return err
		}
		p.Scale = varScale(n, ddof, 2)
		l.Args = []Arg{Out(0, dx), In(1, g), In(2, x), In(3, aux), Params(4, p)}
	}
	return d.Dispatch(l)
}
