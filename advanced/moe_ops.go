package advanced

import (
	"fmt"
	"sort"
	"sync/atomic"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/autodiff/gemm"
	"github.com/mlxtrain/mlxtrain/internal/vecmath"
	"github.com/mlxtrain/mlxtrain/metal"
)

// The dispatch path of a mixture of experts, each step a differentiable op with
// its own backward:
//
//	xs = Dispatch(x, r)                          gather tokens into expert order
//	h  = GroupedLinearGELU(xs, up, upBias, r.Offsets)    one GEMM per expert
//	ys = GroupedLinear(h, down, downBias, r.Offsets)
//	y  = Combine(ys, gates, r)                   weighted scatter back to tokens
//
// Rows of one expert are contiguous, so each expert's product is one GEMM call
// on its block of rows and its own weight matrix (MLX's gather_mm after a sort);
// nothing loops over tokens outside the row-parallel gather and scatter. On the
// CPU, a GELU MLP's two grouped linears run as one op, [GroupedMLP].

// rowsGrain is a ParallelFor grain of about 16k elements for rows of width d.
func rowsGrain(d int) int { return max(1, 16384/max(d, 1)) }

// DispatchForward gathers rows of width d: xs[i] = x[token[i]].
func DispatchForward[T autodiff.Float](xs, x []T, token []int32, d int) {
	metal.ParallelFor(len(token), rowsGrain(d), func(lo, hi int) {
		gatherRows(xs[lo*d:hi*d], x, token[lo:hi], d)
	})
}

// gatherRows is DispatchForward on the calling goroutine: dst's rows are x's
// rows token, of width d, each prefetched a few rows ahead.
func gatherRows[T autodiff.Float](dst, x []T, token []int32, d int) {
	for i, t := range token {
		if i+prefetchAhead < len(token) {
			prefetchPairs(x, token[i+prefetchAhead:i+prefetchAhead+1], d)
		}
		copy(dst[i*d:(i+1)*d], x[int(t)*d:(int(t)+1)*d])
	}
}

// DispatchBackward is the scatter-add of DispatchForward: dx[n] = Σ_j
// dxs[pos[n·k+j]] over the kept pairs (pos ≥ 0). Each token sums its own rows
// in slot order, so the result does not depend on the thread count.
func DispatchBackward[T autodiff.Float](dx, dxs []T, pos []int32, k, d int) {
	metal.ParallelFor(len(pos)/k, rowsGrain(d*k), func(lo, hi int) {
		for n := lo; n < hi; n++ {
			if n+prefetchAhead < hi {
				prefetchPairs(dxs, pos[(n+prefetchAhead)*k:(n+prefetchAhead+1)*k], d)
			}
			out := dx[n*d : (n+1)*d]
			clear(out)
			for _, p := range pos[n*k : (n+1)*k] {
				if p < 0 {
					continue
				}
				addTo(out, dxs[int(p)*d:(int(p)+1)*d])
			}
		}
	})
}

// CombineForward is the weighted scatter back to tokens: y[n] = Σ_j gates[n·k+j]·
// ys[pos[n·k+j]] over the kept pairs.
func CombineForward[T autodiff.Float](y, ys, gates []T, pos []int32, k, d int) {
	CombineResidualForward(y, nil, ys, gates, pos, k, d)
}

// CombineResidualForward is CombineForward added to res (as long as y; nil for
// none): y[n] = res[n] + Σ_j gates[n·k+j]·ys[pos[n·k+j]], the residual
// connection around a mixture of experts in the same pass.
func CombineResidualForward[T autodiff.Float](y, res, ys, gates []T, pos []int32, k, d int) {
	metal.ParallelFor(len(pos)/k, rowsGrain(d*k), func(lo, hi int) {
		for n := lo; n < hi; n++ {
			if n+prefetchAhead < hi {
				prefetchPairs(ys, pos[(n+prefetchAhead)*k:(n+prefetchAhead+1)*k], d)
			}
			out := y[n*d : (n+1)*d]
			if res != nil {
				copy(out, res[n*d:(n+1)*d])
			} else {
				clear(out)
			}
			for j, p := range pos[n*k : (n+1)*k] {
				if p < 0 {
					continue
				}
				addScaled(out, gates[n*k+j], ys[int(p)*d:(int(p)+1)*d])
			}
		}
	})
}

// CombineBackward computes dys[pos[n·k+j]] = gates[n·k+j]·dy[n] and dgates[n·k+j]
// = ⟨dy[n], ys[pos[n·k+j]]⟩ (0 for a dropped pair). Either output may be nil.
func CombineBackward[T autodiff.Float](dys, dgates, dy, ys, gates []T, pos []int32, k, d int) {
	metal.ParallelFor(len(pos)/k, rowsGrain(d*k), func(lo, hi int) {
		for n := lo; n < hi; n++ {
			g := dy[n*d : (n+1)*d]
			if n+prefetchAhead < hi { // the rows of a later token, read out of order
				next := pos[(n+prefetchAhead)*k : (n+prefetchAhead+1)*k]
				prefetchPairs(ys, next, d)
				if dys != nil {
					prefetchPairs(dys, next, d)
				}
			}
			for j, p := range pos[n*k : (n+1)*k] {
				i := n*k + j
				if p < 0 {
					if dgates != nil {
						dgates[i] = 0
					}
					continue
				}
				row := int(p) * d
				if dys != nil {
					scaleTo(dys[row:row+d], gates[i], g)
				}
				if dgates != nil {
					dgates[i] = dot(g, ys[row:row+d])
				}
			}
		}
	})
}

// prefetchAhead is how many tokens ahead the combine and the dispatch's
// backward prefetch the rows of (the experts' rows of a token lie anywhere:
// without it every row starts with a cache miss).
const prefetchAhead = 2

// prefetchPairs prefetches the rows (width d) of rows that the kept pairs
// pos (one token's) point to, float32 only.
func prefetchPairs[T autodiff.Float](rows []T, pos []int32, d int) {
	r32, ok := any(rows).([]float32)
	if !ok {
		return
	}
	for _, p := range pos {
		if p >= 0 {
			vecmath.Prefetch(r32[int(p)*d : (int(p)+1)*d])
		}
	}
}

func addTo[T autodiff.Float](dst, src []T) {
	if d, ok := any(dst).([]float32); ok {
		vecmath.AddTo(d, any(src).([]float32))
		return
	}
	src = src[:len(dst)]
	for i, v := range src {
		dst[i] += v
	}
}

func addScaled[T autodiff.Float](dst []T, a T, x []T) {
	if d, ok := any(dst).([]float32); ok {
		vecmath.AddScaled(d, float32(a), any(x).([]float32))
		return
	}
	x = x[:len(dst)]
	for i, v := range x {
		dst[i] += a * v
	}
}

func scaleTo[T autodiff.Float](dst []T, a T, x []T) {
	if d, ok := any(dst).([]float32); ok {
		vecmath.Scale(d, float32(a), any(x).([]float32))
		return
	}
	x = x[:len(dst)]
	for i, v := range x {
		dst[i] = a * v
	}
}

func dot[T autodiff.Float](a, b []T) T {
	if a, ok := any(a).([]float32); ok {
		return T(vecmath.Dot(a, any(b).([]float32)))
	}
	b = b[:len(a)]
	var s0, s1, s2, s3 T
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// Dispatch gathers the kept (token, slot) pairs of r into expert order: row i
// of the result (r.Rows(), D) is row r.Token[i] of x (..., D), which has
// r.Tokens rows. Its backward sums each token's rows back.
func Dispatch(x *autodiff.Tensor, r *Routing) *autodiff.Tensor {
	if x.Rank() == 0 || !x.DType().IsFloat() || x.Len() != r.Tokens*x.Dim(-1) {
		panic(fmt.Sprintf("advanced: Dispatch: input %s %v for a routing of %d tokens", x.DType(), x.Shape(), r.Tokens))
	}
	d := x.Dim(-1)
	xs := autodiff.Empty(x.DType(), r.Rows(), d)
	tm, path := startTimer(), metal.PathGo
	if dev := moeDevice(moeDispatchOp, r, d, x, xs); dev != nil && moeLaunch(func() error {
		tok, done := r.tokenIndex()
		defer done()
		return metal.RunMoEDispatch(dev, xs.Buffer(), x.Buffer(), tok.Buffer(), r.Tokens, r.Rows(), d)
	}) {
		path = metal.PathMetal
	} else if x.DType() == autodiff.Float32 {
		DispatchForward(xs.Float32s(), x.Float32s(), r.host().Token, d)
	} else {
		DispatchForward(xs.Float64s(), x.Float64s(), r.host().Token, d)
	}
	tm.doneOn("moe_dispatch", path, 2*xs.Len()*x.DType().Size())
	return autodiff.Record(xs, "moe_dispatch", func(g *autodiff.Tensor) {
		autodiff.Accumulate(x, func() *autodiff.Tensor {
			dx := autodiff.Empty(x.DType(), x.Shape()...)
			tm, path := startTimer(), metal.PathGo
			if dev := moeDevice(moeDispatchOp, r, d, dx, g); dev != nil && moeLaunch(func() error {
				pos, done := r.posIndex()
				defer done()
				return metal.RunMoEDispatchBackward(dev, dx.Buffer(), g.Buffer(), pos.Buffer(), r.Tokens, r.K, r.Rows(), d)
			}) {
				path = metal.PathMetal
			} else if x.DType() == autodiff.Float32 {
				DispatchBackward(dx.Float32s(), g.Float32s(), r.host().Pos, r.K, d)
			} else {
				DispatchBackward(dx.Float64s(), g.Float64s(), r.host().Pos, r.K, d)
			}
			tm.doneOn("moe_dispatch_backward", path, 2*dx.Len()*x.DType().Size())
			return dx
		})
	}, x)
}

// Combine weighs the experts' outputs ys (r.Rows(), D) by gates (r.Tokens·r.K
// elements, (..., K) as [RouterGates] returns them) and sums them per token into
// (r.Tokens, D): y[n] = Σ_j gates[n, j]·ys[r.Pos[n·K+j]] over the kept pairs. It
// is differentiable in ys and gates.
func Combine(ys, gates *autodiff.Tensor, r *Routing) *autodiff.Tensor {
	return combine(ys, gates, r, nil)
}

// CombineResidual is Combine added to res (r.Tokens, D), in one pass: res +
// Combine(ys, gates, r), differentiable in res as well.
func CombineResidual(ys, gates *autodiff.Tensor, r *Routing, res *autodiff.Tensor) *autodiff.Tensor {
	if res.Rank() != 2 || res.Dim(0) != r.Tokens || ys.Rank() != 2 || res.Dim(1) != ys.Dim(1) || res.DType() != ys.DType() {
		panic(fmt.Sprintf("advanced: CombineResidual: residual %s %v for outputs %s %v and a routing of %d tokens",
			res.DType(), res.Shape(), ys.DType(), ys.Shape(), r.Tokens))
	}
	return combine(ys, gates, r, res)
}

func combine(ys, gates *autodiff.Tensor, r *Routing, res *autodiff.Tensor) *autodiff.Tensor {
	if ys.Rank() != 2 || ys.Dim(0) != r.Rows() || gates.Len() != r.Tokens*r.K || gates.Dim(-1) != r.K ||
		!ys.DType().IsFloat() || gates.DType() != ys.DType() {
		panic(fmt.Sprintf("advanced: Combine: outputs %s %v, gates %s %v for a routing of %d tokens × %d slots (%d rows kept)",
			ys.DType(), ys.Shape(), gates.DType(), gates.Shape(), r.Tokens, r.K, r.Rows()))
	}
	d := ys.Dim(1)
	if res != nil && moeDevice(moeCombineOp, r, d, res, ys, gates) != nil {
		y := combine(ys, gates, r, nil) // the device kernel has no residual
		defer func() {
			if y.Tape() == nil {
				y.Release()
			}
		}()
		return autodiff.Add(res, y)
	}
	y := autodiff.Empty(ys.DType(), r.Tokens, d)
	tm, path := startTimer(), metal.PathGo
	if dev := moeDevice(moeCombineOp, r, d, y, ys, gates); res == nil && dev != nil && moeLaunch(func() error {
		pos, done := r.posIndex()
		defer done()
		return metal.RunMoECombine(dev, y.Buffer(), ys.Buffer(), gates.Buffer(), pos.Buffer(), r.Tokens, r.K, r.Rows(), d)
	}) {
		path = metal.PathMetal
	} else if ys.DType() == autodiff.Float32 {
		CombineResidualForward(y.Float32s(), floats32(res), ys.Float32s(), gates.Float32s(), r.host().Pos, r.K, d)
	} else {
		CombineResidualForward(y.Float64s(), floats64(res), ys.Float64s(), gates.Float64s(), r.host().Pos, r.K, d)
	}
	name, inputs := "moe_combine", []*autodiff.Tensor{ys, gates}
	if res != nil {
		name, inputs = "moe_combine_residual", append(inputs, res)
	}
	tm.doneOn(name, path, (ys.Len()+y.Len())*ys.DType().Size())
	return autodiff.Record(y, name, func(g *autodiff.Tensor) {
		if res != nil {
			// Last, after every read of g: res's gradient is g itself, which
			// is freed after this VJP, so it may share g's buffer.
			defer autodiff.Accumulate(res, func() *autodiff.Tensor { return autodiff.Reshape(g, res.Shape()...) })
		}
		needYs, needG := autodiff.NeedsGrad(ys), autodiff.NeedsGrad(gates)
		var dys, dg *autodiff.Tensor
		if needYs {
			dys = autodiff.Empty(ys.DType(), ys.Shape()...)
		}
		if needG {
			dg = autodiff.Empty(gates.DType(), gates.Shape()...)
		}
		if !needYs && !needG {
			return
		}
		tm, path := startTimer(), metal.PathGo
		if dev := moeDevice(moeCombineOp, r, d, dys, dg, g, ys, gates); dev != nil && moeLaunch(func() error {
			pos, done := r.posIndex()
			defer done()
			return metal.RunMoECombineBackward(dev, bufOf(dys), bufOf(dg), g.Buffer(), ys.Buffer(), gates.Buffer(), pos.Buffer(), r.Tokens, r.K, r.Rows(), d)
		}) {
			path = metal.PathMetal
		} else if ys.DType() == autodiff.Float32 {
			CombineBackward(floats32(dys), floats32(dg), g.Float32s(), ys.Float32s(), gates.Float32s(), r.host().Pos, r.K, d)
		} else {
			CombineBackward(floats64(dys), floats64(dg), g.Float64s(), ys.Float64s(), gates.Float64s(), r.host().Pos, r.K, d)
		}
		tm.doneOn("moe_combine_backward", path, (ys.Len()+g.Len())*ys.DType().Size())
		if needYs {
			autodiff.Accumulate(ys, func() *autodiff.Tensor { return dys })
		}
		if needG {
			autodiff.Accumulate(gates, func() *autodiff.Tensor { return dg })
		}
	}, inputs...)
}

// moeLaunch runs a device launch of the dispatch or combine: true when it was
// recorded, else (with a warning) the caller runs the CPU path.
func moeLaunch(run func() error) bool { return autodiff.Launched("moe", run()) }

func floats32(t *autodiff.Tensor) []float32 {
	if t == nil {
		return nil
	}
	return t.Float32s()
}

func floats64(t *autodiff.Tensor) []float64 {
	if t == nil {
		return nil
	}
	return t.Float64s()
}

// gemmT is gemm.Sgemm or gemm.Dgemm, as T is.
func gemmT[T autodiff.Float](transA, transB bool, m, n, k int, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	switch a := any(a).(type) {
	case []float32:
		gemm.Sgemm(transA, transB, m, n, k, 1, a, lda, any(b).([]float32), ldb, float32(beta), any(c).([]float32), ldc)
	case []float64:
		gemm.Dgemm(transA, transB, m, n, k, 1, a, lda, any(b).([]float64), ldb, float64(beta), any(c).([]float64), ldc)
	}
}

// GroupedMatMulForward computes y_e = x_e·W_eᵀ for each expert e, where x_e and
// y_e are rows [offsets[e], offsets[e+1]) of x (rows×in) and y (rows×out) and W_e
// is w[e] (E×out×in): one GEMM per non-empty group. In float32 with enough
// experts for the workers (forExperts), the experts' GEMMs run side by side, one
// per worker, rather than one after the other each split across the workers.
func GroupedMatMulForward[T autodiff.Float](y, x, w []T, offsets []int, in, out int) {
	if y32, ok := any(y).([]float32); ok {
		x32, w32 := any(x).([]float32), any(w).([]float32)
		if forExperts(offsets, func(e int) {
			lo, hi := offsets[e], offsets[e+1]
			gemm.SgemmSerial(false, true, hi-lo, out, in, 1, x32[lo*in:hi*in], in, w32[e*out*in:(e+1)*out*in], in, 0, y32[lo*out:hi*out], out)
		}) {
			return
		}
	}
	for e := range len(offsets) - 1 {
		lo, hi := offsets[e], offsets[e+1]
		if hi > lo {
			gemmT(false, true, hi-lo, out, in, x[lo*in:hi*in], in, w[e*out*in:(e+1)*out*in], in, 0, y[lo*out:hi*out], out)
		}
	}
}

// GroupedMatMulBackward computes, from dy (rows×out), dx_e = dy_e·W_e (when dx
// is not nil) and dW_e = dy_eᵀ·x_e (when dw is not nil; zero for an empty group).
// Experts run side by side as in GroupedMatMulForward.
func GroupedMatMulBackward[T autodiff.Float](dx, dw, dy, x, w []T, offsets []int, in, out int) {
	if dy32, ok := any(dy).([]float32); ok {
		dx32, dw32, x32, w32 := any(dx).([]float32), any(dw).([]float32), any(x).([]float32), any(w).([]float32)
		if forExperts(offsets, func(e int) {
			lo, hi := offsets[e], offsets[e+1]
			if dx32 != nil {
				gemm.SgemmSerial(false, false, hi-lo, in, out, 1, dy32[lo*out:hi*out], out, w32[e*out*in:(e+1)*out*in], in, 0, dx32[lo*in:hi*in], in)
			}
			if dw32 != nil {
				gemm.SgemmSerial(true, false, out, in, hi-lo, 1, dy32[lo*out:hi*out], out, x32[lo*in:hi*in], in, 0, dw32[e*out*in:(e+1)*out*in], in)
			}
		}) {
			if dw32 != nil {
				for e := range len(offsets) - 1 {
					if offsets[e+1] == offsets[e] {
						clear(dw32[e*out*in : (e+1)*out*in])
					}
				}
			}
			return
		}
	}
	for e := range len(offsets) - 1 {
		lo, hi := offsets[e], offsets[e+1]
		we := w[e*out*in : (e+1)*out*in]
		if dx != nil && hi > lo {
			gemmT(false, false, hi-lo, in, out, dy[lo*out:hi*out], out, we, in, 0, dx[lo*in:hi*in], in)
		}
		if dw != nil {
			// k = hi−lo may be 0: the GEMM then writes zeros.
			gemmT(true, false, out, in, hi-lo, dy[lo*out:hi*out], out, x[lo*in:hi*in], in, 0, dw[e*out*in:(e+1)*out*in], in)
		}
	}
}

// forExperts runs fn(e) for every expert e with rows, on the workers side by
// side, each taking the largest expert left as it comes free, and reports true;
// or does nothing and reports false when there are fewer than two such experts
// per worker (or one worker): the experts' GEMMs should then each be split
// across the workers. Side by side, each GEMM runs whole on one core (no
// barriers, no sharing of its packed blocks), and the sizes balance out.
func forExperts(offsets []int, fn func(e int)) bool {
	workers := metal.Threads()
	if workers <= 1 {
		return false
	}
	var order []int
	for e := range len(offsets) - 1 {
		if offsets[e+1] > offsets[e] {
			order = append(order, e)
		}
	}
	if len(order) < 2*workers {
		return false
	}
	rows := func(e int) int { return offsets[e+1] - offsets[e] }
	sort.SliceStable(order, func(i, j int) bool { return rows(order[i]) > rows(order[j]) })
	var next atomic.Int64
	metal.ParallelFor(workers, 1, func(lo, hi int) {
		for range hi - lo {
			for q := int(next.Add(1) - 1); q < len(order); q = int(next.Add(1) - 1) {
				fn(order[q])
			}
		}
	})
	return true
}

// groupedForward32 is GroupedMatMulForward followed by groupBiasAct in float32,
// the bias and GELU running as each GEMM's epilogue (gemm.SgemmEpilogue) on
// blocks of rows while they are in cache rather than in a second pass over y;
// experts side by side as in GroupedMatMulForward.
func groupedForward32(y, deriv, x, w, b []float32, offsets []int, in, out int, gelu bool) {
	if !gelu && b == nil {
		GroupedMatMulForward(y, x, w, offsets, in, out)
		return
	}
	expert := func(e int, serial bool) {
		lo, hi := offsets[e], offsets[e+1]
		ye := y[lo*out : hi*out]
		var de, be []float32
		if deriv != nil {
			de = deriv[lo*out : hi*out]
		}
		if b != nil {
			be = b[e*out : (e+1)*out]
		}
		f := gemm.SgemmEpilogue
		if serial {
			f = gemm.SgemmEpilogueSerial
		}
		f(false, true, hi-lo, out, in, 1, x[lo*in:hi*in], in, w[e*out*in:(e+1)*out*in], in, 0, ye, out, func(i0, i1, j0, j1 int) {
			var bj []float32
			if be != nil {
				bj = be[j0:j1]
			}
			for r := i0; r < i1; r++ {
				row := ye[r*out+j0 : r*out+j1]
				switch {
				case !gelu:
					addTo(row, bj)
				case de != nil:
					vecmath.GELU(row, de[r*out+j0:r*out+j1], row, bj)
				default:
					vecmath.GELU(row, nil, row, bj)
				}
			}
		})
	}
	if forExperts(offsets, func(e int) { expert(e, true) }) {
		return
	}
	for e := range len(offsets) - 1 {
		if offsets[e+1] > offsets[e] {
			expert(e, false)
		}
	}
}

// groupBiasAct adds each group's bias row (b may be nil) to y's rows and, with
// gelu, applies GELU in place, keeping its derivative in deriv unless nil.
func groupBiasAct[T autodiff.Float](y, deriv, b []T, offsets []int, out int, gelu bool) {
	rows := offsets[len(offsets)-1]
	metal.ParallelFor(rows, rowsGrain(out), func(lo, hi int) {
		e := groupOf(offsets, lo)
		for i := lo; i < hi; i++ {
			for i >= offsets[e+1] {
				e++
			}
			row := y[i*out : (i+1)*out]
			var bias []T
			if b != nil {
				bias = b[e*out : (e+1)*out]
			}
			if !gelu {
				if bias != nil {
					addTo(row, bias)
				}
				continue
			}
			var d []T
			if deriv != nil {
				d = deriv[i*out : (i+1)*out]
			}
			geluBiasRow(row, d, bias)
		}
	})
}

// groupOf is the group holding row i (the last of equal offsets).
func groupOf(offsets []int, i int) int {
	return sort.Search(len(offsets)-1, func(e int) bool { return offsets[e+1] > i })
}

// groupGradBias sets dy = g·deriv (when deriv is not nil; dy is g otherwise) and
// adds each group's column sums of dy to db (when db is not nil).
func groupGradBias[T autodiff.Float](dy, g, deriv, db []T, offsets []int, out int) {
	E := len(offsets) - 1
	if db == nil {
		if deriv != nil {
			rows := offsets[E]
			metal.ParallelFor(rows, rowsGrain(out), func(lo, hi int) {
				mulTo(dy[lo*out:hi*out], g[lo*out:hi*out], deriv[lo*out:hi*out])
			})
		}
		return
	}
	// One pass per group: each row's product goes to dy and into the group's sum.
	metal.ParallelFor(E, 1, func(elo, ehi int) {
		for e := elo; e < ehi; e++ {
			sum := db[e*out : (e+1)*out]
			for i := offsets[e]; i < offsets[e+1]; i++ {
				if deriv != nil {
					mulSum(dy[i*out:(i+1)*out], sum, g[i*out:(i+1)*out], deriv[i*out:(i+1)*out])
				} else {
					addTo(sum, dy[i*out:(i+1)*out])
				}
			}
		}
	})
}

// mulSum sets dst = a·b elementwise and adds dst to sum.
func mulSum[T autodiff.Float](dst, sum, a, b []T) {
	if d, ok := any(dst).([]float32); ok {
		vecmath.MulSum(d, any(sum).([]float32), any(a).([]float32), any(b).([]float32))
		return
	}
	sum, a, b = sum[:len(dst)], a[:len(dst)], b[:len(dst)]
	for i := range dst {
		dst[i] = a[i] * b[i]
		sum[i] += dst[i]
	}
}

func mulTo[T autodiff.Float](dst, a, b []T) {
	a, b = a[:len(dst)], b[:len(dst)]
	for i := range dst {
		dst[i] = a[i] * b[i]
	}
}

// GroupedLinear is x·W_eᵀ + b_e on each expert's rows: x (rows, in) in expert
// order, w (E, out, in), b (E, out) or nil, offsets (E+1) the groups' row ranges
// (a [Routing]'s Offsets). One GEMM per expert forward, two backward on the
// CPU; one launch over every expert per product on a device.
func GroupedLinear(x, w, b *autodiff.Tensor, offsets []int) *autodiff.Tensor {
	return groupedLinear("moe_grouped_linear", x, w, b, offsets, nil, false)
}

// GroupedLinearGELU is GELU(GroupedLinear(x, w, b, offsets)) (the exact erf
// form) with the bias and activation applied in one pass after each GEMM, and
// the activation's derivative kept for backward instead of its input.
func GroupedLinearGELU(x, w, b *autodiff.Tensor, offsets []int) *autodiff.Tensor {
	return groupedLinear("moe_grouped_linear_gelu", x, w, b, offsets, nil, true)
}

// groupOffsets is the offsets on the device: the routing's when it has them
// (r may be nil), else an upload that done releases. offsets may be nil only
// with a routing.
func groupOffsets(r *Routing, offsets []int) (*autodiff.Tensor, func()) {
	if r != nil {
		return r.offsetIndex()
	}
	t := offsets32(offsets)
	return t, t.Release
}

// groupedLinear is GroupedLinear(GELU); r, when not nil, is the routing whose
// offsets these are (its device copy serves the kernels).
func groupedLinear(op string, x, w, b *autodiff.Tensor, offsets []int, r *Routing, gelu bool) *autodiff.Tensor {
	shape := offsets
	if shape == nil && r.Experts == w.Dim(0) { // a device routing's, not read back: check its row count
		shape = make([]int, r.Experts+1)
		shape[r.Experts] = r.Rows()
	}
	checkGrouped(op, x, w, b, shape)
	// hostOffsets is offsets for a CPU path (a device routing's read back).
	hostOffsets := func() []int {
		if offsets == nil {
			offsets = r.host().Offsets
		}
		return offsets
	}
	E, out, in := w.Dim(0), w.Dim(1), w.Dim(2)
	rows := x.Dim(0)
	y := autodiff.Empty(x.DType(), rows, out)
	tracked := x.Tape() != nil || w.Tape() != nil || b != nil && b.Tape() != nil
	var deriv *autodiff.Tensor
	if gelu && tracked {
		deriv = autodiff.Empty(x.DType(), rows, out)
	}
	tm, path := startTimer(), metal.PathGo
	dev := autodiff.DeviceFor(groupedOp, []*autodiff.Tensor{x, w, b, y, deriv}, rows, out)
	if dev != nil && autodiff.Launched(op, func() error {
		off, done := groupOffsets(r, offsets)
		defer done()
		return groupedForwardDevice(dev, y, deriv, x, w, b, off, gelu)
	}()) {
		path = metal.PathMetal
	} else if x.DType() == autodiff.Float32 {
		groupedForward32(y.Float32s(), floats32(deriv), x.Float32s(), w.Float32s(), floats32(b), hostOffsets(), in, out, gelu)
	} else {
		GroupedMatMulForward(y.Float64s(), x.Float64s(), w.Float64s(), hostOffsets(), in, out)
		if gelu || b != nil {
			groupBiasAct(y.Float64s(), floats64(deriv), floats64(b), hostOffsets(), out, gelu)
		}
	}
	tm.doneOn(op, path, (x.Len()+w.Len()+y.Len())*x.DType().Size())
	inputs := []*autodiff.Tensor{x, w}
	if b != nil {
		inputs = append(inputs, b)
	}
	res := autodiff.Record(y, op, func(g *autodiff.Tensor) {
		needX, needW, needB := autodiff.NeedsGrad(x), autodiff.NeedsGrad(w), b != nil && autodiff.NeedsGrad(b)
		if !needX && !needW && !needB {
			return
		}
		dy := g
		if gelu { // dy = g·GELU′, in a scratch tensor: g belongs to the tape
			dy = autodiff.Empty(g.DType(), g.Shape()...)
			defer dy.Release()
		}
		var dx, dw, db *autodiff.Tensor
		if needX {
			dx = autodiff.Empty(x.DType(), x.Shape()...)
		}
		if needW {
			dw = autodiff.Empty(w.DType(), E, out, in)
		}
		if needB {
			db = autodiff.Zeros(b.DType(), E, out)
		}
		tm, path := startTimer(), metal.PathGo
		dev := autodiff.DeviceFor(groupedOp, []*autodiff.Tensor{dx, dw, db, dy, g, deriv, x, w}, rows, out)
		if dev != nil && autodiff.Launched(op, func() error {
			off, done := groupOffsets(r, offsets)
			defer done()
			return groupedBackwardDevice(dev, dx, dw, db, dy, g, deriv, x, w, off, gelu)
		}()) {
			path = metal.PathMetal
		} else if x.DType() == autodiff.Float32 {
			groupedBackward(dx, dw, db, dy.Float32s(), g.Float32s(), floats32(deriv), x.Float32s(), w.Float32s(), hostOffsets(), in, out)
		} else {
			groupedBackward(dx, dw, db, dy.Float64s(), g.Float64s(), floats64(deriv), x.Float64s(), w.Float64s(), hostOffsets(), in, out)
		}
		tm.doneOn(op+"_backward", path, (2*x.Len()+2*w.Len()+2*g.Len())*x.DType().Size())
		if needX {
			autodiff.Accumulate(x, func() *autodiff.Tensor { return dx })
		}
		if needW {
			autodiff.Accumulate(w, func() *autodiff.Tensor { return dw })
		}
		if needB {
			autodiff.Accumulate(b, func() *autodiff.Tensor { return db })
		}
	}, inputs...)
	if deriv != nil {
		if tp := res.Tape(); tp != nil {
			tp.Own(deriv) // released with the tape, whether backward runs or not
		} else {
			deriv.Release()
		}
	}
	return res
}

func groupedBackward[T autodiff.Float](dx, dw, db *autodiff.Tensor, dy, g, deriv, x, w []T, offsets []int, in, out int) {
	groupGradBias(dy, g, deriv, slice[T](db), offsets, out)
	GroupedMatMulBackward(slice[T](dx), slice[T](dw), dy, x, w, offsets, in, out)
}

// slice is t's elements as []T, nil for a nil t.
func slice[T autodiff.Float](t *autodiff.Tensor) []T {
	if t == nil {
		return nil
	}
	var z T
	if _, ok := any(z).(float32); ok {
		return any(t.Float32s()).([]T)
	}
	return any(t.Float64s()).([]T)
}

func checkGrouped(op string, x, w, b *autodiff.Tensor, offsets []int) {
	ok := x.Rank() == 2 && w.Rank() == 3 && x.DType().IsFloat() && w.DType() == x.DType() && x.Dim(1) == w.Dim(2) &&
		len(offsets) == w.Dim(0)+1 && offsets[0] == 0 && offsets[len(offsets)-1] == x.Dim(0) &&
		(b == nil || b.Rank() == 2 && b.Dim(0) == w.Dim(0) && b.Dim(1) == w.Dim(1) && b.DType() == x.DType())
	for e := 1; ok && e < len(offsets); e++ {
		ok = offsets[e] >= offsets[e-1]
	}
	if !ok {
		bs := "none"
		if b != nil {
			bs = fmt.Sprint(b.Shape())
		}
		panic(fmt.Sprintf("advanced: %s: input %s %v, weight %s %v, bias %s, offsets %v", op, x.DType(), x.Shape(), w.DType(), w.Shape(), bs, offsets))
	}
}
