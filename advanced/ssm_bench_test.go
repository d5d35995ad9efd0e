package advanced

import (
	"fmt"
	"math/rand/v2"
	"testing"

	ad "github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// BenchmarkSelectiveScan: forward + backward of the selective scan, B=4, D=256,
// N=16, float32, at L=512 and L=2048.
//
//   - fused: SelectiveScanForward (keeping chunk checkpoints) and
//     SelectiveScanBackward, at the configured worker count and at one worker;
//     B/op is the kernels' own working memory, saved-B the checkpoints kept
//     between forward and backward, cpu-s/op the process CPU time;
//   - fused-go-1thread: the same on the Go loops (no assembly), one worker;
//   - op: the same through SelectiveScan on a tape; pool-B is the high-water mark
//     of pooled tensor memory above the inputs (output, checkpoints, gradients,
//     the seed);
//   - reference: the sequential reference that stores every state (one worker).
//
// Run it with
//
//	go test ./advanced -run '^$' -bench SelectiveScan -benchtime 3x
func BenchmarkSelectiveScan(b *testing.B) {
	for _, L := range []int{512, 2048} {
		d := SSMDims{Batch: 4, Len: L, Inner: 256, State: 16}
		rng := rand.New(rand.NewPCG(1, uint64(L)))
		in := ssmTo32(randSSM(rng, d, true, false))
		for i := range in.Dt { // Mamba's Δ after its dt init: about 0.001 … 0.1
			in.Dt[i] = 0.001 + 0.1*float32(rng.Float64())
		}
		g := to32(normals(rng, d.Batch*L*d.Inner))
		chunk := SSMChunk(L)
		y, ckpt := make([]float32, len(g)), make([]float32, SSMCheckpointLen(d, chunk))
		gr := newGrads[float32](d)
		fused := func(b *testing.B) {
			b.ReportAllocs()
			cpu := cpuSeconds()
			for b.Loop() {
				SelectiveScanForward(y, ckpt, nil, in, d, chunk)
				SelectiveScanBackward(gr, g, ckpt, in, d, chunk)
			}
			b.ReportMetric(float64(4*len(ckpt)), "saved-B")
			if cpu >= 0 {
				b.ReportMetric((cpuSeconds()-cpu)/float64(b.N), "cpu-s/op")
			}
		}
		b.Run(fmt.Sprintf("fused/L=%d", L), fused)
		b.Run(fmt.Sprintf("fused-1thread/L=%d", L), func(b *testing.B) {
			old := metal.Threads()
			defer metal.SetThreads(old)
			metal.SetThreads(1)
			fused(b)
		})
		b.Run(fmt.Sprintf("fused-go-1thread/L=%d", L), func(b *testing.B) {
			old := metal.Threads()
			defer metal.SetThreads(old)
			metal.SetThreads(1)
			cpu := cpuSeconds()
			for b.Loop() {
				ssmForward(y, ckpt, nil, in, d, chunk, 1, ssmGo)
				ssmBackward(gr, g, ckpt, in, d, chunk, ssmGo)
			}
			if cpu >= 0 {
				b.ReportMetric((cpuSeconds()-cpu)/float64(b.N), "cpu-s/op")
			}
		})
		b.Run(fmt.Sprintf("op/L=%d", L), func(b *testing.B) {
			x := ad.FromFloat32(in.X, d.Batch, L, d.Inner)
			dt := ad.FromFloat32(in.Dt, d.Batch, L, d.Inner)
			A := ad.FromFloat32(in.A, d.Inner, d.State)
			Bm := ad.FromFloat32(in.B, d.Batch, L, d.State)
			Cm := ad.FromFloat32(in.C, d.Batch, L, d.State)
			Dk := ad.FromFloat32(in.D, d.Inner)
			seed := ad.FromFloat32(g, d.Batch, L, d.Inner)
			peak := int64(0)
			b.ReportAllocs()
			for b.Loop() {
				metal.HostPool.ResetPeak()
				base := metal.HostPool.InUse()
				tp := ad.NewTape()
				out := SelectiveScan(tp.Watch(x), tp.Watch(dt), tp.Watch(A), tp.Watch(Bm), tp.Watch(Cm), tp.Watch(Dk), SSMOptions{})
				tp.BackwardWith(out, seed.Clone())
				peak = max(peak, metal.HostPool.Peak()-base)
				tp.Release()
			}
			b.ReportMetric(float64(peak), "pool-B")
		})
		b.Run(fmt.Sprintf("reference/L=%d", L), func(b *testing.B) {
			b.ReportAllocs()
			cpu := cpuSeconds()
			for b.Loop() {
				_, hs, _ := refScan(in, d)
				refScanBackward(g, in, d, hs)
			}
			if cpu >= 0 {
				b.ReportMetric((cpuSeconds()-cpu)/float64(b.N), "cpu-s/op")
			}
		})
	}
}
