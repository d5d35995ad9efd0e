package metal

func init() {
	Tunings["dropout"] = Tuning{0: {1 << 15}, 9: {1 << 14}}
}

type dropoutParams struct {
	N, OffLo, OffHi, SeedLo, SeedHi, Threshold uint32
	Scale                                      float32
}

// RunDropout writes out[i] = x[i]·scale for the elements i < n that dropout
// keeps, 0 for the others: element i is kept when word off+i of the Philox4x32-10
// stream of seed (autodiff.RNG's layout, kind 0) is at least threshold. The same
// call on the gradient is the backward pass. One launch (dropout_f32).
func RunDropout(d Compute, out, x *Buffer, n int, seed, off uint64, threshold uint32, scale float32) error {
	const kernel = "dropout_f32"
	if err := checkCount(kernel, n); err != nil {
		return err
	}
	if err := checkBuffers(kernel, need{"out", out, n, false}, need{"x", x, n, false}); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	return d.Dispatch(&Launch{
		Kernel:  kernel,
		Groups:  [3]int{groupsFor(n, elementwiseGroup), 1, 1},
		Threads: [3]int{elementwiseGroup, 1, 1},
		Args: []Arg{Out(0, out), In(1, x), Params(2, dropoutParams{uint32(n), uint32(off), uint32(off >> 32),
			uint32(seed), uint32(seed >> 32), threshold, scale})},
	})
}
