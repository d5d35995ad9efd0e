package metal

import "fmt"

// CopyMaxRank is the largest rank [RunCopy] takes once its dims are merged.
const CopyMaxRank = 6

func init() {
	// A copy moves 8 bytes per element and computes nothing: like the
	// elementwise ops, it pays for a launch only on large tensors.
	Tunings["copy"] = Tuning{0: {1 << 15}, 9: {1 << 14}}
}

type copyParams struct {
	N, Rank, SrcOff, DstOff uint32
	Dims, SrcStrides        [CopyMaxRank]uint32
	DstStrides              [CopyMaxRank]uint32
}

// MergeCopyDims simplifies the index space of a strided copy: it drops dims of
// size 1 and merges each dim into the next where both strides allow (the pair
// walks memory as one dim). Copies are the same before and after; the result
// shares no memory with the arguments. An index space with no elements comes back
// as dims [0].
func MergeCopyDims(dims, dstStrides, srcStrides []int) (md, mds, mss []int) {
	for i, n := range dims {
		if n == 0 {
			return []int{0}, []int{0}, []int{0}
		}
		if n == 1 {
			continue
		}
		if k := len(md) - 1; k >= 0 && mds[k] == dstStrides[i]*n && mss[k] == srcStrides[i]*n {
			md[k] *= n
			mds[k], mss[k] = dstStrides[i], srcStrides[i]
			continue
		}
		md, mds, mss = append(md, n), append(mds, dstStrides[i]), append(mss, srcStrides[i])
	}
	return md, mds, mss
}

// RunCopy copies the elements of a strided index space: for every index i of
// dims, dst[dstOff + Σ i_k·dstStrides[k]] = src[srcOff + Σ i_k·srcStrides[k]]
// (offsets and strides in 4-byte elements; a source stride may be 0, a
// destination's must not make two indices meet). dims are merged first
// ([MergeCopyDims]); more than [CopyMaxRank] dims after that is an error. access
// is [Write] when the launch writes all of dst (the simulator then poisons it
// first), [ReadWrite] when it writes a part and the rest must stay. One launch
// (copy_strided_u32), none for an empty index space.
func RunCopy(d Compute, dst, src *Buffer, dims, dstStrides, srcStrides []int, dstOff, srcOff int, access Access) error {
	const kernel = "copy_strided_u32"
	if len(dstStrides) != len(dims) || len(srcStrides) != len(dims) {
		return fmt.Errorf("%s: %d dims with %d and %d strides", kernel, len(dims), len(dstStrides), len(srcStrides))
	}
	if access != Write && access != ReadWrite {
		return fmt.Errorf("%s: dst access %s: want write or read-write", kernel, access)
	}
	if dstOff < 0 || srcOff < 0 {
		return fmt.Errorf("%s: negative offset", kernel)
	}
	for i := range dims {
		if dims[i] < 0 || dstStrides[i] < 0 || srcStrides[i] < 0 {
			return fmt.Errorf("%s: dims %v, strides %v and %v: want none negative", kernel, dims, dstStrides, srcStrides)
		}
	}
	md, mds, mss := MergeCopyDims(dims, dstStrides, srcStrides)
	if len(md) > CopyMaxRank {
		return fmt.Errorf("%s: %d dims after merging %v (at most %d)", kernel, len(md), dims, CopyMaxRank)
	}
	if err := checkCount(kernel, md...); err != nil {
		return err
	}
	n, dn, sn := 1, dstOff+1, srcOff+1
	for i, dim := range md {
		n *= dim
		if dim > 0 {
			dn += (dim - 1) * mds[i]
			sn += (dim - 1) * mss[i]
		}
	}
	if n == 0 {
		return nil
	}
	if err := checkCount(kernel, dn); err != nil {
		return err
	}
	if err := checkCount(kernel, sn); err != nil {
		return err
	}
	if err := checkBuffers(kernel, need{"dst", dst, dn, false}, need{"src", src, sn, false}); err != nil {
		return err
	}
	p := copyParams{N: uint32(n), Rank: uint32(len(md)), SrcOff: uint32(srcOff), DstOff: uint32(dstOff)}
	for i := range md {
		p.Dims[i], p.DstStrides[i], p.SrcStrides[i] = uint32(md[i]), uint32(mds[i]), uint32(mss[i])
	}
	return d.Dispatch(&Launch{
		Kernel:  kernel,
		Groups:  [3]int{groupsFor(n, elementwiseGroup), 1, 1},
		Threads: [3]int{elementwiseGroup, 1, 1},
		Args:    []Arg{{Index: 0, Buffer: dst, Access: access}, In(1, src), Params(2, p)},
	})
}

// RunFill writes n copies of value into the float32 buffer b from element off
// on. One launch (fill_f32), none when n is 0.
func RunFill(d Compute, b *Buffer, off, n int, value float32) error {
	const kernel = "fill_f32"
	if err := checkCount(kernel, n); err != nil {
		return err
	}
	if off < 0 || b == nil || b.Size() < 4*(off+n) {
		return fmt.Errorf("%s: %d elements from %d of a buffer too small or missing", kernel, n, off)
	}
	if n == 0 {
		return nil
	}
	return d.Dispatch(&Launch{Kernel: kernel, Groups: [3]int{groupsFor(n, 256), 1, 1}, Threads: [3]int{256, 1, 1},
		Args: []Arg{{Index: 0, Buffer: b, Offset: 4 * off, Access: ReadWrite}, Params(1, struct {
			N     uint32
			Value float32
		}{uint32(n), value})}})
}

// RunZeroAt is [RunFill] with zeros.
func RunZeroAt(d Compute, b *Buffer, off, n int) error { return RunFill(d, b, off, n, 0) }
