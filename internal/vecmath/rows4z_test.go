package vecmath

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

var rows4ZSizes = []int{0, 1, 7, 8, 16, 24, 33, 40, 64, 120, 127, 128, 136}

// The AVX-512 four-row kernels give what SoftmaxRows4, SoftmaxGradPDeltaRows4
// and ScaleRows4 give on the same CPU path, bit for bit (they are themselves
// checked against float64 formulas), with masked entries and rows whose old
// maximum is −Inf or above every score; the gaps between rows stay untouched.
func TestRows4Z(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(51, 52))
		for _, n := range rows4ZSizes {
			lds := n + 11
			s := normals(rng, 3*lds+n+3, 4)
			for r := range 4 {
				if n > 5 {
					s[r*lds+r+1] = float32(math.Inf(-1))
					s[r*lds+n-1-r] = float32(math.Inf(-1))
				}
			}
			m0 := [4]float32{float32(math.Inf(-1)), -3, 20, 0.5}
			got, want := append([]float32(nil), s...), append([]float32(nil), s...)
			gm, gs := m0, [4]float32{9, 9, 9, 9}
			wm, ws := m0, [4]float32{7, 7, 7, 7}
			SoftmaxRows4Z(got, lds, n, &gm, &gs)
			SoftmaxRows4(want, lds, n, &wm, &ws)
			require.Equal(t, wm, gm, "n=%d maxima", n)
			require.Equal(t, ws, gs, "n=%d sums", n)
			require.Equal(t, want, got, "n=%d exponentials", n)

			p, ds := normals(rng, 3*lds+n+1, 1), normals(rng, 3*lds+n+1, 1)
			gds, wds := append([]float32(nil), ds...), append([]float32(nil), ds...)
			var gd, wd [4]float32
			SoftmaxGradPDeltaRows4Z(p, gds, lds, n, &gd, 0.3)
			SoftmaxGradPDeltaRows4(p, wds, lds, n, &wd, 0.3)
			require.Equal(t, wd, gd, "n=%d deltas", n)
			require.Equal(t, wds, gds, "n=%d gradients", n)

			a := [4]float32{0.5, -2, 3.25, 1e-3}
			ldd := n + 3
			gdst, wdst := normals(rng, 3*ldd+n+1, 1), make([]float32, 3*ldd+n+1)
			copy(wdst, gdst)
			ScaleRows4Z(gdst, ldd, p, lds, n, &a)
			ScaleRows4(wdst, ldd, p, lds, n, &a)
			require.Equal(t, wdst, gdst, "n=%d scaled", n)
		}
	})
}

func BenchmarkRows4Z(b *testing.B) {
	const lds, n = 128, 128
	rng := rand.New(rand.NewPCG(1, 2))
	src := normals(rng, 4*lds, 3)
	s := make([]float32, len(src))
	for _, z := range []bool{false, true} {
		name := "avx2"
		if z {
			name = "avx512"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				copy(s, src)
				m, sum := [4]float32{}, [4]float32{}
				if z {
					SoftmaxRows4Z(s, lds, n, &m, &sum)
				} else {
					SoftmaxRows4(s, lds, n, &m, &sum)
				}
			}
		})
		b.Run(name+"/grad", func(b *testing.B) {
			p, ds := normals(rng, 4*lds, 1), normals(rng, 4*lds, 1)
			for b.Loop() {
				copy(s, ds)
				var d [4]float32
				if z {
					SoftmaxGradPDeltaRows4Z(p, s, lds, n, &d, 0.3)
				} else {
					SoftmaxGradPDeltaRows4(p, s, lds, n, &d, 0.3)
				}
			}
		})
	}
}
