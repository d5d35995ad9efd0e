package metal

import "fmt"

type normParams struct {
	Rows, Cols   uint32
	Eps          float32
	RowsPerChunk uint32
}

// normConstants are the function constants of norm.metal.
func normConstants(layer, weight, bias bool) []Constant {
	return []Constant{{Index: 0, Value: layer}, {Index: 1, Value: weight}, {Index: 2, Value: bias}}
}

func checkNorm(kernel string, rows, cols int, eps float32) error {
	if err := checkCount(kernel, rows, cols); err != nil {
		return err
	}
	if cols == 0 && rows > 0 {
		return fmt.Errorf("%s: rows of zero length have no norm", kernel)
	}
	if !(eps >= 0) {
		return fmt.Errorf("%s: eps %g", kernel, eps)
	}
	return nil
}

// orDummy returns b, or x to bind in its place when b is nil (the kernel does not
// read it then: its function constant says so).
func orDummy(b, x *Buffer) *Buffer {
	if b == nil {
		return x
	}
	return b
}

// RunRMSNorm normalises each row of x (rows × cols): rstd[r] = 1/√(mean(x²) + eps)
// and out = x·rstd·w, w a row of cols weights or nil for none. One launch
// (rmsnorm_fwd_f32); rstd is what [RunRMSNormBackward] needs.
func RunRMSNorm(d Compute, out, rstd, x, w *Buffer, rows, cols int, eps float32) error {
	const kernel = "rmsnorm_fwd_f32"
	if err := checkNorm(kernel, rows, cols, eps); err != nil {
		return err
	}
	n := rows * cols
	if err := checkBuffers(kernel, need{"out", out, n, false}, need{"rstd", rstd, rows, false},
		need{"x", x, n, false}, need{"w", w, cols, true}); err != nil {
		return err
	}
	if rows == 0 {
		return nil
	}
	return d.Dispatch(&Launch{
		Kernel:    kernel,
		Constants: normConstants(false, w != nil, false),
		Groups:    [3]int{rows, 1, 1},
		Threads:   [3]int{rowThreads(cols), 1, 1},
		Args: []Arg{Out(0, out), Out(1, rstd), In(2, x), In(3, orDummy(w, x)),
			Params(4, normParams{uint32(rows), uint32(cols), eps, 0})},
	})
}

// RunLayerNorm normalises each row of x (rows × cols): mean[r] = mean(x),
// rstd[r] = 1/√(var(x) + eps) (the biased variance) and out = (x − mean)·rstd·w + b,
// w and b rows of cols values or nil for none. One launch (layernorm_fwd_f32).
func RunLayerNorm(d Compute, out, mean, rstd, x, w, b *Buffer, rows, cols int, eps float32) error {
	const kernel = "layernorm_fwd_f32"
	if err := checkNorm(kernel, rows, cols, eps); err != nil {
		return err
	}
	n := rows * cols
	if err := checkBuffers(kernel, need{"out", out, n, false}, need{"mean", mean, rows, false}, need{"rstd", rstd, rows, false},
		need{"x", x, n, false}, need{"w", w, cols, true}, need{"b", b, cols, true}); err != nil {
		return err
	}
	if rows == 0 {
		return nil
	}
	return d.Dispatch(&Launch{
		Kernel:    kernel,
		Constants: normConstants(true, w != nil, b != nil),
		Groups:    [3]int{rows, 1, 1},
		Threads:   [3]int{rowThreads(cols), 1, 1},
		Args: []Arg{Out(0, out), Out(1, mean), Out(2, rstd), In(3, x), In(4, orDummy(w, x)), In(5, orDummy(b, x)),
			Params(6, normParams{uint32(rows), uint32(cols), eps, 0})},
	})
}

// RunRMSNormBackward writes the gradients of [RunRMSNorm] for the upstream
// gradient g: dx (rows × cols) and dw (cols), each skipped when nil; w is the
// forward's weight (nil for none) and rstd what the forward saved. dx takes one
// launch (norm_bwd_f32), dw one or two (norm_wgrad_f32 over chunks of rows,
// then reduce_cols_f32 when there is more than one chunk).
func RunRMSNormBackward(d Compute, dx, dw, g, x, w, rstd *Buffer, rows, cols int) error {
	return normBackward(d, false, dx, dw, nil, g, x, w, nil, rstd, rows, cols)
}

// RunLayerNormBackward writes the gradients of [RunLayerNorm]: dx, dw and db,
// each skipped when nil. db is the column sum of g ([RunReduceCols]); the others
// launch as in [RunRMSNormBackward].
func RunLayerNormBackward(d Compute, dx, dw, db, g, x, w, mean, rstd *Buffer, rows, cols int) error {
	return normBackward(d, true, dx, dw, db, g, x, w, mean, rstd, rows, cols)
}

func normBackward(d Compute, layer bool, dx, dw, db, g, x, w, mean, rstd *Buffer, rows, cols int) error {
	const kernel = "norm_bwd_f32"
	if err := checkNorm(kernel, rows, cols, 0); err != nil {
		return err
	}
	n := rows * cols
	needs := []need{{"dx", dx, n, true}, {"dw", dw, cols, true}, {"db", db, cols, true},
		{"g", g, n, false}, {"x", x, n, false}, {"w", w, cols, true}, {"rstd", rstd, rows, false}}
	if layer {
		needs = append(needs, need{"mean", mean, rows, false})
	}
	if err := checkBuffers(kernel, needs...); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	consts := normConstants(layer, w != nil, false)
	if dx != nil {
		err := d.Dispatch(&Launch{
			Kernel:    kernel,
			Constants: consts,
			Groups:    [3]int{rows, 1, 1},
			Threads:   [3]int{rowThreads(cols), 1, 1},
			Args: []Arg{Out(0, dx), In(1, g), In(2, x), In(3, orDummy(w, x)), In(4, orDummy(mean, rstd)), In(5, rstd),
				Params(6, normParams{uint32(rows), uint32(cols), 0, 0})},
		})
		if err != nil {
			return err
		}
	}
	if dw != nil {
		if err := normWeightGrad(d, consts, dw, g, x, orDummy(mean, rstd), rstd, rows, cols); err != nil {
			return err
		}
	}
	if db != nil {
		return reduceCols(d, 0, 1, db, g, rows, cols)
	}
	return nil
}

// normWeightGrad writes dw = Σ_rows g·x̂: norm_wgrad_f32 reduces chunks of rows
// side by side (into dw directly when there is one chunk), reduce_cols_f32 sums
// the chunks.
func normWeightGrad(d Compute, consts []Constant, dw, g, x, mean, rstd *Buffer, rows, cols int) error {
	const kernel = "norm_wgrad_f32"
	chunk := colChunk(rows)
	chunks := groupsFor(rows, chunk)
	dst := dw
	if chunks > 1 {
		part, err := d.NewBuffer(4 * chunks * cols)
		if err != nil {
			return fmt.Errorf("%s: scratch: %w", kernel, err)
		}
		defer part.Release()
		dst = part
	} else {
		chunk = rows
	}
	err := d.Dispatch(&Launch{
		Kernel:    kernel,
		Constants: consts,
		Groups:    [3]int{groupsFor(cols, 32), chunks, 1},
		Threads:   [3]int{32, 8, 1},
		Args: []Arg{Out(0, dst), In(1, g), In(2, x), In(3, mean), In(4, rstd),
			Params(5, normParams{uint32(rows), uint32(cols), 0, uint32(chunk)})},
	})
	if err != nil || chunks == 1 {
		return err
	}
	return reduceColsPass(d, 0, 1, dw, dst, chunks, chunks, cols)
}
