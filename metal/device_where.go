package metal

import "fmt"

func init() {
	Tunings["where"] = Tuning{0: {1 << 15}, 9: {1 << 14}}
}

type whereParams struct {
	N, Rank    uint32
	Dims       [BroadcastMaxRank]uint32
	SM, SA, SB [BroadcastMaxRank]uint32
}

// RunWhere writes out = mask ? a : b with NumPy broadcasting: out has shape dims
// (rank ≤ 6) and sm, sa, sb hold, per dim, the element strides of the mask, a
// and b (0 along a dim an operand broadcasts over). The mask holds float32
// (maskFloat: set where nonzero, NaN included) or int32 values. One launch
// (where_f32).
func RunWhere(d Compute, out, mask, a, b *Buffer, maskFloat bool, dims, sm, sa, sb []int) error {
	const kernel = "where_f32"
	if len(dims) > BroadcastMaxRank || len(sm) != len(dims) || len(sa) != len(dims) || len(sb) != len(dims) {
		return fmt.Errorf("%s: rank %d with %d, %d and %d strides (at most %d)", kernel, len(dims), len(sm), len(sa), len(sb), BroadcastMaxRank)
	}
	if err := checkCount(kernel, dims...); err != nil {
		return err
	}
	p := whereParams{Rank: uint32(len(dims))}
	n, mn, an, bn := 1, 1, 1, 1
	for i, dim := range dims {
		if sm[i] < 0 || sa[i] < 0 || sb[i] < 0 {
			return fmt.Errorf("%s: negative stride", kernel)
		}
		n *= dim
		if dim > 0 {
			mn += (dim - 1) * sm[i]
			an += (dim - 1) * sa[i]
			bn += (dim - 1) * sb[i]
		}
		p.Dims[i], p.SM[i], p.SA[i], p.SB[i] = uint32(dim), uint32(sm[i]), uint32(sa[i]), uint32(sb[i])
	}
	if n == 0 {
		return nil
	}
	for _, c := range []int{mn, an, bn} {
		if err := checkCount(kernel, c); err != nil {
			return err
		}
	}
	if err := checkBuffers(kernel, need{"out", out, n, false}, need{"mask", mask, mn, false}, need{"a", a, an, false}, need{"b", b, bn, false}); err != nil {
		return err
	}
	p.N = uint32(n)
	return d.Dispatch(elementwiseLaunch(kernel, opConst(maskFloat), n, Out(0, out), In(1, mask), In(2, a), In(3, b), Params(4, p)))
}
