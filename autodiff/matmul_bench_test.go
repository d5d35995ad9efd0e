package autodiff

import (
	"fmt"
	"testing"

	"github.com/mlxtrain/mlxtrain/metal"
)

// BenchmarkMatMul times the differentiable op, forward alone and forward with
// backward (three products), on shapes of a small transformer (batch 16, context
// 128, width 128..512), with the system BLAS on and off, on 1 and 2 threads:
//
//	go test -run '^$' -bench 'MatMul' -benchtime 20x -count 3 ./autodiff/
func BenchmarkMatMul(b *testing.B) {
	shapes := []struct {
		name   string
		a, w   []int
		tA, tB bool
	}{
		{"proj_16x128x128@128x512", []int{16, 128, 128}, []int{128, 512}, false, false},
		{"proj_16x128x512@512x128", []int{16, 128, 512}, []int{512, 128}, false, false},
		{"linearT_16x128x128@512x128ᵀ", []int{16, 128, 128}, []int{512, 128}, false, true},
		{"heads_64x128x32@64x128x32ᵀ", []int{64, 128, 32}, []int{64, 128, 32}, false, true},
		{"square_1024", []int{1024, 1024}, []int{1024, 1024}, false, false},
	}
	for _, s := range shapes {
		for _, blas := range []bool{true, false} {
			for _, threads := range []int{1, 2} {
				for _, backward := range []bool{false, true} {
					name := fmt.Sprintf("%s/blas=%v/threads%d/backward=%v", s.name, blas, threads, backward)
					b.Run(name, func(b *testing.B) {
						oldBLAS, oldThreads := metal.BLASEnabled(), metal.Threads()
						metal.SetBLAS(blas)
						metal.SetThreads(threads)
						defer func() { metal.SetBLAS(oldBLAS); metal.SetThreads(oldThreads) }()
						x := Full(Float32, 0.01, s.a...)
						w := Full(Float32, 0.02, s.w...)
						defer x.Release()
						defer w.Release()
						var flops float64
						for b.Loop() {
							tp := NewTape()
							y := MatMulT(tp.Watch(x), tp.Watch(w), s.tA, s.tB)
							if flops == 0 {
								k := s.a[len(s.a)-1]
								flops = 2 * float64(y.Len()) * float64(k)
								if backward {
									flops *= 3
								}
							}
							if backward {
								tp.BackwardWith(y, Full(Float32, 1, y.Shape()...))
							}
							tp.Release()
						}
						b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
					})
				}
			}
		}
	}
}
