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
	kernel := string(kern)
	if err := checkCount(kernel, m, n, k); err != nil {
		return err
	}
	if err := checkCount(kernel, m, max(n, k)); err != nil {
		return err
	}
	if err := checkCount(kernel, k, n); err != nil {
		return err
	}
	if err := checkBuffers(kernel, need{"c", c, m * n, false}, need{"a", a, m * k, false}, need{"b", b, k * n, false}); err != nil {
		return err
	}
	if m == 0 || n == 0 {
		return nil
	}
	l := &Launch{
		Kernel:    kernel,
		Constants: []Constant{{Index: 0, Value: transA}, {Index: 1, Value: transB}},
		Args: []Arg{Out(0, c), In(1, a), In(2, b),
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
