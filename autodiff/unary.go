package autodiff

import (
	"math"

	"github.com/mlxtrain/mlxtrain/internal/vecmath"
	"github.com/mlxtrain/mlxtrain/metal"
)

// UnaryKind selects an elementwise function of one tensor (with up to two scalar
// parameters, P and Q).
type UnaryKind uint8

// The elementwise functions.
const (
	UnNeg       UnaryKind = iota
	UnExp                 // e^x
	UnLog                 // ln x
	UnSqrt                // √x
	UnRsqrt               // 1/√x
	UnAbs                 // |x| (gradient 0 at 0)
	UnTanh                // tanh x
	UnSigmoid             // 1/(1+e^−x)
	UnReLU                // max(x, 0) (gradient 0 at 0)
	UnGELU                // x·Φ(x), the erf form
	UnGELUTanh            // the tanh approximation of GELU
	UnSiLU                // x·σ(x)
	UnSoftplus            // ln(1+e^x), linear above P (MLX and PyTorch use 20)
	UnPow                 // x^P
	UnClamp               // min(max(x, P), Q) (gradient 1 strictly inside)
	UnAddScalar           // x + P
	UnMulScalar           // x × P
)

var unaryNames = [...]string{"neg", "exp", "log", "sqrt", "rsqrt", "abs", "tanh", "sigmoid", "relu", "gelu", "gelu_tanh", "silu", "softplus", "pow", "clamp", "add_scalar", "mul_scalar"}

func (k UnaryKind) String() string { return unaryNames[k] }

const (
	sqrt2OverPi = 0.7978845608028654 // √(2/π)
	geluCoef    = 0.044715
	invSqrt2    = 0.7071067811865476
	invSqrt2Pi  = 0.3989422804014327 // 1/√(2π)
)

// unaryScalar is f(x) in float64; kernels call it per element (the float32 path
// widens, which keeps both dtypes on one definition).
func unaryScalar(k UnaryKind, x, p, q float64) float64 {
	switch k {
	case UnNeg:
		return -x
	case UnExp:
		return math.Exp(x)
	case UnLog:
		return math.Log(x)
	case UnSqrt:
		return math.Sqrt(x)
	case UnRsqrt:
		return 1 / math.Sqrt(x)
	case UnAbs:
		return math.Abs(x)
	case UnTanh:
		return math.Tanh(x)
	case UnSigmoid:
		return sigmoid(x)
	case UnReLU:
		return math.Max(x, 0)
	case UnGELU:
		return 0.5 * x * (1 + math.Erf(x*invSqrt2))
	case UnGELUTanh:
		return 0.5 * x * (1 + math.Tanh(sqrt2OverPi*(x+geluCoef*x*x*x)))
	case UnSiLU:
		return x * sigmoid(x)
	case UnSoftplus:
		if x > p {
			return x
		}
		return math.Log1p(math.Exp(x))
	case UnPow:
		return math.Pow(x, p)
	case UnClamp:
		return math.Min(math.Max(x, p), q)
	case UnAddScalar:
		return x + p
	case UnMulScalar:
		return x * p
	}
	panic("autodiff: unknown unary kind")
}

func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// unaryDeriv is f'(x) given x and y = f(x).
func unaryDeriv(k UnaryKind, x, y, p, q float64) float64 {
	switch k {
	case UnNeg:
		return -1
	case UnExp:
		return y
	case UnLog:
		return 1 / x
	case UnSqrt:
		return 0.5 / y
	case UnRsqrt:
		return -0.5 * y / x
	case UnAbs:
		switch {
		case x > 0:
			return 1
		case x < 0:
			return -1
		}
		return 0
	case UnTanh:
		return 1 - y*y
	case UnSigmoid:
		return y * (1 - y)
	case UnReLU:
		if x > 0 {
			return 1
		}
		return 0
	case UnGELU:
		return 0.5*(1+math.Erf(x*invSqrt2)) + x*invSqrt2Pi*math.Exp(-0.5*x*x)
	case UnGELUTanh:
		u := sqrt2OverPi * (x + geluCoef*x*x*x)
		t := math.Tanh(u)
		return 0.5*(1+t) + 0.5*x*(1-t*t)*sqrt2OverPi*(1+3*geluCoef*x*x)
	case UnSiLU:
		s := sigmoid(x)
		return s * (1 + x*(1-s))
	case UnSoftplus:
		if x > p {
			return 1
		}
		return sigmoid(x)
	case UnPow:
		if p == 0 {
			return 0
		}
		return p * math.Pow(x, p-1)
	case UnClamp:
		if x > p && x < q {
			return 1
		}
		return 0
	case UnAddScalar:
		return 1
	case UnMulScalar:
		return p
	}
	panic("autodiff: unknown unary kind")
}

// UnaryKernel computes out[i] = f(x[i]) for the function k with parameters p, q.
// The float32 GELU is vecmath.GELU (to about 1e-7 of the float64 formula).
func UnaryKernel[T Float](k UnaryKind, out, x []T, p, q float64) {
	x = x[:len(out)]
	out32, f32 := any(out).([]float32)
	metal.ParallelFor(len(out), parallelGrain/8, func(lo, hi int) {
		if k == UnGELU && f32 {
			vecmath.GELU(out32[lo:hi], nil, any(x).([]float32)[lo:hi], nil)
			return
		}
		switch k {
		case UnNeg:
			for i := lo; i < hi; i++ {
				out[i] = -x[i]
			}
		case UnAddScalar:
			c := T(p)
			for i := lo; i < hi; i++ {
				out[i] = x[i] + c
			}
		case UnMulScalar:
			c := T(p)
			for i := lo; i < hi; i++ {
				out[i] = x[i] * c
			}
		case UnReLU:
			for i := lo; i < hi; i++ {
				out[i] = max(x[i], 0)
			}
		default:
			for i := lo; i < hi; i++ {
				out[i] = T(unaryScalar(k, float64(x[i]), p, q))
			}
		}
	})
}

// UnaryBackwardKernel computes dx[i] = g[i]·f'(x[i]) given y = f(x).
func UnaryBackwardKernel[T Float](k UnaryKind, dx, g, x, y []T, p, q float64) {
	g, x, y = g[:len(dx)], x[:len(dx)], y[:len(dx)]
	dx32, f32 := any(dx).([]float32)
	metal.ParallelFor(len(dx), parallelGrain/8, func(lo, hi int) {
		if k == UnGELU && f32 {
			geluBackward32(dx32[lo:hi], any(g).([]float32)[lo:hi], any(x).([]float32)[lo:hi])
			return
		}
		switch k {
		case UnNeg:
			for i := lo; i < hi; i++ {
				dx[i] = -g[i]
			}
		case UnAddScalar:
			copy(dx[lo:hi], g[lo:hi])
		case UnMulScalar:
			c := T(p)
			for i := lo; i < hi; i++ {
				dx[i] = g[i] * c
			}
		default:
			for i := lo; i < hi; i++ {
				dx[i] = g[i] * T(unaryDeriv(k, float64(x[i]), float64(y[i]), p, q))
			}
		}
	})
}

// geluBackward32 sets dx = g·gelu′(x) with vecmath.GELU, 256 elements at a
// time (the values it also computes go to a scratch row on the stack).
func geluBackward32(dx, g, x []float32) {
	var scratch [256]float32
	for i := 0; i < len(dx); i += len(scratch) {
		j := min(i+len(scratch), len(dx))
		d := dx[i:j]
		vecmath.GELU(scratch[:j-i], d, x[i:j], nil)
		for t, gv := range g[i:j] {
			d[t] *= gv
		}
	}
}

// Unary applies the elementwise function k (with parameters p, q) to x.
func Unary(k UnaryKind, x *Tensor, p, q float64) *Tensor {
	name := unaryNames[k]
	checkFloat(name, x)
	tm := startOp()
	out := Empty(x.dtype, x.shape...)
	path := metal.PathMetal
	switch {
	case tryDevice(name, unaryDeviceFor(k, []*Tensor{out, x}, x.Len()), func(d metal.Compute) error { return activationDevice(k, out, x, p, q, d) }):
	case x.dtype == Float32:
		path = metal.PathGo
		UnaryKernel(k, out.Float32s(), x.Float32s(), p, q)
	default:
		path = metal.PathGo
		UnaryKernel(k, out.Float64s(), x.Float64s(), p, q)
	}
	tm.done(name, path, 2*out.Len()*out.dtype.Size())
	return record(out, name, func(g *Tensor) {
		accumulate(x, func() *Tensor {
			dx := Empty(x.dtype, x.shape...)
			if tryDevice(name, unaryDeviceFor(k, []*Tensor{dx, g, x, out}, x.Len()), func(d metal.Compute) error { return activationBackwardDevice(k, dx, g, x, out, p, q, d) }) {
				return dx
			}
			if x.dtype == Float32 {
				UnaryBackwardKernel(k, dx.Float32s(), g.Float32s(), x.Float32s(), out.Float32s(), p, q)
			} else {
				UnaryBackwardKernel(k, dx.Float64s(), g.Float64s(), x.Float64s(), out.Float64s(), p, q)
			}
			return dx
		})
	}, x)
}

// Neg returns −x.
func Neg(x *Tensor) *Tensor { return Unary(UnNeg, x, 0, 0) }

// Exp returns eˣ.
func Exp(x *Tensor) *Tensor { return Unary(UnExp, x, 0, 0) }

// Log returns ln x.
func Log(x *Tensor) *Tensor { return Unary(UnLog, x, 0, 0) }

// Sqrt returns √x.
func Sqrt(x *Tensor) *Tensor { return Unary(UnSqrt, x, 0, 0) }

// Rsqrt returns 1/√x.
func Rsqrt(x *Tensor) *Tensor { return Unary(UnRsqrt, x, 0, 0) }

// Abs returns |x|.
func Abs(x *Tensor) *Tensor { return Unary(UnAbs, x, 0, 0) }

// Tanh returns tanh x.
func Tanh(x *Tensor) *Tensor { return Unary(UnTanh, x, 0, 0) }

// Sigmoid returns 1/(1+e^−x).
func Sigmoid(x *Tensor) *Tensor { return Unary(UnSigmoid, x, 0, 0) }

// ReLU returns max(x, 0).
func ReLU(x *Tensor) *Tensor { return Unary(UnReLU, x, 0, 0) }

// GELU returns x·Φ(x) with the exact (erf) Φ.
func GELU(x *Tensor) *Tensor { return Unary(UnGELU, x, 0, 0) }

// GELUTanh returns the tanh approximation of GELU.
func GELUTanh(x *Tensor) *Tensor { return Unary(UnGELUTanh, x, 0, 0) }

// SiLU returns x·σ(x).
func SiLU(x *Tensor) *Tensor { return Unary(UnSiLU, x, 0, 0) }

// Softplus returns ln(1+eˣ), taken as x above 20 where the two agree in float32.
func Softplus(x *Tensor) *Tensor { return Unary(UnSoftplus, x, 20, 0) }

// Pow returns x^p.
func Pow(x *Tensor, p float64) *Tensor { return Unary(UnPow, x, p, 0) }

// Clamp returns min(max(x, lo), hi).
func Clamp(x *Tensor, lo, hi float64) *Tensor { return Unary(UnClamp, x, lo, hi) }

// AddScalar returns x + c.
func AddScalar(x *Tensor, c float64) *Tensor { return Unary(UnAddScalar, x, c, 0) }

// MulScalar returns x × c.
func MulScalar(x *Tensor, c float64) *Tensor { return Unary(UnMulScalar, x, c, 0) }
