package attention

import (
	"math/rand/v2"
	"testing"

	"github.com/mlxtrain/mlxtrain/autodiff"
)

// BenchmarkAttention: B=1, H=8, T=2048, D=64, causal, float32, forward and
// forward+backward, flash against the reference that materialises the scores.
// GFLOP/s counts the visible half of the scores (2 matmuls forward, 5 backward);
// cpu-s/op is the process CPU time per op, steadier than wall time on a shared
// machine.
//
//	go test ./attention -run '^$' -bench Attention -benchtime 3x
func BenchmarkAttention(b *testing.B) {
	const B, H, T, D = 1, 8, 2048, 64
	c := attnCase{B: B, Tq: T, Tk: T, Hq: H, Hkv: H, D: D, opt: Options{Causal: true}}
	d := c.dims()
	rng := rand.New(rand.NewPCG(1, 1))
	q := to32(normals(rng, B*T*H*D))
	k := to32(normals(rng, len(q)))
	v := to32(normals(rng, len(q)))
	dout := to32(normals(rng, len(q)))
	out, lse := make([]float32, len(q)), make([]float32, B*H*T)
	dq, dk, dv := make([]float32, len(q)), make([]float32, len(q)), make([]float32, len(q))
	run := func(name string, matmuls int, f func()) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			cpu := cpuSeconds()
			for b.Loop() {
				f()
			}
			flop := float64(matmuls) * 2 * B * H * D * T * (T + 1) / 2
			b.ReportMetric(flop*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			if cpu >= 0 {
				b.ReportMetric((cpuSeconds()-cpu)/float64(b.N), "cpu-s/op")
			}
		})
	}
	run("flash/forward", 2, func() { FlashForward(out, lse, q, k, v, d, c.opt) })
	run("flash/forward+backward", 7, func() {
		FlashForward(out, lse, q, k, v, d, c.opt)
		FlashBackward(dq, dk, dv, q, k, v, out, dout, lse, d, c.opt)
	})
	shape := []int{B, T, H, D}
	qt, kt, vt := autodiff.FromFloat32(q, shape...), autodiff.FromFloat32(k, shape...), autodiff.FromFloat32(v, shape...)
	seed := autodiff.FromFloat32(dout, shape...)
	run("flash/op+tape", 7, func() {
		tp := autodiff.NewTape()
		o := FlashAttention(tp.Watch(qt), tp.Watch(kt), tp.Watch(vt), c.opt)
		tp.BackwardWith(o, seed.Clone())
		tp.Release()
	})
	run("reference/forward", 2, func() { SDPAForward(out, q, k, v, d, c.opt) })
	run("reference/forward+backward", 7, func() {
		SDPAForward(out, q, k, v, d, c.opt)
		SDPABackward(dq, dk, dv, q, k, v, dout, d, c.opt)
	})
}

func BenchmarkRoPE(b *testing.B) {
	const B, S, H, D = 1, 2048, 8, 64
	x := to32(normals(rand.New(rand.NewPCG(1, 1)), B*S*H*D))
	b.ReportAllocs()
	b.SetBytes(int64(2 * 4 * len(x)))
	for b.Loop() {
		RoPEForward(x, x, B, S, H, D, RoPEOptions{})
	}
}

// BenchmarkPackedAttentionTinyGPT is the attention of one layer of the tiny GPT
// of models' BenchmarkTinyGPTStep: packed q, k, v (16, 128, 3·128), 4 heads of
// 32, causal, forward and backward through the tape, as a training step runs it.
// cpu-ms/op is the process CPU time per op.
//
//	MLXTRAIN_THREADS=1 go test ./attention -run '^$' -bench PackedAttentionTinyGPT -count 5
func BenchmarkPackedAttentionTinyGPT(b *testing.B) {
	const B, T, H, D = 16, 128, 4, 32
	rng := rand.New(rand.NewPCG(1, 1))
	qkv := autodiff.FromFloat32(to32(normals(rng, B*T*3*H*D)), B, T, 3*H*D)
	seed := autodiff.FromFloat32(to32(normals(rng, B*T*H*D)), B, T, H, D)
	b.ReportAllocs()
	cpu := cpuSeconds()
	for b.Loop() {
		tp := autodiff.NewTape()
		o := packedAttention(tp.Watch(qkv), H, H, D, Options{Causal: true})
		tp.BackwardWith(o, seed.Clone())
		tp.Release()
	}
	if cpu >= 0 {
		b.ReportMetric((cpuSeconds()-cpu)*1e3/float64(b.N), "cpu-ms/op")
	}
}

// BenchmarkPackedAttentionTinyGPTCold is BenchmarkPackedAttentionTinyGPT with
// the caches evicted before each op (64 MiB written), as in a training step where
// the other layers' work runs between an attention's forward and backward (a
// write to each of its cache lines);
// cpu-ms/op counts the attention alone.
//
//	MLXTRAIN_THREADS=1 go test ./attention -run '^$' -bench PackedAttentionTinyGPTCold -count 5
func BenchmarkPackedAttentionTinyGPTCold(b *testing.B) {
	const B, T, H, D = 16, 128, 4, 32
	rng := rand.New(rand.NewPCG(1, 1))
	qkv := autodiff.FromFloat32(to32(normals(rng, B*T*3*H*D)), B, T, 3*H*D)
	seed := autodiff.FromFloat32(to32(normals(rng, B*T*H*D)), B, T, H, D)
	evict := make([]byte, 64<<20)
	b.ReportAllocs()
	cpu := 0.0
	for b.Loop() {
		tp := autodiff.NewTape()
		for j := 0; j < len(evict); j += 64 {
			evict[j]++
		}
		c0 := cpuSeconds()
		o := packedAttention(tp.Watch(qkv), H, H, D, Options{Causal: true})
		c1 := cpuSeconds()
		for j := 0; j < len(evict); j += 64 {
			evict[j]++
		}
		c2 := cpuSeconds()
		tp.BackwardWith(o, seed.Clone())
		cpu += c1 - c0 + cpuSeconds() - c2
		tp.Release()
	}
	b.ReportMetric(cpu*1e3/float64(b.N), "cpu-ms/op")
}

// BenchmarkProjectQKV is the packed q/k/v projection of the tiny GPT forward
// (2048 rows, 128 → 3·128, with biases), as a training step runs it.
// cpu-ms/op is the process CPU time per op.
//
//	MLXTRAIN_THREADS=1 go test ./attention -run '^$' -bench ProjectQKV -count 5
func BenchmarkProjectQKV(b *testing.B) {
	const rows, d = 2048, 128
	rng := rand.New(rand.NewPCG(1, 1))
	x := autodiff.FromFloat32(to32(normals(rng, rows*d)), 16, rows/16, d)
	var ws, bs [3]*autodiff.Tensor
	for i := range ws {
		ws[i] = autodiff.FromFloat32(to32(normals(rng, d*d)), d, d)
		bs[i] = autodiff.FromFloat32(to32(normals(rng, d)), d)
	}
	b.ReportAllocs()
	cpu := cpuSeconds()
	for b.Loop() {
		projectQKV(x, ws[0], ws[1], ws[2], bs[0], bs[1], bs[2]).Release()
	}
	if cpu >= 0 {
		b.ReportMetric((cpuSeconds()-cpu)*1e3/float64(b.N), "cpu-ms/op")
	}
}
