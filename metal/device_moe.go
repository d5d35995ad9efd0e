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
