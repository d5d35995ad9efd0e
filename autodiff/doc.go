// Package autodiff is the tensor and the reverse-mode tape.
//
// A [Tensor] is a shape, a dtype and a reference-counted [metal.Buffer]. Ops are plain
// functions (Add, MatMul, Softmax, ...) that compute eagerly. When an input is tracked
// by a [Tape] (made with [Tape.Watch], or computed from such a tensor) the op records a
// node on that tape with its vector-Jacobian product, and [Tape.Backward] walks the
// nodes in reverse. There is no global recording mode: a tensor that no tape tracks
// records nothing, so training and generation can share parameters concurrently.
//
// Every op is two things in one file: a kernel on slices (exported where other
// packages reuse it, generic over float32 and float64) and the differentiable op
// that wraps it. Ownership is explicit: a tape owns the tensors its ops produced and
// returns their buffers to the pool on [Tape.Release]; a tensor made outside a tape
// belongs to its caller, who may [Tensor.Release] it early or leave it to the GC.
//
// Shape mismatches are programmer errors and panic with the op and both shapes.
package autodiff
