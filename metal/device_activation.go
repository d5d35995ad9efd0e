package metal

import "fmt"

// ActivationOp selects the function of [RunActivation] (the kernel's ACT_OP).
type ActivationOp uint32

// The activations.
const (
	ActGELU     ActivationOp = iota // x·Φ(x), the erf form
	ActGELUTanh                     // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
	ActSiLU                         // x·σ(x)
)

type actParams struct{ N uint32 }

// elementwise checks and dispatches a one-thread-per-element kernel over n
// elements whose last argument is its parameters.
func elementwise(d Compute, kernel string, consts []Constant, n int, args []Arg, needs ...need) error {
	if err := checkCount(kernel, n); err != nil {
		return err
	}
	if err := checkBuffers(kernel, needs...); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	return d.Dispatch(elementwiseLaunch(kernel, consts, n, append(args, Params(len(args), actParams{uint32(n)}))...))
}

// RunActivation writes out[i] = f(x[i]) for i < n. One launch (act_fwd_f32).
func RunActivation(d Compute, op ActivationOp, out, x *Buffer, n int) error {
	const kernel = "act_fwd_f32"
	if op > ActSiLU {
		return fmt.Errorf("%s: unknown activation %d", kernel, op)
	}
	return elementwise(d, kernel, []Constant{{Index: 0, Value: uint32(op)}}, n,
		[]Arg{Out(0, out), In(1, x)}, need{"out", out, n, false}, need{"x", x, n, false})
}

// RunActivationBackward writes dx[i] = g[i]·f′(x[i]) for i < n. One launch (act_bwd_f32).
func RunActivationBackward(d Compute, op ActivationOp, dx, g, x *Buffer, n int) error {
	const kernel = "act_bwd_f32"
	if op > ActSiLU {
		return fmt.Errorf("%s: unknown activation %d", kernel, op)
	}
	return elementwise(d, kernel, []Constant{{Index: 0, Value: uint32(op)}}, n,
		[]Arg{Out(0, dx), In(1, g), In(2, x)}, need{"dx", dx, n, false}, need{"g", g, n, false}, need{"x", x, n, false})
}

// RunSwiGLU writes out[i] = silu(gate[i])·up[i] for i < n. One launch (swiglu_fwd_f32).
func RunSwiGLU(d Compute, out, gate, up *Buffer, n int) error {
	return elementwise(d, "swiglu_fwd_f32", nil, n, []Arg{Out(0, out), In(1, gate), In(2, up)},
		need{"out", out, n, false}, need{"gate", gate, n, false}, need{"up", up, n, false})
}

// RunSwiGLUBackward writes the gradients of [RunSwiGLU] for the upstream gradient
// g: dgate = g·up·silu′(gate) and dup = g·silu(gate). One launch (swiglu_bwd_f32).
func RunSwiGLUBackward(d Compute, dgate, dup, g, gate, up *Buffer, n int) error {
	return elementwise(d, "swiglu_bwd_f32", nil, n,
		[]Arg{Out(0, dgate), Out(1, dup), In(2, g), In(3, gate), In(4, up)},
		need{"dgate", dgate, n, false}, need{"dup", dup, n, false}, need{"g", g, n, false},
		need{"gate", gate, n, false}, need{"up", up, n, false})
}
