package advanced

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/internal/vecmath"
	"github.com/mlxtrain/mlxtrain/metal"
)

// The selective scan of Mamba (S6). Each of the Inner channels d of each batch row
// b carries a State-sized hidden state h, driven by its input x and step size Δ:
//
//	h_t = exp(Δ_t·A_d) ∘ h_{t−1} + Δ_t·x_t·B_t      (elementwise over the state)
//	y_t = ⟨C_t, h_t⟩ + D_d·x_t
//
// with A_d the (negative) diagonal state matrix of channel d and B_t, C_t shared by
// the channels of a row. It is a linear recurrence in h, so the forward runs as the
// chunked linear-recurrence scan of [LinearScan]: the time axis may be cut into
// segments that are reduced to their composed maps, scanned, then run from their
// true starting states (used when batch × channel blocks are too few to feed the
// workers), and batch × channel blocks are independent work.
//
// Memory. Storing every h_t for the backward would take Batch·Len·Inner·State
// values, State times the input. Instead the forward keeps the state at the start
// of every chunk of `chunk` steps (Batch·⌈Len/chunk⌉·Inner·State values, State/chunk
// times the input: a quarter of x at the default chunk of 64 and State 16), and the
// backward walks the chunks from the last, recomputing each chunk's states from its
// checkpoint, then running the adjoint recurrence
//
//	λ_t = ∂L/∂h_t = g_t·C_t + exp(Δ_{t+1}·A)∘λ_{t+1}
//
// back through it, carrying exp(Δ_t·A)∘λ_t into the previous chunk. Its working
// memory is a chunk per worker and per-chunk partial sums, whatever Len is.

// SSMDims are the sizes of a selective scan.
type SSMDims struct {
	Batch, Len int // B and L
	Inner      int // D: channels, each with its own recurrence
	State      int // N: the state size of each channel
}

func (d SSMDims) String() string {
	return fmt.Sprintf("(B=%d, L=%d, D=%d, N=%d)", d.Batch, d.Len, d.Inner, d.State)
}

// SSMInputs are the operands of a selective scan.
type SSMInputs[T autodiff.Float] struct {
	X, Dt []T // (Batch, Len, Inner): the input and the step size Δ (after softplus)
	A     []T // (Inner, State): the diagonal state matrices (negative: A = −exp(A_log))
	B, C  []T // (Batch, Len, State): how x enters the state and how y reads it
	D     []T // (Inner): the skip connection, or nil for none
	H0    []T // (Batch, Inner, State): the state before step 0, or nil for zeros
}

// SSMGrads receives the gradients of a selective scan, in the shapes of the
// matching [SSMInputs]; D is needed only when the inputs have a skip.
type SSMGrads[T autodiff.Float] struct {
	X, Dt, A, B, C, D []T
}

// ssmBlock is the number of channels a unit of work carries: their states (a few
// KB) stay in L1 while the unit walks the time axis.
const ssmBlock = 16

// SSMChunk is the default checkpoint interval for sequences of length L: 64
// steps, or about √L for very long sequences, so the checkpoints stay a small
// fraction of the input.
func SSMChunk(length int) int {
	c := 64
	for c*c < length {
		c += 16
	}
	return c
}

// SSMCheckpointLen is the number of values the forward keeps for the backward
// (the states at the chunk starts).
func SSMCheckpointLen(d SSMDims, chunk int) int {
	return d.Batch * ceilDiv(d.Len, chunk) * d.Inner * d.State
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func (d SSMDims) check(op string, chunk int, ny, nckpt, nlast int, in *ssmLens) {
	bld, bln, dn := d.Batch*d.Len*d.Inner, d.Batch*d.Len*d.State, d.Inner*d.State
	ok := d.Batch >= 0 && d.Len >= 0 && d.Inner >= 0 && d.State >= 0 && chunk >= 1 &&
		ny == bld && in.x == bld && in.dt == bld && in.a == dn && in.b == bln && in.c == bln &&
		(in.d < 0 || in.d == d.Inner) && (in.h0 < 0 || in.h0 == d.Batch*dn) &&
		(nckpt < 0 || nckpt == SSMCheckpointLen(d, chunk)) && (nlast < 0 || nlast == d.Batch*dn)
	if !ok {
		panic(fmt.Sprintf("advanced: %s: dims %v, chunk %d with y/g %d, x %d, dt %d, A %d, B %d, C %d, D %d, h0 %d, checkpoints %d, final state %d elements",
			op, d, chunk, ny, in.x, in.dt, in.a, in.b, in.c, in.d, in.h0, nckpt, nlast))
	}
}

// ssmLens are the lengths of the operands (−1 for an absent optional one).
type ssmLens struct{ x, dt, a, b, c, d, h0 int }

func lensOf[T autodiff.Float](in SSMInputs[T]) *ssmLens {
	l := &ssmLens{len(in.X), len(in.Dt), len(in.A), len(in.B), len(in.C), -1, -1}
	if in.D != nil {
		l.d = len(in.D)
	}
	if in.H0 != nil {
		l.h0 = len(in.H0)
	}
	return l
}

func optLen[T any](s []T) int {
	if s == nil {
		return -1
	}
	return len(s)
}

// ssmPath is the implementation the kernels' inner loops take.
type ssmPath uint8

const (
	ssmGo  ssmPath = iota // the Go loops, any dtype and state size
	ssmAVX                // AVX2 + FMA assembly: float32, state a multiple of 8
)

// ssmOp lists the selective scan's paths for `mlxtrain devices` and profiles.
// MLXTRAIN_SELECTIVE_SCAN_MIN_STATE_ASM raises the smallest state size given to
// the assembly.
var ssmOp = metal.Kernels.Register("selective_scan", []string{"state"},
	&metal.Impl{Path: metal.PathAsm, Min: []int{8}, Available: func() bool { return vecmath.AVX2FMA }, Fn: ssmFwdAVX},
	&metal.Impl{Path: metal.PathGo, Fn: ssmFwdBlock[float32]},
)

// ssmPathFor picks the path for state size n.
func ssmPathFor[T autodiff.Float](n int) ssmPath {
	if isFloat32[T]() && n%8 == 0 && ssmOp.Pick(n).Path == metal.PathAsm {
		return ssmAVX
	}
	return ssmGo
}

// SelectiveScanForward writes y (Batch, Len, Inner). When ckpt is not nil it
// receives the states at the start of every chunk of `chunk` steps, laid out
// (Batch, ⌈Len/chunk⌉, Inner, State), for [SelectiveScanBackward]; when hLast is
// not nil it receives the state after the last step (Batch, Inner, State).
//
// Work is split over batch rows × blocks of 16 channels; when those are fewer
// than the workers, the time axis is split into segments too (see [LinearScan]),
// which changes the rounding of the result slightly, not its value.
func SelectiveScanForward[T autodiff.Float](y, ckpt, hLast []T, in SSMInputs[T], d SSMDims, chunk int) {
	d.check("SelectiveScanForward", chunk, len(y), optLen(ckpt), optLen(hLast), lensOf(in))
	units := d.Batch * ceilDiv(d.Inner, ssmBlock)
	segs := 1
	if th, nc := metal.Threads(), ceilDiv(d.Len, chunk); th > 1 && units > 0 && units < th && nc > 1 {
		segs = min(nc, 1+ceilDiv(th, units))
	}
	ssmForward(y, ckpt, hLast, in, d, chunk, segs, ssmPathFor[T](d.State))
}

// ssmUnit returns the batch row and channel range of work unit u.
func ssmUnit(d SSMDims, u int) (b, d0, d1 int) {
	nblk := ceilDiv(d.Inner, ssmBlock)
	b, d0 = u/nblk, (u%nblk)*ssmBlock
	return b, d0, min(d.Inner, d0+ssmBlock)
}

// ssmInitState loads the state of channels [d0, d1) of row b before step 0.
func ssmInitState[T autodiff.Float](h, h0 []T, d SSMDims, b, d0, d1 int) {
	if h0 == nil {
		clear(h)
	} else {
		copy(h, h0[(b*d.Inner+d0)*d.State:(b*d.Inner+d1)*d.State])
	}
}

// ssmForward is the forward over `segs` time segments (whole chunks each).
func ssmForward[T autodiff.Float](y, ckpt, hLast []T, in SSMInputs[T], d SSMDims, chunk, segs int, path ssmPath) {
	N := d.State
	units := d.Batch * ceilDiv(d.Inner, ssmBlock)
	nc := ceilDiv(d.Len, chunk)
	if segs <= 1 || nc <= 1 {
		metal.ParallelFor(units, 1, func(lo, hi int) {
			h, e := make([]T, ssmBlock*N), make([]T, N)
			for u := lo; u < hi; u++ {
				b, d0, d1 := ssmUnit(d, u)
				hs := h[:(d1-d0)*N]
				ssmInitState(hs, in.H0, d, b, d0, d1)
				ssmRun(y, ckpt, in, d, chunk, b, d0, d1, 0, d.Len, hs, e, path)
				if hLast != nil {
					copy(hLast[(b*d.Inner+d0)*N:], hs)
				}
			}
		})
		return
	}
	segs = min(segs, nc)
	bound := func(s int) int { return min(d.Len, s*nc/segs*chunk) }
	// Segment s of unit u composes to h ↦ prod∘h + end; the rows (one per segment)
	// hold every unit's block of ssmBlock·N values. Segment 0 starts from the known
	// initial state, so it is run outright and its end is already a true state.
	width := units * ssmBlock * N
	prod := make([]T, (segs-1)*width)
	end := make([]T, (segs-1)*width)
	items := units * (segs - 1)
	metal.ParallelFor(items, 1, func(lo, hi int) {
		e := make([]T, ssmBlock*N)
		for i := lo; i < hi; i++ {
			u, s := i/(segs-1), i%(segs-1)
			b, d0, d1 := ssmUnit(d, u)
			off := s*width + u*ssmBlock*N
			st := end[off : off+(d1-d0)*N]
			if s == 0 {
				ssmInitState(st, in.H0, d, b, d0, d1)
				ssmRun(y, ckpt, in, d, chunk, b, d0, d1, 0, bound(1), st, e[:N], path)
				continue
			}
			ssmSegmentMap(prod[off:off+(d1-d0)*N], st, e[:(d1-d0)*N], in, d, b, d0, d1, bound(s), bound(s+1), path)
		}
	})
	// The scan of the segment maps: end[s] becomes the state after segment s.
	LinearScan(end, prod, end, nil, segs-1, width)
	metal.ParallelFor(items, 1, func(lo, hi int) {
		h, e := make([]T, ssmBlock*N), make([]T, N)
		for i := lo; i < hi; i++ {
			u, s := i/(segs-1), 1+i%(segs-1)
			b, d0, d1 := ssmUnit(d, u)
			hs := h[:(d1-d0)*N]
			off := (s-1)*width + u*ssmBlock*N
			copy(hs, end[off:off+len(hs)])
			ssmRun(y, ckpt, in, d, chunk, b, d0, d1, bound(s), bound(s+1), hs, e, path)
			if s == segs-1 && hLast != nil {
				copy(hLast[(b*d.Inner+d0)*N:], hs)
			}
		}
	})
}

// ssmRun advances the states h of channels [d0, d1) of row b over steps [t0, t1),
// writing y and, at chunk starts, the checkpoints; e is room for a row of N.
func ssmRun[T autodiff.Float](y, ckpt []T, in SSMInputs[T], d SSMDims, chunk, b, d0, d1, t0, t1 int, h, e []T, path ssmPath) {
	N, D := d.State, d.Inner
	nc := ceilDiv(d.Len, chunk)
	for t := t0; t < t1; t++ {
		if ckpt != nil && t%chunk == 0 {
			copy(ckpt[((b*nc+t/chunk)*D+d0)*N:], h)
		}
		row := (b*d.Len + t) * D
		bt, ct := in.B[(b*d.Len+t)*N:][:N], in.C[(b*d.Len+t)*N:][:N]
		x, yr := in.X[row+d0:row+d1], y[row+d0:row+d1]
		ssmFwdBlock(h, in.A[d0*N:d1*N], bt, ct, in.Dt[row+d0:row+d1], x, yr, e, N, path)
		if in.D != nil {
			axpy(yr, in.D[d0:d1], x)
		}
	}
}

// ssmSegmentMap computes the map h ↦ prod∘h + end that steps [t0, t1) apply to
// the states of channels [d0, d1) of row b; e is room for their states.
func ssmSegmentMap[T autodiff.Float](prod, end, e []T, in SSMInputs[T], d SSMDims, b, d0, d1, t0, t1 int, path ssmPath) {
	N, D := d.State, d.Inner
	clear(end)
	for t := t0; t < t1; t++ {
		row := (b*d.Len + t) * D
		ssmRecBlock(end, end, e, in.A[d0*N:d1*N], in.B[(b*d.Len+t)*N:][:N], in.Dt[row+d0:row+d1], in.X[row+d0:row+d1], N, path)
	}
	// The product of the exp(Δ_t·A) is exp(A·ΣΔ_t).
	for j := range d1 - d0 {
		dc := d0 + j
		var sum T
		for t := t0; t < t1; t++ {
			sum += in.Dt[(b*d.Len+t)*D+dc]
		}
		expRow(prod[j*N:(j+1)*N], in.A[dc*N:(dc+1)*N], sum)
	}
}

// ssmFwdBlock advances the states h (rows × n) of a block of channels by a step:
// for each channel j, h[j] ← exp(dt[j]·a[j])∘h[j] + dt[j]·x[j]·bt and y[j] =
// ⟨ct, h[j]⟩. e is room for a row of n (the Go path's exponentials).
func ssmFwdBlock[T autodiff.Float](h, a, bt, ct, dt, x, y, e []T, n int, path ssmPath) {
	rows := len(dt)
	if rows == 0 || n == 0 {
		clear(y)
		return
	}
	h, a, bt, ct, x, y, e = h[:rows*n], a[:rows*n], bt[:n], ct[:n], x[:rows], y[:rows], e[:n]
	if path == ssmAVX {
		ssmFwdAVX(f32p(h), f32p(a), f32p(bt), f32p(ct), f32p(dt), f32p(x), f32p(y), rows, n)
		return
	}
	for j := range rows {
		hj := h[j*n : (j+1)*n]
		dl := dt[j]
		dlx := dl * x[j]
		expRow(e, a[j*n:(j+1)*n], dl)
		var acc T
		for k := range hj {
			v := e[k]*hj[k] + dlx*bt[k]
			hj[k] = v
			acc += ct[k] * v
		}
		y[j] = acc
	}
}

// ssmRecBlock is ssmFwdBlock for the backward's recomputation: e[j] ←
// exp(dt[j]·a[j]) and cur[j] ← e[j]∘prev[j] + dt[j]·x[j]·bt (cur may be prev).
func ssmRecBlock[T autodiff.Float](prev, cur, e, a, bt, dt, x []T, n int, path ssmPath) {
	rows := len(dt)
	if rows == 0 || n == 0 {
		return
	}
	prev, cur, e, a, bt, x = prev[:rows*n], cur[:rows*n], e[:rows*n], a[:rows*n], bt[:n], x[:rows]
	if path == ssmAVX {
		ssmRecAVX(f32p(prev), f32p(cur), f32p(e), f32p(a), f32p(bt), f32p(dt), f32p(x), rows, n)
		return
	}
	for j := range rows {
		dl := dt[j]
		dlx := dl * x[j]
		ej, pj, cj := e[j*n:(j+1)*n], prev[j*n:(j+1)*n], cur[j*n:(j+1)*n]
		expRow(ej, a[j*n:(j+1)*n], dl)
		for k := range ej {
			cj[k] = ej[k]*pj[k] + dlx*bt[k]
		}
	}
}

// ssmBackBlock is the adjoint step of a block of channels at one time step. Per
// channel j, with λ = mu[j] + g[j]·ct (mu[j] carrying exp(Δ_{t+1}·A)∘λ_{t+1}) and
// s = λ∘e[j]∘h_{t−1}, it adds the channel's share to ∂L/∂C_t (pc += g·h_t),
// ∂L/∂B_t (pb += Δ·x·λ) and ∂L/∂A (dA[j] += Δ·s), moves mu[j] back a step (e∘λ),
// and writes ∂L/∂Δ_t = ⟨s, A⟩ + x·⟨λ, B_t⟩ and ∂L/∂x_t = Δ·⟨λ, B_t⟩ + g·dskip to
// ddt[j] and dx[j], adding g·x to dD[j]. prev and cur hold h_{t−1} and h_t (the
// assembly recomputes h_t from prev).
func ssmBackBlock[T autodiff.Float](mu, prev, cur, e, a, dA, bt, ct, pb, pc, g, dt, x, dskip, ddt, dx, dD []T, n int, path ssmPath) {
	rows := len(g)
	if rows == 0 {
		return
	}
	m := rows * n
	mu, prev, cur, e, a, dA, bt, ct, pb, pc = mu[:m], prev[:m], cur[:m], e[:m], a[:m], dA[:m], bt[:n], ct[:n], pb[:n], pc[:n]
	dt, x, dskip, ddt, dx, dD = dt[:rows], x[:rows], dskip[:rows], ddt[:rows], dx[:rows], dD[:rows]
	if path == ssmAVX && n > 0 {
		ssmBackAVX(f32p(mu), f32p(prev), f32p(e), f32p(a), f32p(dA), f32p(bt), f32p(ct), f32p(pb), f32p(pc),
			f32p(g), f32p(dt), f32p(x), f32p(dskip), f32p(ddt), f32p(dx), f32p(dD), rows, n)
		return
	}
	for j := range rows {
		gy, dl, xv := g[j], dt[j], x[j]
		dlx := dl * xv
		mj, pj, hj, ej, aj, dAj := mu[j*n:(j+1)*n], prev[j*n:(j+1)*n], cur[j*n:(j+1)*n], e[j*n:(j+1)*n], a[j*n:(j+1)*n], dA[j*n:(j+1)*n]
		pj, hj, ej, aj, dAj = pj[:len(mj)], hj[:len(mj)], ej[:len(mj)], aj[:len(mj)], dAj[:len(mj)]
		var sdt, sb T
		for k := range mj {
			lam := mj[k] + gy*ct[k]
			pc[k] += gy * hj[k]
			s := lam * ej[k] * pj[k]
			dAj[k] += dl * s
			sdt += s * aj[k]
			sb += lam * bt[k]
			pb[k] += dlx * lam
			mj[k] = ej[k] * lam
		}
		ddt[j] = sdt + xv*sb
		dx[j] = dl*sb + gy*dskip[j]
		dD[j] += gy * xv
	}
}

// ssmScratch is a worker's room for one chunk of one unit in the backward.
type ssmScratch[T autodiff.Float] struct {
	h    []T // (chunk+1, ssmBlock, N): the state before the chunk, then after each step
	e    []T // (chunk, ssmBlock, N): exp(Δ_t·A)
	zero []T // (ssmBlock): the skip when there is none
	sink []T // (ssmBlock): where its unused gradient goes
}

// SelectiveScanBackward computes the gradients of a selective scan from g =
// ∂L/∂y (Batch, Len, Inner) and the checkpoints its forward kept (same chunk),
// overwriting every slice of gr. Sums over the batch and over channels are taken
// in a fixed order, so the result does not depend on the worker count.
func SelectiveScanBackward[T autodiff.Float](gr SSMGrads[T], g, ckpt []T, in SSMInputs[T], d SSMDims, chunk int) {
	ssmBackward(gr, g, ckpt, in, d, chunk, ssmPathFor[T](d.State))
}

func ssmBackward[T autodiff.Float](gr SSMGrads[T], g, ckpt []T, in SSMInputs[T], d SSMDims, chunk int, path ssmPath) {
	d.check("SelectiveScanBackward", chunk, len(g), len(ckpt), -1, lensOf(in))
	if len(gr.X) != len(in.X) || len(gr.Dt) != len(in.Dt) || len(gr.A) != len(in.A) || len(gr.B) != len(in.B) ||
		len(gr.C) != len(in.C) || in.D != nil && len(gr.D) != len(in.D) {
		panic(fmt.Sprintf("advanced: SelectiveScanBackward: gradients x %d, dt %d, A %d, B %d, C %d, D %d elements for dims %v",
			len(gr.X), len(gr.Dt), len(gr.A), len(gr.B), len(gr.C), len(gr.D), d))
	}
	N, D, L := d.State, d.Inner, d.Len
	nblk := ceilDiv(D, ssmBlock)
	units := d.Batch * nblk
	nc := ceilDiv(L, chunk)
	mu := make([]T, d.Batch*D*N)     // exp(Δ_{t+1}·A)∘λ_{t+1} at the current chunk's end
	dApart := make([]T, d.Batch*D*N) // ∂L/∂A of each batch row
	dDpart := make([]T, d.Batch*D)
	// Per unit and chunk step, its channels' contributions to ∂L/∂B_t and ∂L/∂C_t.
	ck := min(chunk, L) // the longest chunk
	part := make([]T, units*2*ck*N)
	pool := make(chan *ssmScratch[T], metal.Threads())
	for c := nc - 1; c >= 0; c-- {
		t0, t1 := c*chunk, min(L, (c+1)*chunk)
		metal.ParallelFor(units, 1, func(lo, hi int) {
			var s *ssmScratch[T]
			select {
			case s = <-pool:
			default:
				s = &ssmScratch[T]{h: make([]T, (ck+1)*ssmBlock*N), e: make([]T, ck*ssmBlock*N), zero: make([]T, ssmBlock), sink: make([]T, ssmBlock)}
			}
			for u := lo; u < hi; u++ {
				ssmBackChunk(s, gr, g, ckpt, in, d, chunk, u, c, t0, t1, mu, dApart, dDpart, part[u*2*ck*N:(u+1)*2*ck*N], path)
			}
			select {
			case pool <- s:
			default:
			}
		})
		// ∂L/∂B_t and ∂L/∂C_t sum over channels: add the units' parts in order.
		metal.ParallelFor(d.Batch*(t1-t0), max(1, 4096/max(1, nblk*N)), func(lo, hi int) {
			for r := lo; r < hi; r++ {
				b, i := r/(t1-t0), r%(t1-t0)
				off := (b*L + t0 + i) * N
				db, dc := gr.B[off:off+N], gr.C[off:off+N]
				clear(db)
				clear(dc)
				for blk := range nblk {
					p := part[(b*nblk+blk)*2*ck*N:]
					axpy(db, nil, p[i*N:(i+1)*N])
					axpy(dc, nil, p[(ck+i)*N:(ck+i+1)*N])
				}
			}
		})
	}
	clear(gr.A)
	if in.D != nil {
		clear(gr.D)
	}
	for b := range d.Batch {
		axpy(gr.A, nil, dApart[b*D*N:(b+1)*D*N])
		if in.D != nil {
			axpy(gr.D, nil, dDpart[b*D:(b+1)*D])
		}
	}
}

// ssmBackChunk runs the backward of unit u over chunk c = steps [t0, t1):
// recompute the states from the checkpoint, then the adjoint from the chunk's end.
func ssmBackChunk[T autodiff.Float](s *ssmScratch[T], gr SSMGrads[T], g, ckpt []T, in SSMInputs[T], d SSMDims,
	chunk, u, c, t0, t1 int, mu, dApart, dDpart, part []T, path ssmPath) {
	N, D, L := d.State, d.Inner, d.Len
	b, d0, d1 := ssmUnit(d, u)
	w := (d1 - d0) * N // one step of the unit's states
	nc := ceilDiv(L, chunk)
	hs, es := s.h[:(t1-t0+1)*w], s.e[:(t1-t0)*w]
	a := in.A[d0*N : d1*N]
	copy(hs[:w], ckpt[((b*nc+c)*D+d0)*N:])
	for t := t0; t < t1; t++ {
		i := t - t0
		row := (b*L + t) * D
		ssmRecBlock(hs[i*w:(i+1)*w], hs[(i+1)*w:(i+2)*w], es[i*w:(i+1)*w], a, in.B[(b*L+t)*N:][:N],
			in.Dt[row+d0:row+d1], in.X[row+d0:row+d1], N, path)
	}
	m := mu[(b*D+d0)*N : (b*D+d1)*N]
	dA := dApart[(b*D+d0)*N : (b*D+d1)*N]
	dD, dskip := dDpart[b*D+d0:b*D+d1], in.D
	if dskip == nil {
		dD, dskip = s.sink, s.zero
	} else {
		dskip = dskip[d0:d1]
	}
	pB, pC := part[:len(part)/2], part[len(part)/2:]
	clear(pB[:(t1-t0)*N])
	clear(pC[:(t1-t0)*N])
	for t := t1 - 1; t >= t0; t-- {
		i := t - t0
		row := (b*L + t) * D
		ssmBackBlock(m, hs[i*w:(i+1)*w], hs[(i+1)*w:(i+2)*w], es[i*w:(i+1)*w], a, dA,
			in.B[(b*L+t)*N:][:N], in.C[(b*L+t)*N:][:N], pB[i*N:(i+1)*N], pC[i*N:(i+1)*N],
			g[row+d0:row+d1], in.Dt[row+d0:row+d1], in.X[row+d0:row+d1], dskip,
			gr.Dt[row+d0:row+d1], gr.X[row+d0:row+d1], dD, N, path)
	}
}

// SelectiveScanStep advances the state h (batch, inner, state) by one step of
// inputs x and dt (batch, inner), b and c (batch, state), and writes y (batch,
// inner); dskip may be nil.
func SelectiveScanStep[T autodiff.Float](y, h, x, dt, a, b, c, dskip []T, batch, inner, state int) {
	d := SSMDims{batch, 1, inner, state}
	d.check("SelectiveScanStep", 1, len(y), -1, len(h), lensOf(SSMInputs[T]{X: x, Dt: dt, A: a, B: b, C: c, D: dskip}))
	path := ssmPathFor[T](state)
	units := batch * ceilDiv(inner, ssmBlock)
	metal.ParallelFor(units, max(1, 1<<13/max(1, ssmBlock*state)), func(lo, hi int) {
		e := make([]T, state)
		for u := lo; u < hi; u++ {
			bi, d0, d1 := ssmUnit(d, u)
			r0, r1 := bi*inner+d0, bi*inner+d1
			ssmFwdBlock(h[r0*state:r1*state], a[d0*state:d1*state], b[bi*state:(bi+1)*state], c[bi*state:(bi+1)*state],
				dt[r0:r1], x[r0:r1], y[r0:r1], e, state, path)
			if dskip != nil {
				axpy(y[r0:r1], dskip[d0:d1], x[r0:r1])
			}
		}
	})
}

func isFloat32[T autodiff.Float]() bool {
	var z T
	_, ok := any(z).(float32)
	return ok
}

// f32p is the address of s's first element as a *float32: T must be float32.
func f32p[T autodiff.Float](s []T) *float32 { return (*float32)(unsafe.Pointer(unsafe.SliceData(s))) }

// expRow writes e[k] = exp(s·a[k]): float32 by exp32's method, float64 by math.Exp.
func expRow[T autodiff.Float](e, a []T, s T) {
	a = a[:len(e)]
	if !isFloat32[T]() {
		for k := range e {
			e[k] = T(math.Exp(float64(s * a[k])))
		}
		return
	}
	expRow32(unsafe.Slice(f32p(e), len(e)), unsafe.Slice(f32p(a), len(e)), float32(s))
}

// exp32 is e^x in float32 to within a few ulp (see expRow32).
func exp32(x float32) float32 {
	var e [1]float32
	expRow32(e[:], []float32{x}, 1)
	return e[0]
}

// expRow32 writes e[k] = exp(s·a[k]) in float32: with x = s·a[k] = k·ln2 + r,
// |r| ≤ ln2/2 (ln2 split in two so k·ln2 is exact enough), e^r by its Taylor
// polynomial of degree 7 (truncation below 2⁻²⁷) times 2^k built from its bits. Below
// −87 it gives 0 (the result would be subnormal), above 88 +Inf; NaN stays NaN.
// The body is written out in the loop: the compiler would not inline a call.
func expRow32(e, a []float32, s float32) {
	const (
		log2e = 1.44269504088896341
		ln2Hi = 0.693359375 // 355/512: k·ln2Hi is exact for |k| < 2^14
		ln2Lo = -2.12194440054690583e-4
		round = 12582912 // 1.5·2^23: adding it rounds to an integer in the low bits
	)
	a = a[:len(e)]
	for i := range e {
		x := s * a[i]
		switch {
		case x < -87:
			e[i] = 0
		case x > 88:
			e[i] = float32(math.Inf(1))
		default:
			t := x*log2e + round
			k := int32(math.Float32bits(t)) - 0x4B400000
			kf := t - round
			r := x - kf*ln2Hi - kf*ln2Lo
			r2 := r * r // Estrin's scheme: a shorter dependency chain than Horner's
			p := (1 + r) + r2*(1.0/2+r*(1.0/6)) + r2*r2*((1.0/24+r*(1.0/120))+r2*(1.0/720+r*(1.0/5040)))
			e[i] = p * math.Float32frombits(uint32(k+127)<<23)
		}
	}
}
