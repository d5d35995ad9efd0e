package autodiff

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/mlxtrain/mlxtrain/autodiff/gemm"
	"github.com/mlxtrain/mlxtrain/metal"
)

// The device (Metal, or the simulator) paths of this package's ops. Each op asks
// its registry entry at call time; when the device implementation is picked and
// every tensor involved lives in the device's memory (they all do while an
// accelerator is open: Empty and Zeros allocate there), the op records its
// launches and returns without waiting. A launch that cannot be encoded sends
// the op to its CPU path with a warning; a device implementation whose self-test
// fails is disabled for the process.

var (
	binaryOp     = metal.Kernels.Register("binary", []string{"n"}, metal.DeviceImpl("binary", binarySelfTest), &metal.Impl{Path: metal.PathGo})
	unaryDevOp   = metal.Kernels.Register("unary", []string{"n"}, metal.DeviceImpl("unary", unarySelfTest), &metal.Impl{Path: metal.PathGo})
	activationOp = metal.Kernels.Register("activation", []string{"n"}, metal.DeviceImpl("activation", activationSelfTest), &metal.Impl{Path: metal.PathGo})
	reduceOp     = metal.Kernels.Register("reduce", []string{"n"}, metal.DeviceImpl("reduce", reduceSelfTest), &metal.Impl{Path: metal.PathGo})
	softmaxDevOp = metal.Kernels.Register("softmax", []string{"rows", "cols"}, metal.DeviceImpl("softmax", softmaxSelfTest), &metal.Impl{Path: metal.PathGo})
	xentOp       = metal.Kernels.Register("cross_entropy", []string{"rows", "vocab"}, metal.DeviceImpl("cross_entropy", crossEntropySelfTest), &metal.Impl{Path: metal.PathGo})
	embeddingOp  = metal.Kernels.Register("embedding", []string{"tokens", "dim"}, metal.DeviceImpl("embedding", embeddingSelfTest), &metal.Impl{Path: metal.PathGo})
)

func init() {
	// The matmul op is gemm's (its CPU paths are there); its device path is ours.
	gemm.DeviceImpl().SelfTest = matmulSelfTest
}

// DeviceFor returns the accelerator when op picks its device implementation for
// sizes and every tensor of ts (nil entries aside) is float32 or int32 in the
// device's memory; else nil, and the caller runs its CPU path.
func DeviceFor(op *metal.Op, ts []*Tensor, sizes ...int) metal.Compute {
	if !op.OnMetal(sizes...) {
		return nil
	}
	d := metal.OffloadDevice()
	if d == nil {
		return nil
	}
	for _, t := range ts {
		if t == nil {
			continue
		}
		if t.buf == nil || t.dtype != Float32 && t.dtype != Int32 || !metal.Owns(d, t.buf) {
			return nil
		}
	}
	return d
}

// Launched reports whether the launches of op's device path were recorded
// (err == nil); otherwise it warns once and the caller runs the CPU path.
func Launched(op string, err error) bool {
	if err != nil {
		metal.DispatchFailed(op, err)
		return false
	}
	return true
}

// Own hands saved tensors (statistics a backward needs) to out's tape, which
// frees them with out; when out is not recorded they are freed now.
func Own(out *Tensor, saved ...*Tensor) {
	if out.tape != nil && !out.tape.inBack {
		out.tape.Own(saved...)
		return
	}
	for _, s := range saved {
		s.Release()
	}
}

// DeviceSelfTest builds the self-test of a device implementation: run computes
// the op's outputs on fixed small inputs with the device d (d nil: the CPU path);
// the two sets must agree within float32 tolerance (rtol 1e-4 of the largest
// magnitude, reduction orders differ). Inputs come from SelfTestRand.
func DeviceSelfTest(run func(d metal.Compute) ([]*Tensor, error)) func() error {
	return func() error {
		d := metal.OffloadDevice()
		if d == nil {
			return errors.New("no device")
		}
		want, err := run(nil)
		if err != nil {
			return fmt.Errorf("CPU path: %w", err)
		}
		defer releaseAll(want)
		got, err := run(d)
		if err != nil {
			return err
		}
		defer releaseAll(got)
		if err := d.Synchronize(); err != nil {
			return err
		}
		if len(got) != len(want) {
			return fmt.Errorf("%d outputs, the CPU gives %d", len(got), len(want))
		}
		for i := range want {
			if err := selfTestCompare(got[i], want[i]); err != nil {
				return fmt.Errorf("output %d: %w", i, err)
			}
		}
		return nil
	}
}

func releaseAll(ts []*Tensor) {
	for _, t := range ts {
		if t != nil {
			t.Release()
		}
	}
}

func selfTestCompare(got, want *Tensor) error {
	if got.Len() != want.Len() {
		return fmt.Errorf("%d elements, want %d", got.Len(), want.Len())
	}
	g, w := got.Float64Values(), want.Float64Values()
	scale := 0.0
	for _, v := range w {
		scale = math.Max(scale, math.Abs(v))
	}
	for i := range w {
		if math.IsNaN(w[i]) != math.IsNaN(g[i]) || math.Abs(g[i]-w[i]) > 1e-5+1e-4*scale {
			return fmt.Errorf("element %d is %g, the CPU gives %g", i, g[i], w[i])
		}
	}
	return nil
}

// SelfTestRand returns the deterministic random source of the self-tests.
func SelfTestRand() *rand.Rand { return rand.New(rand.NewPCG(7, 11)) }

// RandomTensor returns a float32 tensor of values uniform in [lo, hi).
func RandomTensor(r *rand.Rand, lo, hi float64, shape ...int) *Tensor {
	t := Empty(Float32, shape...)
	s := t.Float32s()
	for i := range s {
		s[i] = float32(lo + (hi-lo)*r.Float64())
	}
	return t
}

// ---- binary ------------------------------------------------------------------

// trailingOf reports whether shape, without its leading ones, is a suffix of out.
func trailingOf(shape, out []int) bool {
	for len(shape) > 0 && shape[0] == 1 {
		shape = shape[1:]
	}
	if len(shape) > len(out) {
		return false
	}
	return sameShape(shape, out[len(out)-len(shape):])
}

// binaryDevice runs out = a op b on the device: binary_f32 when one operand has
// out's shape and the other is full or a trailing row of it, binary_bcast_f32
// for other broadcasts (up to rank 6).
func binaryDevice(kind BinaryKind, out, a, b *Tensor, d metal.Compute) error {
	if kind > BinDiv {
		return errNotHere
	}
	x, y := a, b
	if !sameShape(x.shape, out.shape) && (kind == BinAdd || kind == BinMul) {
		x, y = b, a
	}
	if sameShape(x.shape, out.shape) && trailingOf(y.shape, out.shape) {
		return metal.RunBinary(d, metal.BinaryOp(kind), out.buf, x.buf, y.buf, out.Len(), y.Len())
	}
	if len(out.shape) > metal.BroadcastMaxRank {
		return errNotHere
	}
	return metal.RunBinaryBroadcast(d, metal.BinaryOp(kind), out.buf, a.buf, b.buf, out.shape,
		broadcastStrides(a.shape, out.shape), broadcastStrides(b.shape, out.shape))
}

// errNotHere marks a call the device path does not cover (a layout, a mode): the
// CPU runs it, without a warning.
var errNotHere = errors.New("not covered by the device kernels")

// tryDevice runs a device path: true when its launches were recorded.
func tryDevice(op string, d metal.Compute, run func(metal.Compute) error) bool {
	if d == nil {
		return false
	}
	err := run(d)
	if err == errNotHere {
		return false
	}
	return Launched(op, err)
}

func binarySelfTest() error {
	return DeviceSelfTest(func(d metal.Compute) ([]*Tensor, error) {
		r := SelfTestRand()
		a, b, row := RandomTensor(r, -2, 2, 5, 37), RandomTensor(r, 0.5, 2, 5, 37), RandomTensor(r, 0.5, 2, 37)
		col := RandomTensor(r, 0.5, 2, 5, 1)
		defer releaseAll([]*Tensor{a, b, row, col})
		var outs []*Tensor
		for kind := BinAdd; kind <= BinDiv; kind++ {
			for _, y := range []*Tensor{b, row, col} {
				out := Empty(Float32, 5, 37)
				outs = append(outs, out)
				if d == nil {
					sa, sb := []int(nil), []int(nil)
					if y != b {
						sa, sb = broadcastStrides(a.shape, out.shape), broadcastStrides(y.shape, out.shape)
					}
					BinaryKernel(kind, out.Float32s(), a.Float32s(), y.Float32s(), out.shape, sa, sb)
				} else if err := binaryDevice(kind, out, a, y, d); err != nil {
					return outs, err
				}
			}
		}
		return outs, nil
	})()
}

// ---- activations ---------------------------------------------------------------

var activationKinds = map[UnaryKind]metal.ActivationOp{UnGELU: metal.ActGELU, UnGELUTanh: metal.ActGELUTanh, UnSiLU: metal.ActSiLU}

// unaryDeviceOp is the registry entry of a unary function's device path: the
// activation kernels for GELU and SiLU, map.metal for the others.
func unaryDeviceOp(k UnaryKind) *metal.Op {
	if _, ok := activationKinds[k]; ok {
		return activationOp
	}
	return unaryDevOp
}

func activationDevice(k UnaryKind, out, x *Tensor, p, q float64, d metal.Compute) error {
	if op, ok := activationKinds[k]; ok {
		return metal.RunActivation(d, op, out.buf, x.buf, x.Len())
	}
	return metal.RunMap(d, metal.MapOp(k), out.buf, x.buf, x.Len(), float32(p), float32(q))
}

func activationBackwardDevice(k UnaryKind, dx, g, x, y *Tensor, p, q float64, d metal.Compute) error {
	if op, ok := activationKinds[k]; ok {
		return metal.RunActivationBackward(d, op, dx.buf, g.buf, x.buf, x.Len())
	}
	return metal.RunMapBackward(d, metal.MapOp(k), dx.buf, g.buf, x.buf, y.buf, x.Len(), float32(p), float32(q))
}

// unaryDeviceFor is DeviceFor for a unary function's op, nil when it has none.
func unaryDeviceFor(k UnaryKind, ts []*Tensor, n int) metal.Compute {
	op := unaryDeviceOp(k)
	if op == nil {
		return nil
	}
	return DeviceFor(op, ts, n)
}

func unarySelfTest() error {
	return DeviceSelfTest(func(d metal.Compute) ([]*Tensor, error) {
		r := SelfTestRand()
		x, g := RandomTensor(r, 0.1, 4, 301), RandomTensor(r, -1, 1, 301)
		defer releaseAll([]*Tensor{x, g})
		var outs []*Tensor
		for k := UnNeg; k <= UnMulScalar; k++ {
			if _, act := activationKinds[k]; act { // their own self-test
				continue
			}
			p, q := 0.5, 2.0
			y, dx := Empty(Float32, 301), Empty(Float32, 301)
			outs = append(outs, y, dx)
			if d == nil {
				UnaryKernel(k, y.Float32s(), x.Float32s(), p, q)
				UnaryBackwardKernel(k, dx.Float32s(), g.Float32s(), x.Float32s(), y.Float32s(), p, q)
				continue
			}
			if err := activationDevice(k, y, x, p, q, d); err != nil {
				return outs, err
			}
			if err := activationBackwardDevice(k, dx, g, x, y, p, q, d); err != nil {
				return outs, err
			}
		}
		return outs, nil
	})()
}

func activationSelfTest() error {
	return DeviceSelfTest(func(d metal.Compute) ([]*Tensor, error) {
		r := SelfTestRand()
		x, g := RandomTensor(r, -4, 4, 301), RandomTensor(r, -1, 1, 301)
		defer releaseAll([]*Tensor{x, g})
		var outs []*Tensor
		for _, k := range []UnaryKind{UnGELU, UnGELUTanh, UnSiLU} {
			y, dx := Empty(Float32, 301), Empty(Float32, 301)
			outs = append(outs, y, dx)
			if d == nil {
				UnaryKernel(k, y.Float32s(), x.Float32s(), 0, 0)
				UnaryBackwardKernel(k, dx.Float32s(), g.Float32s(), x.Float32s(), y.Float32s(), 0, 0)
				continue
			}
			if err := activationDevice(k, y, x, 0, 0, d); err != nil {
				return outs, err
			}
			if err := activationBackwardDevice(k, dx, g, x, y, 0, 0, d); err != nil {
				return outs, err
			}
		}
		return outs, nil
	})()
}

// ---- reductions ------------------------------------------------------------------

// sumToDevice sums t (rows × cols) over its leading axes into out (cols): the
// reduction SumTo does when out's shape is a trailing part of t's.
func sumToDevice(out, t *Tensor, d metal.Compute) error {
	if !trailingOf(out.shape, t.shape) || out.Len() == 0 {
		return errNotHere
	}
	return metal.RunReduceCols(d, metal.ReduceSum, out.buf, t.buf, t.Len()/out.Len(), out.Len())
}

// reduceDevice runs a sum or mean over trailing axes (rows) or leading axes
// (columns) of x.
func reduceDevice(kind redKind, p *redPlan, out, x *Tensor, d metal.Compute) error {
	var op metal.ReduceOp
	switch kind {
	case redSum:
		op = metal.ReduceSum
	case redMean:
		op = metal.ReduceMean
	default:
		return errNotHere
	}
	if p.koff != nil || p.n == 0 || p.k == 0 {
		return errNotHere
	}
	switch {
	case p.b == 1: // x is (a, n): rows
		return metal.RunReduceRows(d, op, out.buf, x.buf, p.a, p.n)
	case p.a == 1: // x is (n, b): columns
		return metal.RunReduceCols(d, op, out.buf, x.buf, p.n, p.b)
	}
	return errNotHere
}

func reduceSelfTest() error {
	return DeviceSelfTest(func(d metal.Compute) ([]*Tensor, error) {
		r := SelfTestRand()
		x := RandomTensor(r, -2, 2, 70, 33)
		defer x.Release()
		var outs []*Tensor
		for _, kind := range []redKind{redSum, redMean} {
			for _, axes := range [][]int{{1}, {0}} {
				p := newRedPlan("self-test", x.shape, axes, false)
				out := Empty(Float32, p.out...)
				outs = append(outs, out)
				if d == nil {
					redForward(kind, p, x.Float32s(), out.Float32s(), 0)
				} else if err := reduceDevice(kind, p, out, x, d); err != nil {
					return outs, err
				}
			}
		}
		return outs, nil
	})()
}

// ---- softmax -----------------------------------------------------------------

func softmaxDevice(log bool, out, x *Tensor, a, n, b int, d metal.Compute) error {
	if b != 1 {
		return errNotHere
	}
	if log {
		return metal.RunLogSoftmax(d, out.buf, x.buf, a, n)
	}
	return metal.RunSoftmax(d, out.buf, x.buf, a, n)
}

func softmaxBackwardDevice(log bool, dx, g, y *Tensor, a, n, b int, d metal.Compute) error {
	if b != 1 {
		return errNotHere
	}
	if log {
		return metal.RunLogSoftmaxBackward(d, dx.buf, g.buf, y.buf, a, n)
	}
	return metal.RunSoftmaxBackward(d, dx.buf, g.buf, y.buf, a, n)
}

func softmaxSelfTest() error {
	return DeviceSelfTest(func(d metal.Compute) ([]*Tensor, error) {
		r := SelfTestRand()
		x, g := RandomTensor(r, -3, 3, 9, 77), RandomTensor(r, -1, 1, 9, 77)
		defer releaseAll([]*Tensor{x, g})
		var outs []*Tensor
		for _, log := range []bool{false, true} {
			y, dx := Empty(Float32, 9, 77), Empty(Float32, 9, 77)
			outs = append(outs, y, dx)
			if d == nil {
				smForward(y.Float32s(), x.Float32s(), 9, 77, 1, log)
				smBackward(dx.Float32s(), g.Float32s(), y.Float32s(), 9, 77, 1, log)
				continue
			}
			if err := softmaxDevice(log, y, x, 9, 77, 1, d); err != nil {
				return outs, err
			}
			if err := softmaxBackwardDevice(log, dx, g, y, 9, 77, 1, d); err != nil {
				return outs, err
			}
		}
		return outs, nil
	})()
}

// ---- cross-entropy -------------------------------------------------------------

// crossEntropyDevice computes the losses of the rows on the device: the per-row
// losses into a (rows) tensor for ReductionNone, else their sum, times scale,
// into the 0-d out; lse receives each row's log-sum-exp for the backward.
func crossEntropyDevice(out, lse, logits, targets *Tensor, rows, v int, c metal.CrossEntropyConfig, none bool, scale float32, d metal.Compute) error {
	if none {
		return metal.RunCrossEntropy(d, out.buf, lse.buf, logits.buf, targets.buf, rows, v, c)
	}
	loss := Empty(Float32, rows)
	defer loss.Release() // back to the pool once the launches using it complete
	if err := metal.RunCrossEntropy(d, loss.buf, lse.buf, logits.buf, targets.buf, rows, v, c); err != nil {
		return err
	}
	sum := out
	if scale != 1 {
		sum = Empty(Float32)
		defer sum.Release()
	}
	if err := metal.RunReduceRows(d, metal.ReduceSum, sum.buf, loss.buf, 1, rows); err != nil {
		return err
	}
	if scale == 1 {
		return nil
	}
	s := Full(Float32, float64(scale))
	defer s.Release()
	return metal.RunBinary(d, metal.BinaryMul, out.buf, sum.buf, s.buf, 1, 1)
}

func crossEntropySelfTest() error {
	return DeviceSelfTest(func(d metal.Compute) ([]*Tensor, error) {
		r := SelfTestRand()
		const rows, v = 13, 45
		logits, g := RandomTensor(r, -3, 3, rows, v), RandomTensor(r, -1, 1, rows)
		targets := Empty(Int32, rows)
		for i := range targets.Int32s() {
			targets.Int32s()[i] = int32(r.IntN(v))
		}
		targets.Int32s()[3] = -100
		defer releaseAll([]*Tensor{logits, g, targets})
		c := metal.CrossEntropyConfig{Ignore: -100, Smoothing: 0.1}
		loss, mean, dx := Empty(Float32, rows), Empty(Float32), Empty(Float32, rows, v)
		outs := []*Tensor{loss, mean, dx}
		if d == nil {
			l, lse := make([]float64, rows), make([]float64, rows)
			CrossEntropyRows(l, lse, logits.Float32s(), targets.Int32s(), rows, v, c.Ignore, 0.1)
			sum := 0.0
			for i, x := range l {
				loss.Float32s()[i] = float32(x)
				sum += x
			}
			mean.Float32s()[0] = float32(sum / (rows - 1))
			CrossEntropyBackwardRows(dx.Float32s(), logits.Float32s(), targets.Int32s(), lse, g.Float64Values(), rows, v, c.Ignore, 0.1)
			return outs, nil
		}
		lse := Empty(Float32, rows)
		defer lse.Release()
		if err := crossEntropyDevice(loss, lse, logits, targets, rows, v, c, true, 1, d); err != nil {
			return outs, err
		}
		if err := crossEntropyDevice(mean, lse, logits, targets, rows, v, c, false, 1.0/(rows-1), d); err != nil {
			return outs, err
		}
		return outs, metal.RunCrossEntropyBackward(d, dx.buf, logits.buf, targets.buf, lse.buf, g.buf, rows, v, c, 1, true)
	})()
}

// ---- embedding -----------------------------------------------------------------

func embeddingSelfTest() error {
	return DeviceSelfTest(func(d metal.Compute) ([]*Tensor, error) {
		r := SelfTestRand()
		const vocab, dim, tokens = 11, 37, 29
		table, g := RandomTensor(r, -1, 1, vocab, dim), RandomTensor(r, -1, 1, tokens, dim)
		ids := Empty(Int32, tokens)
		for i := range ids.Int32s() {
			ids.Int32s()[i] = int32(r.IntN(vocab - 1)) // the last row gets no token
		}
		defer releaseAll([]*Tensor{table, g, ids})
		out, dt := Empty(Float32, tokens, dim), Zeros(Float32, vocab, dim)
		outs := []*Tensor{out, dt}
		if d == nil {
			GatherKernel(out.Float32s(), table.Float32s(), ids.Int32s(), 1, vocab, dim)
			ScatterAddKernel(dt.Float32s(), g.Float32s(), ids.Int32s(), 1, vocab, dim)
			return outs, nil
		}
		if err := metal.RunEmbedding(d, out.buf, table.buf, ids.buf, tokens, vocab, dim); err != nil {
			return outs, err
		}
		return outs, metal.RunEmbeddingBackward(d, dt.buf, g.buf, ids.buf, tokens, vocab, dim, false)
	})()
}

// ---- matmul ----------------------------------------------------------------------

// matmulDevice runs c = op(x)·op(y) for the stored, contiguous matrices of x
// (m×k, or k×m when tx) and y (k×n, or n×k when ty).
func matmulDevice(c, x, y *Tensor, m, n, k int, tx, ty bool, d metal.Compute) error {
	return matmulDeviceAt(c, x, y, 0, 0, 0, m, n, k, tx, ty, d)
}

// matmulDeviceAt is matmulDevice on the matrices at the given element offsets.
func matmulDeviceAt(c, x, y *Tensor, cOff, xOff, yOff, m, n, k int, tx, ty bool, d metal.Compute) error {
	tm := startOp()
	if err := metal.RunMatMulTAt(d, c.buf, x.buf, y.buf, cOff, xOff, yOff, m, n, k, tx, ty); err != nil {
		return err
	}
	tm.done("matmul", metal.PathMetal, 4*(m*k+k*n+m*n))
	return nil
}

// MatMulDevice records c = op(x)·op(y) on d for the stored, contiguous matrices
// of x (m×k, or k×m when tx) and y (k×n, or n×k when ty), as the profile's
// "matmul" on the device path: for ops of other packages (linear layers).
func MatMulDevice(d metal.Compute, c, x, y *Tensor, m, n, k int, tx, ty bool) error {
	return matmulDevice(c, x, y, m, n, k, tx, ty, d)
}

// device returns the device for the plan's products, or nil. A batch of
// products is a launch each, the outputs in order (see metal.RunMatMulTAt).
func (p *matmulPlan) device(ts ...*Tensor) metal.Compute {
	return DeviceFor(gemm.MatMulOp(), ts, p.m, p.n, p.k)
}

// onDevice launches product(i) for every product of the plan.
func (p *matmulPlan) onDevice(d metal.Compute, product func(i int, d metal.Compute) error) error {
	for i := range p.count {
		if err := product(i, d); err != nil {
			return err
		}
	}
	return nil
}

func matmulSelfTest() error {
	return DeviceSelfTest(func(d metal.Compute) ([]*Tensor, error) {
		r := SelfTestRand()
		const m, n, k = 19, 35, 23
		var outs []*Tensor
		for _, tr := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
			a, b := RandomTensor(r, -1, 1, m, k), RandomTensor(r, -1, 1, k, n)
			if tr[0] {
				a.Release()
				a = RandomTensor(r, -1, 1, k, m)
			}
			if tr[1] {
				b.Release()
				b = RandomTensor(r, -1, 1, n, k)
			}
			c := Empty(Float32, m, n)
			outs = append(outs, c)
			var err error
			if d == nil {
				lda, ldb := k, n
				if tr[0] {
					lda = m
				}
				if tr[1] {
					ldb = k
				}
				gemm.SgemmReference(tr[0], tr[1], m, n, k, 1, a.Float32s(), lda, b.Float32s(), ldb, 0, c.Float32s(), n)
			} else {
				err = matmulDevice(c, a, b, m, n, k, tr[0], tr[1], d)
			}
			a.Release()
			b.Release()
			if err != nil {
				return outs, err
			}
		}
		return outs, nil
	})()
}
