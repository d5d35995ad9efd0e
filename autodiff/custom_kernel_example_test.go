package autodiff_test

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/mlxtrain/mlxtrain/autodiff"
)

// A fused scaled squared ReLU, y = s·max(x, 0)², defined from Go: a kernel for
// the device, a reference for the CPU, and a backward that is itself a custom
// kernel (dx = g·2s·max(x, 0)).
var (
	sqReLU = autodiff.NewCustomOp(autodiff.CustomKernel{
		Name:  "example_sq_relu",
		Entry: "example_sq_relu_f32",
		Source: `
kernel void example_sq_relu_f32(const device float* x [[buffer(0)]],
                                device float* y [[buffer(1)]],
                                constant custom_params& p [[buffer(2)]],
                                uint i [[thread_position_in_grid]]) {
    if (i < p.n) {
        float r = max(x[i], 0.0f);
        y[i] = p.p[0] * r * r;
    }
}`,
		Reference: func(y []float64, in [][]float64, p []float32) {
			for i, x := range in[0] {
				r := math.Max(x, 0)
				y[i] = float64(p[0]) * r * r
			}
		},
		Backward: func(g, y *autodiff.Tensor, in []*autodiff.Tensor, p []float32) []*autodiff.Tensor {
			return []*autodiff.Tensor{sqReLUGrad.Apply(p, g, in[0])}
		},
		SelfTest: autodiff.CustomTest{Params: []float32{1.5}},
	})

	sqReLUGrad = autodiff.NewCustomOp(autodiff.CustomKernel{
		Name:  "example_sq_relu_grad",
		Entry: "example_sq_relu_grad_f32",
		Source: `
kernel void example_sq_relu_grad_f32(const device float* g [[buffer(0)]],
                                     const device float* x [[buffer(1)]],
                                     device float* dx [[buffer(2)]],
                                     constant custom_params& p [[buffer(3)]],
                                     uint i [[thread_position_in_grid]]) {
    if (i < p.n) {
        dx[i] = g[i] * 2.0f * p.p[0] * max(x[i], 0.0f);
    }
}`,
		Reference: func(dx []float64, in [][]float64, p []float32) {
			g, x := in[0], in[1]
			for i := range dx {
				dx[i] = g[i] * 2 * float64(p[0]) * math.Max(x[i], 0)
			}
		},
		SelfTest: autodiff.CustomTest{Shapes: [][]int{{257}, {257}}, Params: []float32{1.5}},
	})
)

// Train y = sqReLU(x·W) towards a target for a few steps of gradient descent.
// With MLXTRAIN_DEVICE=sim (or on a Mac) the op runs its kernel, compiled at
// first use and checked against the reference by its self-test; elsewhere the
// reference runs. The losses are the same either way.
func ExampleNewCustomOp() {
	r := rand.New(rand.NewPCG(1, 2))
	randn := func(shape ...int) *autodiff.Tensor {
		t := autodiff.Empty(autodiff.Float32, shape...)
		for i := range t.Float32s() {
			t.Float32s()[i] = float32(r.NormFloat64())
		}
		return t
	}
	x, target := randn(32, 8), randn(32, 4)
	for i, v := range target.Float32s() {
		target.Float32s()[i] = v * v // squared ReLU outputs are ≥ 0
	}
	w := randn(8, 4)
	scale := []float32{0.5}
	for step := range 30 {
		tp := autodiff.NewTape()
		y := sqReLU.Apply(scale, autodiff.MatMul(x, tp.Watch(w)))
		diff := autodiff.Sub(y, target)
		loss := autodiff.MeanAll(autodiff.Mul(diff, diff))
		tp.Backward(loss)
		if step%10 == 0 || step == 29 {
			fmt.Printf("step %2d loss %.3f\n", step, loss.Item())
		}
		g := tp.Grad(w).Float32s()
		for i := range w.Float32s() {
			w.Float32s()[i] -= 0.2 * g[i]
		}
		tp.Release()
	}
	// Output:
	// step  0 loss 35.763
	// step 10 loss 2.628
	// step 20 loss 2.347
	// step 29 loss 1.983
}
