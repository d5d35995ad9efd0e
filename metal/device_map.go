package metal

import "fmt"

// MapOp selects the function of [RunMap] (map.metal's MAP_OP): the numbering of
// autodiff.UnaryKind.
type MapOp uint32

// The functions; p and q are RunMap's parameters.
const (
	MapNeg       MapOp = iota // −x
	MapExp                    // eˣ
	MapLog                    // ln x
	MapSqrt                   // √x
	MapRsqrt                  // 1/√x
	MapAbs                    // |x| (gradient 0 at 0)
	MapTanh                   // tanh x
	MapSigmoid                // 1/(1+e⁻ˣ)
	MapReLU                   // max(x, 0) (gradient 0 at 0)
	MapGELU                   // x·Φ(x), the erf form
	MapGELUTanh               // the tanh approximation of GELU
	MapSiLU                   // x·σ(x)
	MapSoftplus               // ln(1+eˣ), x above p
	MapPow                    // xᵖ, with math.Pow's special cases (a negative x to an integer p)
	MapClamp                  // min(max(x, p), q) (gradient 1 strictly inside)
	MapAddScalar              // x + p
	MapMulScalar              // x·p
)

type mapParams struct {
	N    uint32
	P, Q float32
}

func mapCheck(kernel string, op MapOp) error {
	if op > MapMulScalar {
		return fmt.Errorf("%s: no kernel for function %d", kernel, op)
	}
	return nil
}

// RunMap writes out[i] = f(x[i]) for i < n. One launch (map_f32).
func RunMap(d Compute, op MapOp, out, x *Buffer, n int, p, q float32) error {
	const kernel = "map_f32"
	if err := mapCheck(kernel, op); err != nil {
		return err
	}
	if err := checkCount(kernel, n); err != nil {
		return err
	}
	if err := checkBuffers(kernel, need{"out", out, n, false}, need{"x", x, n, false}); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	return d.Dispatch(elementwiseLaunch(kernel, opConst(uint32(op)), n, Out(0, out), In(1, x), Params(2, mapParams{uint32(n), p, q})))
}

// RunMapBackward writes dx[i] = g[i]·f′(x[i]) for i < n, with y = f(x) the
// output of [RunMap]. One launch (map_bwd_f32).
func RunMapBackward(d Compute, op MapOp, dx, g, x, y *Buffer, n int, p, q float32) error {
	const kernel = "map_bwd_f32"
	if err := mapCheck(kernel, op); err != nil {
		return err
	}
	if err := checkCount(kernel, n); err != nil {
		return err
	}
	if err := checkBuffers(kernel, need{"dx", dx, n, false}, need{"g", g, n, false}, need{"x", x, n, false}, need{"y", y, n, false}); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	return d.Dispatch(elementwiseLaunch(kernel, opConst(uint32(op)), n, Out(0, dx), In(1, g), In(2, x), In(3, y), Params(4, mapParams{uint32(n), p, q})))
}
