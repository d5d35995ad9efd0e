package quant

import (
	"time"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// The device (Metal, or the simulator) paths of the quantized ops: the kernels
// of shaders/quant.metal on the weight's own tensors (they live in the device's
// memory while an accelerator is open), nothing dequantized to memory.
//
//   - "quantized_matmul" (M, N, K): its device implementation comes first, for
//     y = x·Wᵀ and the input gradient dx = g·W of Weight.MatMulT;
//   - "quantized_embedding" (tokens, dim): Weight.Gather.
//
// Thresholds are estimates (no Mac has measured them): a matrix of at least
// 256×256 goes to the GPU whatever the rows (decode is a matrix-vector product
// that reads the packed weights once); MLXTRAIN_QUANTIZED_MATMUL_MIN_N and
// MLXTRAIN_METAL_MIN override them.
var qembOp = metal.Kernels.Register("quantized_embedding", []string{"tokens", "dim"},
	&metal.Impl{Path: metal.PathMetal, Available: metal.Offloading, Min: []int{1, 64}, SelfTest: quantSelfTest},
	&metal.Impl{Path: metal.PathGo})

func qmmDeviceImpl() *metal.Impl {
	return &metal.Impl{Path: metal.PathMetal, Available: metal.Offloading, Min: []int{1, 256, 256}, SelfTest: quantSelfTest}
}

// cpuImpl is op.Pick among the implementations that run on slices: the first
// available one whose thresholds sizes meet, else the last.
func cpuImpl(op *metal.Op, sizes ...int) *metal.Impl {
	for _, im := range op.Impls {
		if im.Path == metal.PathMetal || im.Fn == nil || im.Available != nil && !im.Available() {
			continue
		}
		ok := true
		for d, m := range im.Min {
			if d < len(sizes) && sizes[d] < m {
				ok = false
			}
		}
		if ok {
			return im
		}
	}
	return op.Impls[len(op.Impls)-1]
}

// device returns the accelerator when op picks its device implementation for
// sizes and every tensor (the weight's included) lives in its memory, else nil.
func (w *Weight) device(op *metal.Op, ts []*autodiff.Tensor, sizes ...int) metal.Compute {
	d := autodiff.DeviceFor(op, append(ts, w.Scales, w.Biases), sizes...)
	if d == nil || !metal.Owns(d, w.Packed.Buffer()) {
		return nil
	}
	return d
}

// onDevice is the weight's matrix in device buffers.
func (w *Weight) onDevice() *metal.QuantMatrix {
	return &metal.QuantMatrix{Packed: w.Packed.Buffer(), Scales: w.Scales.Buffer(), Biases: w.Biases.Buffer(),
		N: w.Rows, K: w.Cols, Bits: w.Bits, GroupSize: w.GroupSize}
}

// launched reports whether a device launch was recorded (and profiles it);
// otherwise it warns once and the caller runs the CPU path.
func launched(op string, start time.Time, bytes int64, err error) bool {
	if !autodiff.Launched(op, err) {
		return false
	}
	if !start.IsZero() {
		metal.RecordOp(op, metal.PathMetal, time.Since(start), bytes)
	}
	return true
}

func profileStart() time.Time {
	if metal.Profiling() {
		return time.Now()
	}
	return time.Time{}
}

// matMulTDevice records y = x·Wᵀ on the device, if it takes it.
func (w *Weight) matMulTDevice(y, x *autodiff.Tensor, rows int) bool {
	d := w.device(qmmOp, []*autodiff.Tensor{x, y}, rows, w.Rows, w.Cols)
	if d == nil {
		return false
	}
	start := profileStart()
	return launched("quantized_matmul", start, 4*int64(rows*(w.Cols+w.Rows))+w.Bytes(),
		metal.RunQuantMatMulT(d, y.Buffer(), x.Buffer(), w.onDevice(), rows))
}

// matMulDevice records dx = g·W on the device, if it takes it.
func (w *Weight) matMulDevice(dx, g *autodiff.Tensor, rows int) bool {
	d := w.device(qmmOp, []*autodiff.Tensor{dx, g}, rows, w.Rows, w.Cols)
	if d == nil {
		return false
	}
	start := profileStart()
	return launched("quantized_matmul", start, 4*int64(rows*(w.Cols+w.Rows))+w.Bytes(),
		metal.RunQuantMatMul(d, dx.Buffer(), g.Buffer(), w.onDevice(), rows))
}

// gatherDevice records the embedding lookup on the device, if it takes it.
func (w *Weight) gatherDevice(out, ids *autodiff.Tensor) bool {
	d := w.device(qembOp, []*autodiff.Tensor{out, ids}, ids.Len(), w.Cols)
	if d == nil {
		return false
	}
	start := profileStart()
	return launched("quantized_embedding", start, 4*int64(out.Len()+ids.Len()),
		metal.RunQuantGather(d, out.Buffer(), ids.Buffer(), w.onDevice(), ids.Len()))
}

// quantSelfTest runs the quantized kernels on small weights of 3 and 4 bits
// against the CPU kernels: products of 2 and 19 rows (the matrix-vector and the
// tiled kernel), the input gradient, and the lookup.
func quantSelfTest() error {
	return autodiff.DeviceSelfTest(func(d metal.Compute) ([]*autodiff.Tensor, error) {
		r := autodiff.SelfTestRand()
		var outs []*autodiff.Tensor
		for _, p := range []Params{{GroupSize: 32, Bits: 3}, {GroupSize: 64, Bits: 4}} {
			f := autodiff.RandomTensor(r, -1, 1, 37, 128)
			w, err := QuantizeTensor(p, f)
			f.Release()
			if err != nil {
				return outs, err
			}
			ids := autodiff.FromInt32([]int32{3, 0, 36, 3, 17}, 5)
			for _, rows := range []int{2, 19} {
				x, g := autodiff.RandomTensor(r, -1, 1, rows, 128), autodiff.RandomTensor(r, -1, 1, rows, 37)
				y, dx := autodiff.Empty(autodiff.Float32, rows, 37), autodiff.Empty(autodiff.Float32, rows, 128)
				outs = append(outs, y, dx)
				if d == nil {
					// the unprofiled references: a self-test is no op call
					referenceMatMul(y.Float32s(), x.Float32s(), rows, &w.Matrix)
					referenceMatMulGrad(dx.Float32s(), g.Float32s(), rows, &w.Matrix)
				} else {
					err = metal.RunQuantMatMulT(d, y.Buffer(), x.Buffer(), w.onDevice(), rows)
					if err == nil {
						err = metal.RunQuantMatMul(d, dx.Buffer(), g.Buffer(), w.onDevice(), rows)
					}
				}
				x.Release()
				g.Release()
				if err != nil {
					return outs, err
				}
			}
			e := autodiff.Empty(autodiff.Float32, 5, 128)
			outs = append(outs, e)
			if d == nil {
				Gather(e.Float32s(), &w.Matrix, ids.Int32s())
			} else {
				err = metal.RunQuantGather(d, e.Buffer(), ids.Buffer(), w.onDevice(), 5)
			}
			if d != nil {
				// the launches read w and ids: release them once they are done
				if serr := d.Synchronize(); err == nil {
					err = serr
				}
			}
			ids.Release()
			w.release()
			if err != nil {
				return outs, err
			}
		}
		return outs, nil
	})()
}

func (w *Weight) release() {
	w.Packed.Release()
	w.Scales.Release()
	w.Biases.Release()
}

// referenceMatMulGrad is dx = g·W from the dequantized matrix, accumulating in
// float64.
func referenceMatMulGrad(dx, g []float32, rows int, m *Matrix) {
	w := m.Dequantize()
	K, N := m.Cols, m.Rows
	acc := make([]float64, K)
	for r := range rows {
		clear(acc)
		for o := range N {
			gv := float64(g[r*N+o])
			for k := range K {
				acc[k] += gv * float64(w[o*K+k])
			}
		}
		for k := range K {
			dx[r*K+k] = float32(acc[k])
		}
	}
}
