package autodiff

import (
	"fmt"

	"github.com/mlxtrain/mlxtrain/metal"
)

// BinaryKind selects an elementwise binary operation.
type BinaryKind uint8

// The elementwise binary operations.
const (
	BinAdd BinaryKind = iota
	BinSub
	BinMul
	BinDiv
)

var binaryNames = [...]string{"add", "sub", "mul", "div"}

// parallelGrain is the number of elements below which elementwise work stays on
// one goroutine: starting a worker costs about a microsecond.
const parallelGrain = 1 << 15

// BinaryKernel computes out = a op b where a and b are broadcast to outShape with
// the element strides sa and sb (see BroadcastShapes). Same-shape operands and a
// scalar or trailing-row b take fast loops.
func BinaryKernel[T Float](kind BinaryKind, out, a, b []T, outShape, sa, sb []int) {
	n := len(out)
	if n == 0 {
		return
	}
	if n <= parallelGrain {
		// One chunk: run it here, without making a closure for ParallelFor.
		binaryChunk(kind, out, a, b, outShape, sa, sb, 0, n)
		return
	}
	metal.ParallelFor(n, parallelGrain, func(lo, hi int) { binaryChunk(kind, out, a, b, outShape, sa, sb, lo, hi) })
}

func binaryChunk[T Float](kind BinaryKind, out, a, b []T, outShape, sa, sb []int, lo, hi int) {
	n := len(out)
	switch {
	case len(a) == n && len(b) == n:
		binaryFlat(kind, out[lo:hi], a[lo:hi], b[lo:hi])
	case len(a) == n && len(b) == 1:
		binaryScalar(kind, out[lo:hi], a[lo:hi], b[0])
	default:
		forEachBroadcast(outShape, sa, sb, lo, hi, func(o, i, j int) { out[o] = binaryApply(kind, a[i], b[j]) })
	}
}

func binaryApply[T Float](kind BinaryKind, x, y T) T {
	switch kind {
	case BinAdd:
		return x + y
	case BinSub:
		return x - y
	case BinMul:
		return x * y
	default:
		return x / y
	}
}

func binaryFlat[T Float](kind BinaryKind, out, a, b []T) {
	b = b[:len(out)]
	a = a[:len(out)]
	switch kind {
	case BinAdd:
		for i := range out {
			out[i] = a[i] + b[i]
		}
	case BinSub:
		for i := range out {
			out[i] = a[i] - b[i]
		}
	case BinMul:
		for i := range out {
			out[i] = a[i] * b[i]
		}
	case BinDiv:
		for i := range out {
			out[i] = a[i] / b[i]
		}
	}
}

func binaryScalar[T Float](kind BinaryKind, out, a []T, y T) {
	a = a[:len(out)]
	switch kind {
	case BinAdd:
		for i := range out {
			out[i] = a[i] + y
		}
	case BinSub:
		for i := range out {
			out[i] = a[i] - y
		}
	case BinMul:
		for i := range out {
			out[i] = a[i] * y
		}
	case BinDiv:
		for i := range out {
			out[i] = a[i] / y
		}
	}
}

func checkFloat(op string, ts ...*Tensor) {
	for _, t := range ts {
		if !t.dtype.IsFloat() {
			panic(fmt.Sprintf("autodiff: %s: %s input; cast half and integer tensors to float32 first", op, t.dtype))
		}
		if t.dtype != ts[0].dtype {
			panic(fmt.Sprintf("autodiff: %s: dtypes %s and %s", op, ts[0].dtype, t.dtype))
		}
	}
}

// binaryForward allocates the broadcast result and runs the kernel.
func binaryForward(kind BinaryKind, a, b *Tensor) *Tensor {
	name := binaryNames[kind]
	checkFloat(name, a, b)
	tm := startOp()
	var out *Tensor
	var sa, sb []int
	if sameShape(a.shape, b.shape) {
		out = Empty(a.dtype, a.shape...) // no broadcasting: the kernel takes its flat loop
	} else {
		shape, err := BroadcastShapes(a.shape, b.shape)
		if err != nil {
			panic("autodiff: " + name + ": " + err.Error())
		}
		out = Empty(a.dtype, shape...)
		sa, sb = broadcastStrides(a.shape, shape), broadcastStrides(b.shape, shape)
	}
	shape, path := out.shape, metal.PathMetal
	switch {
	case tryDevice("binary", DeviceFor(binaryOp, []*Tensor{out, a, b}, out.Len()), func(d metal.Compute) error { return binaryDevice(kind, out, a, b, d) }):
	case a.dtype == Float32:
		path = metal.PathGo
		BinaryKernel(kind, out.Float32s(), a.Float32s(), b.Float32s(), shape, sa, sb)
	default:
		path = metal.PathGo
		BinaryKernel(kind, out.Float64s(), a.Float64s(), b.Float64s(), shape, sa, sb)
	}
	tm.done(name, path, out.Len()*out.dtype.Size()*3)
	return out
}

// reduceGrad hands g, the gradient of a broadcast result, to t after summing
// it down to t's shape. g is borrowed: it is copied when the shapes match.
func reduceGrad(t, g *Tensor) *Tensor {
	if sameShape(t.shape, g.shape) {
		return g.Clone()
	}
	return SumTo(g, t.shape)
}

// Add returns a + b with NumPy broadcasting.
func Add(a, b *Tensor) *Tensor {
	out := binaryForward(BinAdd, a, b)
	return record(out, "add", func(g *Tensor) {
		// g is freed after this VJP: the first input of its shape may share it.
		shared := false
		grad := func(t *Tensor) *Tensor {
			if !shared && sameShape(t.shape, g.shape) {
				shared = true
				return shpShare(g, t.shape)
			}
			return reduceGrad(t, g)
		}
		accumulate(a, func() *Tensor { return grad(a) })
		accumulate(b, func() *Tensor { return grad(b) })
	}, a, b)
}

// Sub returns a − b with broadcasting.
func Sub(a, b *Tensor) *Tensor {
	out := binaryForward(BinSub, a, b)
	return record(out, "sub", func(g *Tensor) {
		accumulate(a, func() *Tensor { return reduceGrad(a, g) })
		accumulate(b, func() *Tensor {
			n := Neg(g)
			defer n.Release()
			return reduceGrad(b, n)
		})
	}, a, b)
}

// Mul returns a × b elementwise with broadcasting.
func Mul(a, b *Tensor) *Tensor {
	out := binaryForward(BinMul, a, b)
	return record(out, "mul", func(g *Tensor) {
		accumulate(a, func() *Tensor { return scaledGrad(a, g, b, BinMul) })
		accumulate(b, func() *Tensor { return scaledGrad(b, g, a, BinMul) })
	}, a, b)
}

// Div returns a ÷ b elementwise with broadcasting.
func Div(a, b *Tensor) *Tensor {
	out := binaryForward(BinDiv, a, b)
	return record(out, "div", func(g *Tensor) {
		accumulate(a, func() *Tensor { return scaledGrad(a, g, b, BinDiv) })
		accumulate(b, func() *Tensor {
			// d(a/b)/db = −out/b
			q := binaryForward(BinDiv, out, b)
			defer q.Release()
			gq := binaryForward(BinMul, g, q)
			defer gq.Release()
			n := Neg(gq)
			defer n.Release()
			return reduceGrad(b, n)
		})
	}, a, b)
}

// scaledGrad returns g (op) other, reduced to t's shape.
func scaledGrad(t, g, other *Tensor, kind BinaryKind) *Tensor {
	p := binaryForward(kind, g, other)
	if sameShape(p.shape, t.shape) {
		return p
	}
	defer p.Release()
	return SumTo(p, t.shape)
}

// addInPlace adds src into dst (same shape and dtype); gradient accumulation.
func addInPlace(dst, src *Tensor) {
	if dst.dtype == Float32 {
		d, s := dst.Float32s(), src.Float32s()
		BinaryKernel(BinAdd, d, d, s, nil, nil, nil)
		return
	}
	d, s := dst.Float64s(), src.Float64s()
	BinaryKernel(BinAdd, d, d, s, nil, nil, nil)
}
