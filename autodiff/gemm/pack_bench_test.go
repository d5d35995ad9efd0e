package gemm

import (
	"fmt"
	"testing"
)

// BenchmarkPackB16N measures packB16NPanels on the MoE backward's B operands
// (kc rows × 16·panels columns, rows ldb apart), warm (one source over and
// over) and cold (cycling through copies spanning 64 MiB), beside a plain copy
// of the same bytes (copy), in GB/s of packed data:
//
//	go test -run '^$' -bench 'PackB16N' -count 3 ./autodiff/gemm/
func BenchmarkPackB16N(b *testing.B) {
	for _, s := range []struct{ kc, panels, ldb int }{
		{256, 32, 512}, // h: n×512 (dW2 = gᵀ·h)
		{128, 32, 512}, // W2_e: 128×512 (dy = g·W2)
		{256, 8, 128},  // W1_e, x: ·×128 (dx = dy·W1, dW1 = dyᵀ·x)
	} {
		for _, cold := range []bool{false, true} {
			name := "warm"
			if cold {
				name = "cold"
			}
			for _, kind := range []string{"pack", "panel", "copy"} {
				b.Run(fmt.Sprintf("%dx%d_ld%d/%s/%s", s.kc, 16*s.panels, s.ldb, name, kind), func(b *testing.B) {
					size := s.kc * s.ldb
					copies := 1
					if cold {
						copies = (64 << 20) / (4 * size)
					}
					src := make([]float32, copies*size)
					for i := range src {
						src[i] = float32(i)
					}
					dp := getBuf(&bPool, s.kc*16*s.panels)
					defer bPool.Put(dp)
					d := *dp
					b.SetBytes(int64(4 * s.kc * 16 * s.panels))
					b.ResetTimer()
					for i := range b.N {
						o := src[(i%copies)*size:][:size]
						switch kind {
						case "pack":
							packB16NPanels(d, o, s.ldb, s.kc, s.panels)
						case "panel":
							for r := range s.panels {
								packB16NFast(d[16*s.kc*r:], o[16*r:], s.ldb, s.kc)
							}
						default:
							copy(d, o)
						}
					}
				})
			}
		}
	}
}
