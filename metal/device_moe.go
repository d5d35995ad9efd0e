package metal

import "fmt"

type moeParams struct{ Tokens, K, Rows, Dim uint32 }

func moeCheck(kernel string, tokens, k, rows, dim int) (moeParams, error) {
	if k < 1 {
		return moeParams{}, fmt.Errorf("%s: %d slots per token", kernel, k)
	}
	if err := checkCount(kernel, tokens, k, dim); err != nil {
		return moeParams{}, err
	}
	if err := checkCount(kernel, rows, dim); err != nil {
		return moeParams{}, err
	}
	return moeParams{uint32(tokens), uint32(k), uint32(rows), uint32(dim)}, nil
}

func rowGrid(rows, dim int) (groups, threads [3]int) {
	t := min(256, max(1, groupsFor(dim, 32))*32)
	return [3]int{groupsFor(dim, t), rows, 1}, [3]int{t, 1, 1}
}

// RunMoEDispatch gathers rows of width dim into expert order: xs[i] =
// x[token[i]] for the rows int32 token ids (each in [0, tokens)). One launch
// (moe_gather_f32).
func RunMoEDispatch(d Compute, xs, x, token *Buffer, tokens, rows, dim int) error {
	const kernel = "moe_gather_f32"
	p, err := moeCheck(kernel, tokens, 1, rows, dim)
	if err != nil {
		return err
	}
	if err := checkBuffers(kernel, need{"xs", xs, rows * dim, false}, need{"x", x, tokens * dim, false}, need{"token", token, rows, false}); err != nil {
		return err
	}
	if rows*dim == 0 {
		return nil
	}
	g, t := rowGrid(rows, dim)
	return d.Dispatch(&Launch{Kernel: kernel, Groups: g, Threads: t, Args: []Arg{Out(0, xs), In(1, x), In(2, token), Params(3, p)}})
}

// RunMoEDispatchBackward writes dx[n] = Σ_j dxs[pos[n·k+j]] over the kept
// pairs (pos ≥ 0), in slot order: the gradient of [RunMoEDispatch]. One launch
// (moe_scatter_f32).
func RunMoEDispatchBackward(d Compute, dx, dxs, pos *Buffer, tokens, k, rows, dim int) error {
	const kernel = "moe_scatter_f32"
	p, err := moeCheck(kernel, tokens, k, rows, dim)
	if err != nil {
		return err
	}
	if err := checkBuffers(kernel, need{"dx", dx, tokens * dim, false}, need{"dxs", dxs, rows * dim, false}, need{"pos", pos, tokens * k, false}); err != nil {
		return err
	}
	if tokens*dim == 0 {
		return nil
	}
	g, t := rowGrid(tokens, dim)
	return d.Dispatch(&Launch{Kernel: kernel, Groups: g, Threads: t, Args: []Arg{Out(0, dx), In(1, dxs), In(2, pos), Params(3, p)}})
}

// RunMoECombine writes y[n] = Σ_j gates[n·k+j]·ys[pos[n·k+j]] over the kept
// pairs: the weighted scatter of the experts' outputs back to the tokens. One
// launch (moe_combine_f32).
func RunMoECombine(d Compute, y, ys, gates, pos *Buffer, tokens, k, rows, dim int) error {
	const kernel = "moe_combine_f32"
	p, err := moeCheck(kernel, tokens, k, rows, dim)
	if err != nil {
		return err
	}
	if err := checkBuffers(kernel, need{"y", y, tokens * dim, false}, need{"ys", ys, rows * dim, false},
		need{"gates", gates, tokens * k, false}, need{"pos", pos, tokens * k, false}); err != nil {
		return err
	}
	if tokens*dim == 0 {
		return nil
	}
	g, t := rowGrid(tokens, dim)
	return d.Dispatch(&Launch{Kernel: kernel, Groups: g, Threads: t, Args: []Arg{Out(0, y), In(1, ys), In(2, gates), In(3, pos), Params(4, p)}})
}

// RunMoECombineBackward writes the gradients of [RunMoECombine] from dy:
// dys[pos[i]] = gates[i]·dy[n] (every kept row of ys belongs to one pair) and
// dgates[i] = ⟨dy[n], ys[pos[i]]⟩ (0 for a dropped pair). Either output may be
// nil. A launch each (moe_combine_dys_f32, moe_combine_dgates_f32).
func RunMoECombineBackward(d Compute, dys, dgates, dy, ys, gates, pos *Buffer, tokens, k, rows, dim int) error {
	const kernel = "moe_combine_backward"
	p, err := moeCheck(kernel, tokens, k, rows, dim)
	if err != nil {
		return err
	}
	if err := checkBuffers(kernel, need{"dys", dys, rows * dim, true}, need{"dgates", dgates, tokens * k, true},
		need{"dy", dy, tokens * dim, false}, need{"ys", ys, rows * dim, false},
		need{"gates", gates, tokens * k, false}, need{"pos", pos, tokens * k, false}); err != nil {
		return err
	}
	if dys != nil && rows*dim > 0 {
		g, t := rowGrid(tokens*k, dim)
		if err := d.Dispatch(&Launch{Kernel: "moe_combine_dys_f32", Groups: g, Threads: t,
			Args: []Arg{Out(0, dys), In(1, dy), In(2, gates), In(3, pos), Params(4, p)}}); err != nil {
			return err
		}
	}
	if dgates != nil && tokens*k > 0 {
		return d.Dispatch(&Launch{Kernel: "moe_combine_dgates_f32", Groups: [3]int{groupsFor(tokens*k, 8), 1, 1}, Threads: [3]int{256, 1, 1},
			Args: []Arg{Out(0, dgates), In(1, dy), In(2, ys), In(3, pos), Params(4, p)}})
	}
	return nil
}

type moeGroupParams struct{ Rows, Out, Experts, Flags uint32 }

// RunMoEBiasAct applies, in place on y (rows × out, rows in expert order),
// the bias of each row's expert (b: experts × out, nil for none; expert: an
// int32 per row) and then, with gelu, GELU (the erf form), writing GELU′ into
// deriv unless nil. One launch (moe_bias_act_f32).
func RunMoEBiasAct(d Compute, y, deriv, b, expert *Buffer, rows, out, experts int, gelu bool) error {
	const kernel = "moe_bias_act_f32"
	if err := checkCount(kernel, rows, out); err != nil {
		return err
	}
	if err := checkBuffers(kernel, need{"y", y, rows * out, false}, need{"deriv", deriv, rows * out, true},
		need{"b", b, experts * out, true}, need{"expert", expert, rows, false}); err != nil {
		return err
	}
	p := moeGroupParams{uint32(rows), uint32(out), uint32(experts), 0}
	if b != nil {
		p.Flags |= 1
	}
	if gelu {
		p.Flags |= 2
		if deriv != nil {
			p.Flags |= 4
		}
	}
	if rows*out == 0 || p.Flags == 0 {
		return nil
	}
	var keep []*Buffer
	defer func() { releaseBuffers(keep) }()
	var err error
	if deriv, err = placeholder(d, deriv, &keep); err != nil {
		return err
	}
	if b, err = placeholder(d, b, &keep); err != nil {
		return err
	}
	g, t := rowGrid(rows, out)
	return d.Dispatch(&Launch{Kernel: kernel, Groups: g, Threads: t,
		Args: []Arg{InOut(0, y), Out(1, deriv), In(2, b), In(3, expert), Params(4, p)}})
}

// RunMoEGroupColSum writes db[e] = the sum of dy's rows [offsets[e],
// offsets[e+1]) (dy: rows × out; offsets: experts+1 int32s). One launch
// (moe_group_colsum_f32).
func RunMoEGroupColSum(d Compute, db, dy, offsets *Buffer, rows, out, experts int) error {
	const kernel = "moe_group_colsum_f32"
	if err := checkCount(kernel, max(rows, experts), out); err != nil {
		return err
	}
	if err := checkBuffers(kernel, need{"db", db, experts * out, false}, need{"dy", dy, rows * out, false},
		need{"offsets", offsets, experts + 1, false}); err != nil {
		return err
	}
	if experts*out == 0 {
		return nil
	}
	g, t := rowGrid(experts, out)
	return d.Dispatch(&Launch{Kernel: kernel, Groups: g, Threads: t,
		Args: []Arg{Out(0, db), In(1, dy), In(2, offsets), Params(3, moeGroupParams{uint32(rows), uint32(out), uint32(experts), 0})}})
}

// RunZeroAt writes n zeros into b from element off on (and, as every Write
// binding, leaves what follows undefined for the launches after it).
func RunZeroAt(d Compute, b *Buffer, off, n int) error {
	const kernel = "moe_zero_f32"
	if err := checkCount(kernel, n); err != nil {
		return err
	}
	if off < 0 || b == nil || b.Size() < 4*(off+n) {
		return fmt.Errorf("%s: %d elements from %d", kernel, n, off)
	}
	if n == 0 {
		return nil
	}
	return d.Dispatch(&Launch{Kernel: kernel, Groups: [3]int{groupsFor(n, 256), 1, 1}, Threads: [3]int{256, 1, 1},
		Args: []Arg{{Index: 0, Buffer: b, Offset: 4 * off, Access: Write}, Params(1, uint32(n))}})
}

// RunGroupedMatMul writes y_e = x_e·W_eᵀ for each expert e, x_e and y_e the rows
// [offsets[e], offsets[e+1]) of x (rows × in) and y (rows × out), W_e = w[e]
// (experts × out × in): a matmul launch per non-empty group, in group order.
func RunGroupedMatMul(d Compute, y, x, w *Buffer, offsets []int, in, out int) error {
	for e := range len(offsets) - 1 {
		lo, hi := offsets[e], offsets[e+1]
		if hi > lo {
			if err := RunMatMulTAt(d, y, x, w, lo*out, lo*in, e*out*in, hi-lo, out, in, false, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// RunGroupedMatMulBackward writes, from dy (rows × out), dx_e = dy_e·W_e when
// dx is not nil and dW_e = dy_eᵀ·x_e when dw is not nil (zeros for an empty
// group), a launch per group and product, in group order.
func RunGroupedMatMulBackward(d Compute, dx, dw, dy, x, w *Buffer, offsets []int, in, out int) error {
	for e := range len(offsets) - 1 {
		lo, hi := offsets[e], offsets[e+1]
		if dx != nil && hi > lo {
			if err := RunMatMulTAt(d, dx, dy, w, lo*in, lo*out, e*out*in, hi-lo, in, out, false, false); err != nil {
				return err
			}
		}
		if dw == nil {
			continue
		}
		var err error
		if hi > lo {
			err = RunMatMulTAt(d, dw, dy, x, e*out*in, lo*out, lo*in, out, in, hi-lo, true, false)
		} else {
			err = RunZeroAt(d, dw, e*out*in, out*in)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
