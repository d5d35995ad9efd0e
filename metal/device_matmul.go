package metal

import "fmt"

// RunMatMulT writes c = op(a)·op(b) (m×n) with the kernel [MatMulFor] picks for
// d, where op(a) is m×k and op(b) k×n: a is stored m×k, or k×m when transA
// (c = aᵀ·b, a weight gradient); b is stored k×n, or n×k when transB (c = a·bᵀ,
// an input gradient). One launch.
func RunMatMulT(d Compute, c, a, b *Buffer, m, n, k int, transA, transB bool) error {
	return RunMatMulTWith(d, MatMulFor(d.Facts()), c, a, b, m, n, k, transA, transB)
}

// RunMatMulTWith is [RunMatMulT] with a chosen kernel. The transpositions are
// function constants of the kernels (TRANS_A, TRANS_B), so each of the four forms
// is a pipeline of its own with no run-time branch.
func RunMatMulTWith(d Compute, kern MatMulKernel, c, a, b *Buffer, m, n, k int, transA, transB bool) error {
	return runMatMul(d, kern, c, a, b, 0, 0, 0, m, n, k, transA, transB)
}

// RunMatMulTAt is [RunMatMulT] on the matrices that start cOff, aOff and bOff
// float32 elements into c, a and b: one product of a batch stored back to back.
// The products of a batch are launched in order of increasing cOff (the
// simulator poisons an output from its offset to its end before each launch).
func RunMatMulTAt(d Compute, c, a, b *Buffer, cOff, aOff, bOff, m, n, k int, transA, transB bool) error {
	return runMatMul(d, MatMulFor(d.Facts()), c, a, b, cOff, aOff, bOff, m, n, k, transA, transB)
}

func runMatMul(d Compute, kern MatMulKernel, c, a, b *Buffer, cOff, aOff, bOff, m, n, k int, transA, transB bool) error {
	kernel := string(kern)
	if cOff < 0 || aOff < 0 || bOff < 0 {
		return fmt.Errorf("%s: offsets %d, %d, %d", kernel, cOff, aOff, bOff)
	}
	if err := checkCount(kernel, m, n, k); err != nil {
		return err
	}
	if err := checkCount(kernel, m, max(n, k)); err != nil {
		return err
	}
	if err := checkCount(kernel, k, n); err != nil {
		return err
	}
	if err := checkBuffers(kernel, need{"c", c, cOff + m*n, false}, need{"a", a, aOff + m*k, false}, need{"b", b, bOff + k*n, false}); err != nil {
		return err
	}
	if m == 0 || n == 0 {
		return nil
	}
	l := &Launch{
		Kernel:    kernel,
		Constants: []Constant{{Index: 0, Value: transA}, {Index: 1, Value: transB}},
		Args: []Arg{{Index: 0, Buffer: c, Offset: 4 * cOff, Access: Write}, {Index: 1, Buffer: a, Offset: 4 * aOff, Access: Read},
			{Index: 2, Buffer: b, Offset: 4 * bOff, Access: Read},
			Params(3, struct{ M, N, K uint32 }{uint32(m), uint32(n), uint32(k)})},
	}
	switch kern {
	case MatMulTiled:
		l.Groups = [3]int{groupsFor(n, 16), groupsFor(m, 16), 1}
		l.Threads = [3]int{16, 16, 1}
	case MatMulSimdgroup:
		if !d.Facts().SimdgroupMatrix() {
			return fmt.Errorf("%s: the device (GPU family %d) has no simdgroup_matrix", kernel, d.Facts().Family)
		}
		l.Groups = [3]int{groupsFor(n, 32), groupsFor(m, 32), 1}
		l.Threads = [3]int{128, 1, 1}
	default:
		return fmt.Errorf("unknown matmul kernel %q", kernel)
	}
	return d.Dispatch(l)
}
