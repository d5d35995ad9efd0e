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

type moeMMParams struct{ Rows, N, K, Experts, BRS, BCS, Flags, Pad uint32 }

// gatherMMCheck validates the operands of the grouped products: offsets holds
// experts+1 int32 row offsets (non-decreasing, from 0 to rows; the kernels
// trust them), w is experts × out × in.
func gatherMMCheck(kernel string, x, w, offsets *Buffer, rows, in, out, experts int) error {
	if experts < 1 {
		return fmt.Errorf("%s: %d experts", kernel, experts)
	}
	if err := checkCount(kernel, experts, out, in); err != nil {
		return err
	}
	if err := checkCount(kernel, max(rows, 1), max(in, out)); err != nil {
		return err
	}
	return checkBuffers(kernel, need{"x", x, rows * in, false}, need{"w", w, experts * out * in, false},
		need{"offsets", offsets, experts + 1, false})
}

// RunGatherMM writes y = act(x_e·W_eᵀ + b_e) for the rows of each expert e,
// rows [offsets[e], offsets[e+1]) of x (rows × in) and y (rows × out), W_e =
// w[e] (experts × out × in), b_e = b[e] (experts × out; nil for none): MLX's
// gather_mm over sorted rows, in one launch over every expert with the kernel
// [MatMulFor] picks for d (moe_gather_mm_f32 on 16×16 tiles, or
// moe_gather_mm_sg8_f32 on 32×32 with simdgroup_matrix). With gelu, act is GELU
// (the erf form) and GELU′ goes to deriv unless nil; else act is the identity.
func RunGatherMM(d Compute, y, x, w, offsets, b, deriv *Buffer, rows, in, out, experts int, gelu bool) error {
	return RunGatherMMWith(d, MatMulFor(d.Facts()), y, x, w, offsets, b, deriv, rows, in, out, experts, gelu)
}

// RunGatherMMWith is [RunGatherMM] with a chosen kind of kernel.
func RunGatherMMWith(d Compute, kern MatMulKernel, y, x, w, offsets, b, deriv *Buffer, rows, in, out, experts int, gelu bool) error {
	const kernel = "moe_gather_mm"
	if err := gatherMMCheck(kernel, x, w, offsets, rows, in, out, experts); err != nil {
		return err
	}
	if err := checkBuffers(kernel, need{"y", y, rows * out, false}, need{"b", b, experts * out, true},
		need{"deriv", deriv, rows * out, true}); err != nil {
		return err
	}
	p := moeMMParams{Rows: uint32(rows), N: uint32(out), K: uint32(in), Experts: uint32(experts), BRS: 1, BCS: uint32(in)}
	if b != nil {
		p.Flags |= 1
	}
	if gelu {
		p.Flags |= 2
		if deriv != nil {
			p.Flags |= 4
		}
	}
	return gatherMMLaunch(d, kern, y, x, w, offsets, b, deriv, p)
}

// gatherTile is the side of a gather_mm kernel's tile and its threadgroup.
func gatherTile(d Compute, kern MatMulKernel) (tile int, threads [3]int, suffix string, err error) {
	switch kern {
	case MatMulTiled:
		return 16, [3]int{16, 16, 1}, "", nil
	case MatMulSimdgroup:
		if !d.Facts().SimdgroupMatrix() {
			return 0, threads, "", fmt.Errorf("moe_gather_mm: the device (GPU family %d) has no simdgroup_matrix", d.Facts().Family)
		}
		return 32, [3]int{128, 1, 1}, "_sg8", nil
	}
	return 0, threads, "", fmt.Errorf("unknown matmul kernel %q", kern)
}

func gatherMMLaunch(d Compute, kern MatMulKernel, c, a, w, offsets, b, deriv *Buffer, p moeMMParams) error {
	rows, n, experts := int(p.Rows), int(p.N), int(p.Experts)
	tile, threads, suffix, err := gatherTile(d, kern)
	if err != nil || rows*n == 0 {
		return err
	}
	var keep []*Buffer
	defer func() { releaseBuffers(keep) }()
	if b, err = placeholder(d, b, &keep); err != nil {
		return err
	}
	if deriv, err = placeholder(d, deriv, &keep); err != nil {
		return err
	}
	return d.Dispatch(&Launch{Kernel: "moe_gather_mm" + suffix + "_f32", Groups: [3]int{groupsFor(n, tile), groupsFor(rows, tile) + experts, 1}, Threads: threads,
		Args: []Arg{Out(0, c), In(1, a), In(2, w), In(3, offsets), In(4, b), Out(5, deriv), Params(6, p)}})
}

// RunGatherMMBackward writes, from dy (rows × out), dx_e = dy_e·W_e when dx is
// not nil (one launch over every expert) and dW_e = dy_eᵀ·x_e when dw is not nil
// (zeros for an expert without rows; one launch over experts × tiles of W):
// the gradients of [RunGatherMM] without its epilogue, with the kernels
// [MatMulFor] picks for d.
func RunGatherMMBackward(d Compute, dx, dw, dy, x, w, offsets *Buffer, rows, in, out, experts int) error {
	return RunGatherMMBackwardWith(d, MatMulFor(d.Facts()), dx, dw, dy, x, w, offsets, rows, in, out, experts)
}

// RunGatherMMBackwardWith is [RunGatherMMBackward] with a chosen kind of kernel.
func RunGatherMMBackwardWith(d Compute, kern MatMulKernel, dx, dw, dy, x, w, offsets *Buffer, rows, in, out, experts int) error {
	const kernel = "moe_gather_mm_backward"
	if err := gatherMMCheck(kernel, x, w, offsets, rows, in, out, experts); err != nil {
		return err
	}
	if err := checkBuffers(kernel, need{"dx", dx, rows * in, true}, need{"dw", dw, experts * out * in, true},
		need{"dy", dy, rows * out, false}); err != nil {
		return err
	}
	if dx != nil {
		p := moeMMParams{Rows: uint32(rows), N: uint32(in), K: uint32(out), Experts: uint32(experts), BRS: uint32(in), BCS: 1}
		if err := gatherMMLaunch(d, kern, dx, dy, w, offsets, nil, nil, p); err != nil {
			return err
		}
	}
	tile, threads, suffix, err := gatherTile(d, kern)
	if err != nil || dw == nil || out*in == 0 {
		return err
	}
	p := moeMMParams{Rows: uint32(rows), N: uint32(in), K: uint32(out), Experts: uint32(experts)}
	return d.Dispatch(&Launch{Kernel: "moe_gather_mm_dw" + suffix + "_f32", Groups: [3]int{groupsFor(in, tile), groupsFor(out, tile), experts}, Threads: threads,
		Args: []Arg{Out(0, dw), In(1, dy), In(2, x), In(3, offsets), Params(4, p)}})
}
