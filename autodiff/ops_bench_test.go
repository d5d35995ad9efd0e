package autodiff

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/mlxtrain/mlxtrain/metal"
)

// Benchmarks of the op and tape machinery. Run them with, for instance:
//
//	CGO_ENABLED=0 go test ./autodiff -run '^$' -bench . -benchtime 2s
//
// The cross-entropy case allocates 2 × 262 MB: give it -benchtime 5x.

func benchThreads(b *testing.B, n int, fn func(b *testing.B)) {
	b.Run(fmt.Sprintf("threads=%d", n), func(b *testing.B) {
		prev := metal.Threads()
		metal.SetThreads(n)
		defer metal.SetThreads(prev)
		fn(b)
	})
}

func benchRandom32(n int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	xs := make([]float32, n)
	for i := range xs {
		xs[i] = float32(rng.NormFloat64())
	}
	return xs
}

// BenchmarkAdd1M is an elementwise Add of two 1M-element float32 tensors (12 MB
// moved per op), result released each time.
func BenchmarkAdd1M(b *testing.B) {
	const n = 1 << 20
	x := FromFloat32(benchRandom32(n, 1), n)
	y := FromFloat32(benchRandom32(n, 2), n)
	for _, th := range []int{1, 2} {
		benchThreads(b, th, func(b *testing.B) {
			b.SetBytes(3 * 4 * n)
			b.ReportAllocs()
			for b.Loop() {
				Add(x, y).Release()
			}
		})
	}
}

// BenchmarkSoftmaxCrossEntropy is the fused loss, forward and backward, on
// (2048, 32000) float32 logits: a language model's last step at vocabulary 32k.
func BenchmarkSoftmaxCrossEntropy(b *testing.B) {
	const rows, v = 2048, 32000
	logits := FromFloat32(benchRandom32(rows*v, 3), rows, v)
	ts := make([]int32, rows)
	for i := range ts {
		ts[i] = int32((i * 7919) % v)
	}
	targets := FromInt32(ts, rows)
	for _, th := range []int{1, 2} {
		benchThreads(b, th, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tp := NewTape()
				loss := CrossEntropy(tp.Watch(logits), targets, CrossEntropyOptions{})
				tp.Backward(loss)
				tp.Release()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(rows*v), "ns/logit")
		})
	}
}

// BenchmarkSoftmaxRows is the forward softmax alone on (2048, 4096) float32.
func BenchmarkSoftmaxRows(b *testing.B) {
	const rows, cols = 2048, 4096
	x := benchRandom32(rows*cols, 4)
	out := make([]float32, rows*cols)
	for _, th := range []int{1, 2} {
		benchThreads(b, th, func(b *testing.B) {
			b.SetBytes(2 * 4 * rows * cols)
			for b.Loop() {
				SoftmaxRows(out, x, rows, cols)
			}
		})
	}
}

// BenchmarkSumRowsCols sums a (2048, 2048) float32 matrix along each axis.
func BenchmarkSumRowsCols(b *testing.B) {
	const n = 2048
	x := FromFloat32(benchRandom32(n*n, 5), n, n)
	for _, axis := range []int{1, 0} {
		b.Run(fmt.Sprintf("axis=%d", axis), func(b *testing.B) {
			b.SetBytes(4 * n * n)
			for b.Loop() {
				Sum(x, []int{axis}, false).Release()
			}
		})
	}
}

// tapeOps is the number of ops BenchmarkTape records per iteration.
const tapeOps = 1000

// BenchmarkTape records 1000 tiny ops (Add and Mul on 4-element float32 tensors)
// on a tape, runs Backward, then Release: the fixed cost of a node, reported per
// node. The target is at most 1 µs per op.
func BenchmarkTape(b *testing.B) {
	x := FromFloat32([]float32{1, 2, 3, 4}, 4)
	c := FromFloat32([]float32{0.5, 0.25, 0.125, 0.5}, 4)
	forward := func(tp *Tape) *Tensor {
		h, k := tp.Watch(x), tp.Watch(c)
		for range tapeOps / 2 {
			h = Mul(Add(h, k), k)
		}
		return h
	}
	perNode := func(b *testing.B) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/tapeOps, "ns/node")
	}
	b.Run("forward+backward+release", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			tp := NewTape()
			h := forward(tp)
			tp.BackwardWith(h, Full(Float32, 1, 4))
			tp.Release()
		}
		perNode(b)
	})
	b.Run("forward+release", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			tp := NewTape()
			forward(tp)
			tp.Release()
		}
		perNode(b)
	})
	b.Run("untracked", func(b *testing.B) {
		// The same ops with no tape, each result released at once: the op's own cost.
		b.ReportAllocs()
		for b.Loop() {
			h := x.Clone()
			for range tapeOps / 2 {
				a := Add(h, c)
				h.Release()
				h = Mul(a, c)
				a.Release()
			}
			h.Release()
		}
		perNode(b)
	})
}
