package advanced

import (
	"fmt"
	"math"

	"github.com/mlxtrain/mlxtrain/autodiff"
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

// SelectiveScanForward writes y (Batch, Len, Inner). When ckpt is not nil it
// receives the states at the start of every chunk of `chunk` steps, laid out
// (Batch, ⌈Len/chunk⌉, Inner, State), for [SelectiveScanBackward]; when hLast is
// not nil it receives the state after the last step (Batch, Inner, State).
func SelectiveScanForward[T autodiff.Float](y, ckpt, hLast []T, in SSMInputs[T], d SSMDims, chunk int) {
	d.check("SelectiveScanForward", chunk, len(y), optLen(ckpt), optLen(hLast), lensOf(in))
	units := d.Batch * ceilDiv(d.Inner, ssmBlock)
	segs := 1
	if th, nc := metal.Threads(), ceilDiv(d.Len, chunk); th > 1 && units > 0 && units < th && nc > 1 {
		segs = min(nc, 1+ceilDiv(th, units))
	}
	ssmForward(y, ckpt, hLast, in, d, chunk, segs)
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
func ssmForward[T autodiff.Float](y, ckpt, hLast []T, in SSMInputs[T], d SSMDims, chunk, segs int) {
	N := d.State
	units := d.Batch * ceilDiv(d.Inner, ssmBlock)
	nc := ceilDiv(d.Len, chunk)
	if segs <= 1 || nc <= 1 {
		metal.ParallelFor(units, 1, func(lo, hi int) {
			h := make([]T, ssmBlock*N)
			for u := lo; u < hi; u++ {
				b, d0, d1 := ssmUnit(d, u)
				hs := h[:(d1-d0)*N]
				ssmInitState(hs, in.H0, d, b, d0, d1)
				ssmRun(y, ckpt, in, d, chunk, b, d0, d1, 0, d.Len, hs)
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
		for i := lo; i < hi; i++ {
			u, s := i/(segs-1), i%(segs-1)
			b, d0, d1 := ssmUnit(d, u)
			off := s*width + u*ssmBlock*N
			e := end[off : off+(d1-d0)*N]
			if s == 0 {
				ssmInitState(e, in.H0, d, b, d0, d1)
				ssmRun(y, ckpt, in, d, chunk, b, d0, d1, 0, bound(1), e)
				continue
			}
			ssmSegmentMap(prod[off:off+(d1-d0)*N], e, in, d, b, d0, d1, bound(s), bound(s+1))
		}
	})
	// The scan of the segment maps: end[s] becomes the state after segment s.
	LinearScan(end, prod, end, nil, segs-1, width)
	metal.ParallelFor(items, 1, func(lo, hi int) {
		h := make([]T, ssmBlock*N)
		for i := lo; i < hi; i++ {
			u, s := i/(segs-1), 1+i%(segs-1)
			b, d0, d1 := ssmUnit(d, u)
			hs := h[:(d1-d0)*N]
			off := (s-1)*width + u*ssmBlock*N
			copy(hs, end[off:off+len(hs)])
			ssmRun(y, ckpt, in, d, chunk, b, d0, d1, bound(s), bound(s+1), hs)
			if s == segs-1 && hLast != nil {
				copy(hLast[(b*d.Inner+d0)*N:], hs)
			}
		}
	})
}

// ssmRun advances the states h of channels [d0, d1) of row b over steps [t0, t1),
// writing y and, at chunk starts, the checkpoints.
func ssmRun[T autodiff.Float](y, ckpt []T, in SSMInputs[T], d SSMDims, chunk, b, d0, d1, t0, t1 int, h []T) {
	N, D := d.State, d.Inner
	f32 := isFloat32[T]()
	nc := ceilDiv(d.Len, chunk)
	for t := t0; t < t1; t++ {
		if ckpt != nil && t%chunk == 0 {
			copy(ckpt[((b*nc+t/chunk)*D+d0)*N:], h)
		}
		row := (b*d.Len + t) * D
		bt, ct := in.B[(b*d.Len+t)*N:][:N], in.C[(b*d.Len+t)*N:][:N]
		for j := range d1 - d0 {
			dc := d0 + j
			dl, xv := in.Dt[row+dc], in.X[row+dc]
			acc := ssmStepRow(h[j*N:(j+1)*N], in.A[dc*N:(dc+1)*N], bt, ct, dl, dl*xv, f32)
			if in.D != nil {
				acc += in.D[dc] * xv
			}
			y[row+dc] = acc
		}
	}
}

// ssmStepRow advances one channel's state by a step and returns ⟨c, h⟩.
func ssmStepRow[T autodiff.Float](h, a, b, c []T, dl, dlx T, f32 bool) T {
	a, b, c = a[:len(h)], b[:len(h)], c[:len(h)]
	var acc T
	for n := range h {
		hv := expT(dl*a[n], f32)*h[n] + dlx*b[n]
		h[n] = hv
		acc += c[n] * hv
	}
	return acc
}

// ssmSegmentMap computes the map h ↦ prod∘h + end that steps [t0, t1) apply to
// the states of channels [d0, d1) of row b.
func ssmSegmentMap[T autodiff.Float](prod, end []T, in SSMInputs[T], d SSMDims, b, d0, d1, t0, t1 int) {
	N, D := d.State, d.Inner
	f32 := isFloat32[T]()
	clear(end)
	for t := t0; t < t1; t++ {
		row := (b*d.Len + t) * D
		bt := in.B[(b*d.Len+t)*N:][:N]
		for j := range d1 - d0 {
			dc := d0 + j
			dl := in.Dt[row+dc]
			e, a := end[j*N:(j+1)*N], in.A[dc*N:(dc+1)*N]
			dlx := dl * in.X[row+dc]
			for n := range e {
				e[n] = expT(dl*a[n], f32)*e[n] + dlx*bt[n]
			}
		}
	}
	// The product of the exp(Δ_t·A) is exp(A·ΣΔ_t).
	for j := range d1 - d0 {
		dc := d0 + j
		var sum T
		for t := t0; t < t1; t++ {
			sum += in.Dt[(b*d.Len+t)*D+dc]
		}
		p, a := prod[j*N:(j+1)*N], in.A[dc*N:(dc+1)*N]
		for n := range p {
			p[n] = expT(sum*a[n], f32)
		}
	}
}

// ssmScratch is a worker's room for one chunk of one unit in the backward.
type ssmScratch[T autodiff.Float] struct {
	h []T // (chunk+1, ssmBlock, N): the state before the chunk, then after each step
	a []T // (chunk, ssmBlock, N): exp(Δ_t·A)
}

// SelectiveScanBackward computes the gradients of a selective scan from g =
// ∂L/∂y (Batch, Len, Inner) and the checkpoints its forward kept (same chunk),
// overwriting every slice of gr. Sums over the batch and over channels are taken
// in a fixed order, so the result does not depend on the worker count.
func SelectiveScanBackward[T autodiff.Float](gr SSMGrads[T], g, ckpt []T, in SSMInputs[T], d SSMDims, chunk int) {
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
	part := make([]T, units*2*chunk*N)
	pool := make(chan *ssmScratch[T], metal.Threads())
	for c := nc - 1; c >= 0; c-- {
		t0, t1 := c*chunk, min(L, (c+1)*chunk)
		metal.ParallelFor(units, 1, func(lo, hi int) {
			var s *ssmScratch[T]
			select {
			case s = <-pool:
			default:
				s = &ssmScratch[T]{h: make([]T, (chunk+1)*ssmBlock*N), a: make([]T, chunk*ssmBlock*N)}
			}
			for u := lo; u < hi; u++ {
				ssmBackChunk(s, gr, g, ckpt, in, d, chunk, u, c, t0, t1, mu, dApart, dDpart, part[u*2*chunk*N:(u+1)*2*chunk*N])
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
					p := part[(b*nblk+blk)*2*chunk*N:]
					axpy(db, nil, p[i*N:(i+1)*N])
					axpy(dc, nil, p[(chunk+i)*N:(chunk+i+1)*N])
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
	chunk, u, c, t0, t1 int, mu, dApart, dDpart, part []T) {
	N, D, L := d.State, d.Inner, d.Len
	f32 := isFloat32[T]()
	b, d0, d1 := ssmUnit(d, u)
	w := (d1 - d0) * N // one step of the unit's states
	nc := ceilDiv(L, chunk)
	hs, as := s.h[:(t1-t0+1)*w], s.a[:(t1-t0)*w]
	copy(hs[:w], ckpt[((b*nc+c)*D+d0)*N:])
	for t := t0; t < t1; t++ {
		i := t - t0
		prev, cur, ar := hs[i*w:(i+1)*w], hs[(i+1)*w:(i+2)*w], as[i*w:(i+1)*w]
		row := (b*L + t) * D
		bt := in.B[(b*L+t)*N:][:N]
		for j := range d1 - d0 {
			dc := d0 + j
			dl := in.Dt[row+dc]
			dlx := dl * in.X[row+dc]
			a := in.A[dc*N : (dc+1)*N]
			p, h, e := prev[j*N:(j+1)*N], cur[j*N:(j+1)*N], ar[j*N:(j+1)*N]
			p, h, bt := p[:len(a)], h[:len(a)], bt[:len(a)]
			for n := range e {
				ev := expT(dl*a[n], f32)
				e[n] = ev
				h[n] = ev*p[n] + dlx*bt[n]
			}
		}
	}
	m := mu[(b*D+d0)*N : (b*D+d1)*N]
	dA := dApart[(b*D+d0)*N : (b*D+d1)*N]
	pB, pC := part[:chunk*N], part[chunk*N:]
	clear(pB[:(t1-t0)*N])
	clear(pC[:(t1-t0)*N])
	for t := t1 - 1; t >= t0; t-- {
		i := t - t0
		prev, cur, ar := hs[i*w:(i+1)*w], hs[(i+1)*w:(i+2)*w], as[i*w:(i+1)*w]
		row := (b*L + t) * D
		bt, ct := in.B[(b*L+t)*N:][:N], in.C[(b*L+t)*N:][:N]
		pb, pc := pB[i*N:(i+1)*N], pC[i*N:(i+1)*N]
		for j := range d1 - d0 {
			dc := d0 + j
			gy, dl, xv := g[row+dc], in.Dt[row+dc], in.X[row+dc]
			sdt, sb := ssmBackRow(m[j*N:(j+1)*N], prev[j*N:(j+1)*N], cur[j*N:(j+1)*N], ar[j*N:(j+1)*N],
				in.A[dc*N:(dc+1)*N], bt, ct, pb, pc, dA[j*N:(j+1)*N], gy, dl, dl*xv)
			gr.Dt[row+dc] = sdt + sb*xv
			dx := sb * dl
			if in.D != nil {
				dx += gy * in.D[dc]
				dDpart[b*D+dc] += gy * xv
			}
			gr.X[row+dc] = dx
		}
	}
}

// ssmBackRow is one channel's adjoint step. With λ = μ + g·c (μ carrying
// exp(Δ_{t+1}·A)∘λ_{t+1}), it adds the channel's share to ∂L/∂C_t (pc), ∂L/∂B_t
// (pb) and ∂L/∂A (dA), moves μ back a step, and returns Σ λ·h_{t−1}·e·A (the
// decay's part of ∂L/∂Δ_t) and Σ λ·B_t (from which the input's parts follow).
func ssmBackRow[T autodiff.Float](mu, prev, cur, e, a, bt, ct, pb, pc, dA []T, gy, dl, dlx T) (sdt, sb T) {
	n := len(mu)
	prev, cur, e, a, bt, ct, pb, pc, dA = prev[:n], cur[:n], e[:n], a[:n], bt[:n], ct[:n], pb[:n], pc[:n], dA[:n]
	for k := range mu {
		lam := mu[k] + gy*ct[k]
		pc[k] += gy * cur[k]
		s := lam * prev[k] * e[k]
		dA[k] += s * dl
		sdt += s * a[k]
		sb += lam * bt[k]
		pb[k] += lam * dlx
		mu[k] = e[k] * lam
	}
	return sdt, sb
}

// SelectiveScanStep advances the state h (batch, inner, state) by one step of
// inputs x and dt (batch, inner), b and c (batch, state), and writes y (batch,
// inner); dskip may be nil.
func SelectiveScanStep[T autodiff.Float](y, h, x, dt, a, b, c, dskip []T, batch, inner, state int) {
	d := SSMDims{batch, 1, inner, state}
	d.check("SelectiveScanStep", 1, len(y), -1, len(h), lensOf(SSMInputs[T]{X: x, Dt: dt, A: a, B: b, C: c, D: dskip}))
	f32 := isFloat32[T]()
	metal.ParallelFor(batch*inner, max(1, 1<<13/max(1, state)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			bi, dc := r/inner, r%inner
			acc := ssmStepRow(h[r*state:(r+1)*state], a[dc*state:(dc+1)*state], b[bi*state:(bi+1)*state], c[bi*state:(bi+1)*state], dt[r], dt[r]*x[r], f32)
			if dskip != nil {
				acc += dskip[dc] * x[r]
			}
			y[r] = acc
		}
	})
}

func isFloat32[T autodiff.Float]() bool {
	var z T
	_, ok := any(z).(float32)
	return ok
}

// expT is e^v, in float32 by exp32 when f32 (T is float32), else by math.Exp.
func expT[T autodiff.Float](v T, f32 bool) T {
	if f32 {
		return T(exp32(float32(v)))
	}
	return T(math.Exp(float64(v)))
}

// exp32 is e^x in float32 to within a few ulp: x = k·ln2 + r with |r| ≤ ln2/2
// (ln2 split in two so k·ln2 is exact enough), e^r by its Taylor series to degree
// 7 (truncation below 2⁻²⁷), times 2^k built from its bits. Below −87 it returns 0
// (the result would be subnormal), above 88 +Inf; NaN stays NaN.
func exp32(x float32) float32 {
	const (
		log2e = 1.44269504088896341
		ln2Hi = 0.693359375 // 355/512: k·ln2Hi is exact for |k| < 2^14
		ln2Lo = -2.12194440054690583e-4
		round = 12582912 // 1.5·2^23: adding it rounds to an integer in the low bits
	)
	if x < -87 {
		return 0
	}
	if x > 88 {
		return float32(math.Inf(1))
	}
	t := x*log2e + round
	k := int32(math.Float32bits(t)) - 0x4B400000
	kf := t - round
	r := x - kf*ln2Hi - kf*ln2Lo
	p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720+r*(1.0/5040)))))))
	return p * math.Float32frombits(uint32(k+127)<<23)
}
