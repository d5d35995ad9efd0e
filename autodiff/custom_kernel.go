package autodiff

import (
	"fmt"
	"strings"
	"sync"

	"github.com/mlxtrain/mlxtrain/metal"
)

// CustomKernelHeader is compiled in front of every CustomKernel's Source (after
// package shaders' common.metal helpers). It declares the kernel's parameter
// block: the number of output elements, the output's shape, each input's
// element count, and the float parameters the call passes.
const CustomKernelHeader = `struct custom_params {
    uint n;
    uint rank;
    uint shape[6];
    uint in_n[8];
    float p[8];
};
`

// Limits of a custom kernel's call.
const (
	CustomMaxInputs = 8 // inputs
	CustomMaxParams = 8 // float parameters
	CustomMaxRank   = 6 // the output's rank
)

// CustomKernel defines an op from outside the package, like MLX's metal_kernel
// wrapped in a custom_function: an MSL kernel for the device (Metal, or the
// simulator with MLXTRAIN_DEVICE=sim), a Go reference for the CPU, and a
// backward built from other ops (custom ones included). [NewCustomOp] registers
// it in metal.Kernels like the built-in ops: its device implementation is
// picked above a threshold (MLXTRAIN_<NAME>_MIN_N, MLXTRAIN_METAL_MIN), its
// source is compiled on the device at first use, and a self-test compares the
// kernel with the reference then; a kernel that does not compile or fails is
// disabled with a warning and the CPU runs the op.
//
// The kernel's signature: the inputs (float32) at [[buffer(0)]] ... [[buffer(k-1)]]
// (const device float*), the output at [[buffer(k)]] (device float*), and
// `constant custom_params& p [[buffer(k+1)]]` (see [CustomKernelHeader]). The
// grid has one thread per output element, in threadgroups of Threads (the last
// one partly past p.n: guard with `if (i < p.n)`). Source must keep to the
// portable MSL subset of package shaders.
type CustomKernel struct {
	Name   string // the op's name in the registry and the profile
	Source string // MSL that defines Entry
	Entry  string // the kernel function
	// Threads per threadgroup; 256 when 0.
	Threads int
	// Shape gives the output's shape from the inputs' shapes; nil: the first
	// input's shape.
	Shape func(in [][]int) []int
	// Reference computes the output on the CPU: out has the output's elements,
	// in[i] input i's, p the call's parameters.
	Reference func(out []float64, in [][]float64, p []float32)
	// Backward returns the gradient of each input (nil for one without) from
	// the output's gradient g, the output and the inputs; nil: the op is not
	// differentiable. It runs while the tape runs backward, so it may call any
	// op, this one's backward kernels included; it owns the tensors it returns
	// and must not release g, out or in.
	Backward func(g, out *Tensor, in []*Tensor, p []float32) []*Tensor
	// Min is the device path's threshold in output elements; 1<<14 when 0.
	Min int
	// SelfTest describes the self-test's inputs: their shapes (one input of
	// 257 elements when nil), the range of their values ([-2, 2) when zero) and
	// the parameters.
	SelfTest CustomTest
}

// CustomTest is the input of a custom kernel's self-test.
type CustomTest struct {
	Shapes [][]int
	Lo, Hi float64
	Params []float32
}

// CustomOp is a registered CustomKernel.
type CustomOp struct {
	k  CustomKernel
	op *metal.Op

	mu    sync.Mutex
	added map[metal.Compute]error // AddSource's outcome by device
}

// NewCustomOp checks k and registers it as op k.Name (a name may be registered
// once per process; register at package initialization or once by sync.Once).
func NewCustomOp(k CustomKernel) *CustomOp {
	switch {
	case k.Name == "" || k.Entry == "" || k.Source == "":
		panic("autodiff: NewCustomOp: Name, Entry and Source are required")
	case k.Reference == nil:
		panic("autodiff: NewCustomOp " + k.Name + ": no Reference")
	case !strings.Contains(k.Source, k.Entry):
		panic("autodiff: NewCustomOp " + k.Name + ": Source does not mention Entry " + k.Entry)
	}
	if k.Threads <= 0 {
		k.Threads = 256
	}
	if k.Min <= 0 {
		k.Min = 1 << 14
	}
	c := &CustomOp{k: k, added: map[metal.Compute]error{}}
	dev := &metal.Impl{Path: metal.PathMetal, Available: metal.Offloading, Min: []int{k.Min}, SelfTest: c.selfTest}
	c.op = metal.Kernels.Register(k.Name, []string{"n"}, dev, &metal.Impl{Path: metal.PathReference})
	return c
}

// Op returns the op's registry entry.
func (c *CustomOp) Op() *metal.Op { return c.op }

// Name is the op's name.
func (c *CustomOp) Name() string { return c.k.Name }

// Apply runs the op on inputs of one float dtype with up to 8 float parameters,
// recording it on the inputs' tape.
func (c *CustomOp) Apply(params []float32, in ...*Tensor) *Tensor {
	name := c.k.Name
	if len(in) == 0 || len(in) > CustomMaxInputs {
		panic(fmt.Sprintf("autodiff: %s: %d inputs (1 to %d)", name, len(in), CustomMaxInputs))
	}
	if len(params) > CustomMaxParams {
		panic(fmt.Sprintf("autodiff: %s: %d parameters (at most %d)", name, len(params), CustomMaxParams))
	}
	checkFloat(name, in...)
	shape := c.outShape(in)
	tm := startOp()
	out := Empty(in[0].dtype, shape...)
	bytes := out.Len()
	for _, t := range in {
		bytes += t.Len()
	}
	if d := c.device(in, out); d != nil && Launched(name, c.launch(d, out, in, params)) {
		tm.done(name, metal.PathMetal, 4*bytes)
	} else {
		c.reference(out, in, params)
		tm.done(name, metal.PathReference, out.dtype.Size()*bytes)
	}
	if c.k.Backward == nil {
		return out
	}
	p := append([]float32(nil), params...)
	return record(out, name, func(g *Tensor) {
		var grads []*Tensor
		need := false
		for _, t := range in {
			need = need || needsGrad(t)
		}
		if !need {
			return
		}
		grads = c.k.Backward(g, out, in, p)
		if len(grads) != len(in) {
			panic(fmt.Sprintf("autodiff: %s: Backward returned %d gradients for %d inputs", name, len(grads), len(in)))
		}
		for i, t := range in {
			gi := grads[i]
			if gi == nil {
				continue
			}
			if !sameShape(gi.shape, t.shape) {
				panic(fmt.Sprintf("autodiff: %s: gradient %d has shape %v, input %v", name, i, gi.shape, t.shape))
			}
			if needsGrad(t) {
				accumulate(t, func() *Tensor { return gi })
			} else {
				gi.Release()
			}
		}
	}, in...)
}

func (c *CustomOp) outShape(in []*Tensor) []int {
	if c.k.Shape == nil {
		return append([]int(nil), in[0].shape...)
	}
	shapes := make([][]int, len(in))
	for i, t := range in {
		shapes[i] = t.shape
	}
	return c.k.Shape(shapes)
}

// device returns the device to run on, with the source compiled there, or nil.
func (c *CustomOp) device(in []*Tensor, out *Tensor) metal.Compute {
	if len(out.shape) > CustomMaxRank {
		return nil
	}
	ts := append([]*Tensor{out}, in...)
	d := DeviceFor(c.op, ts, out.Len())
	if d == nil || out.dtype != Float32 {
		return nil
	}
	if err := c.compile(d); err != nil {
		c.op.Disable(metal.PathMetal, "does not compile: "+err.Error())
		metal.Warnf("%s: the kernel does not compile on the device (%v); the CPU runs the op", c.k.Name, err)
		return nil
	}
	return d
}

// compile adds the op's source to d once.
func (c *CustomOp) compile(d metal.Compute) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err, done := c.added[d]; done {
		return err
	}
	err := metal.AddSource(d, "custom_"+c.k.Name, CustomKernelHeader+c.k.Source)
	c.added[d] = err
	return err
}

type customParams struct {
	N, Rank uint32
	Shape   [CustomMaxRank]uint32
	InN     [CustomMaxInputs]uint32
	P       [CustomMaxParams]float32
}

// launch records the kernel's launch on d for float32 tensors in d's memory.
func (c *CustomOp) launch(d metal.Compute, out *Tensor, in []*Tensor, params []float32) error {
	n := out.Len()
	if n == 0 {
		return nil
	}
	p := customParams{N: uint32(n), Rank: uint32(len(out.shape))}
	for i, s := range out.shape {
		p.Shape[i] = uint32(s)
	}
	for i, t := range in {
		p.InN[i] = uint32(t.Len())
	}
	copy(p.P[:], params)
	args := make([]metal.Arg, 0, len(in)+2)
	for i, t := range in {
		args = append(args, metal.In(i, t.buf))
	}
	args = append(args, metal.Out(len(in), out.buf), metal.Params(len(in)+1, p))
	th := c.k.Threads
	return d.Dispatch(&metal.Launch{
		Kernel:  c.k.Entry,
		Groups:  [3]int{(n + th - 1) / th, 1, 1},
		Threads: [3]int{th, 1, 1},
		Args:    args,
	})
}

// reference runs the Go reference into out.
func (c *CustomOp) reference(out *Tensor, in []*Tensor, params []float32) {
	vals := make([][]float64, len(in))
	for i, t := range in {
		if t.dtype == Float64 {
			vals[i] = t.Float64s()
		} else {
			vals[i] = t.Float64Values()
		}
	}
	if out.dtype == Float64 {
		c.k.Reference(out.Float64s(), vals, params)
		return
	}
	res := make([]float64, out.Len())
	c.k.Reference(res, vals, params)
	o := out.Float32s()
	for i, v := range res {
		o[i] = float32(v)
	}
}

// selfTest compares the kernel with the reference on the self-test's inputs.
func (c *CustomOp) selfTest() error {
	t := c.k.SelfTest
	shapes := t.Shapes
	if shapes == nil {
		shapes = [][]int{{257}}
	}
	lo, hi := t.Lo, t.Hi
	if lo == 0 && hi == 0 {
		lo, hi = -2, 2
	}
	return DeviceSelfTest(func(d metal.Compute) ([]*Tensor, error) {
		r := SelfTestRand()
		in := make([]*Tensor, len(shapes))
		for i, s := range shapes {
			in[i] = RandomTensor(r, lo, hi, s...)
		}
		defer releaseAll(in)
		out := Empty(Float32, c.outShape(in)...)
		if d == nil {
			c.reference(out, in, t.Params)
			return []*Tensor{out}, nil
		}
		if err := c.compile(d); err != nil {
			return []*Tensor{out}, err
		}
		return []*Tensor{out}, c.launch(d, out, in, t.Params)
	})()
}
