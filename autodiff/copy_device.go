package autodiff

import "github.com/mlxtrain/mlxtrain/metal"

// The device path of the shape ops that move elements (Slice, Concat, Stack,
// Split, Permute/Transpose/SwapAxes, BroadcastTo), forward and backward: one
// strided copy launch (copy_strided_u32) per block, for 4-byte tensors (float32,
// int32) in the device's memory.

var copyOp = metal.Kernels.Register("copy", []string{"n"}, metal.DeviceImpl("copy", copySelfTest), &metal.Impl{Path: metal.PathGo})

// copyDevice returns the device for a copy of n elements between the tensors, or nil.
func copyDevice(n int, ts ...*Tensor) metal.Compute {
	for _, t := range ts {
		if t.dtype.Size() != 4 {
			return nil
		}
	}
	return DeviceFor(copyOp, ts, n)
}

// copyAccess is the access of a copy's destination: written whole, or in part
// (the rest keeps its contents).
func copyAccess(whole bool) metal.Access {
	if whole {
		return metal.Write
	}
	return metal.ReadWrite
}

// axisCopyDevice is shpAxisCopy on the device: for every outer index o and
// j < count, the inner-row src[o, sStart+j·sStep, :] goes to dst[o, dStart+j·dStep, :].
func axisCopyDevice(d metal.Compute, dst *Tensor, dDim, dStart, dStep int, src *Tensor, sDim, sStart, sStep, count, outer, inner int, whole bool) error {
	return metal.RunCopy(d, dst.buf, src.buf, []int{outer, count, inner},
		[]int{dDim * inner, dStep * inner, 1}, []int{sDim * inner, sStep * inner, 1},
		dStart*inner, sStart*inner, copyAccess(whole))
}

// shpAxisCopyOn runs shpAxisCopy on d (from copyDevice; nil: the CPU), whole
// when the copy writes all of dst; a launch that cannot be encoded sends it to
// the CPU. It returns the path taken.
func shpAxisCopyOn(op string, d metal.Compute, dst *Tensor, dDim, dStart, dStep int, src *Tensor, sDim, sStart, sStep, count, outer, inner int, whole bool) metal.Path {
	if tryDevice(op, d, func(d metal.Compute) error {
		return axisCopyDevice(d, dst, dDim, dStart, dStep, src, sDim, sStart, sStep, count, outer, inner, whole)
	}) {
		return metal.PathMetal
	}
	shpAxisCopyAny(dst, dDim, dStart, dStep, src, sDim, sStart, sStep, count, outer, inner)
	return metal.PathGo
}

// joinPaths is the path of an op made of several copies: metal when every copy
// ran there.
func joinPaths(a, b metal.Path) metal.Path {
	if a == metal.PathMetal && b == metal.PathMetal {
		return a
	}
	return metal.PathGo
}

// rowMajorStrides returns the element strides of a contiguous tensor of shape.
func rowMajorStrides(shape []int) []int {
	s, step := make([]int, len(shape)), 1
	for i := len(shape) - 1; i >= 0; i-- {
		s[i] = step
		step *= shape[i]
	}
	return s
}

// copyStrided copies src into all of dst, whose shape is the index space, reading
// src with the given element strides; errNotHere when the copy has more than
// metal.CopyMaxRank dims once merged.
func copyStrided(d metal.Compute, dst, src *Tensor, srcStrides []int) error {
	ds := rowMajorStrides(dst.shape)
	if md, _, _ := metal.MergeCopyDims(dst.shape, ds, srcStrides); len(md) > metal.CopyMaxRank {
		return errNotHere
	}
	return metal.RunCopy(d, dst.buf, src.buf, dst.shape, ds, srcStrides, 0, 0, metal.Write)
}

// permuteStrides returns the strides of src (contiguous) read in the order of
// the permuted result: axis k of the result is axis perm[k] of src.
func permuteStrides(shape, perm []int) []int {
	st := rowMajorStrides(shape)
	out := make([]int, len(perm))
	for k, a := range perm {
		out[k] = st[a]
	}
	return out
}

// shpPermuteOn runs shpPermuteAny on the device when the copy op picks it, else
// on the CPU; it returns the path taken.
func shpPermuteOn(op string, dst, src *Tensor, perm []int) metal.Path {
	if tryDevice(op, copyDevice(dst.Len(), dst, src), func(d metal.Compute) error {
		return copyStrided(d, dst, src, permuteStrides(src.shape, perm))
	}) {
		return metal.PathMetal
	}
	shpPermuteAny(dst, src, perm)
	return metal.PathGo
}

// broadcastOn fills dst (of shape) from src with the element strides st (0 on
// repeated axes) on the device when the copy op picks it; false: the caller
// runs the CPU kernel.
func broadcastOn(dst, src *Tensor, st []int) bool {
	return tryDevice("broadcast_to", copyDevice(dst.Len(), dst, src), func(d metal.Compute) error {
		return copyStrided(d, dst, src, st)
	})
}

func copySelfTest() error {
	return DeviceSelfTest(func(d metal.Compute) ([]*Tensor, error) {
		r := SelfTestRand()
		x := RandomTensor(r, -2, 2, 5, 9, 7)
		defer x.Release()
		// a slice with a step, its gradient into zeros, a permutation, a broadcast
		sl, dx := Empty(Float32, 5, 4, 7), Zeros(Float32, 5, 9, 7)
		pm, bc := Empty(Float32, 7, 5, 9), Empty(Float32, 3, 5, 9, 7)
		outs := []*Tensor{sl, dx, pm, bc}
		perm, bst := []int{2, 0, 1}, []int{0, 63, 7, 1}
		if d == nil {
			shpAxisCopyAny(sl, 4, 0, 1, x, 9, 1, 2, 4, 5, 7)
			shpAxisCopyAny(dx, 9, 1, 2, sl, 4, 0, 1, 4, 5, 7)
			shpPermuteAny(pm, x, perm)
			shpBroadcastKernel(bc.Float32s(), x.Float32s(), bc.shape, bst)
			return outs, nil
		}
		if err := axisCopyDevice(d, sl, 4, 0, 1, x, 9, 1, 2, 4, 5, 7, true); err != nil {
			return outs, err
		}
		if err := axisCopyDevice(d, dx, 9, 1, 2, sl, 4, 0, 1, 4, 5, 7, false); err != nil {
			return outs, err
		}
		if err := copyStrided(d, pm, x, permuteStrides(x.shape, perm)); err != nil {
			return outs, err
		}
		return outs, copyStrided(d, bc, x, bst)
	})()
}
