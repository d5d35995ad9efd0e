package gemm

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// The vector packing routines against loops written here: every value lands where
// the panel layout says, nothing past the panel is written, for depths around the
// 8-column blocks of packA6NFast and row strides longer than the rows.
func TestPackFast(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, kc := range []int{0, 1, 2, 7, 8, 9, 16, 33, 127, 256} {
		for _, pad := range []int{0, 3, 16} {
			t.Run(fmt.Sprintf("kc%d_pad%d", kc, pad), func(t *testing.T) {
				fill := func(n int) []float32 {
					x := make([]float32, n)
					for i := range x {
						x[i] = float32(rng.Float64()*2 - 1)
					}
					return x
				}
				const guard = float32(-777)
				dst := func(n int) []float32 {
					d := make([]float32, n+8)
					for i := range d {
						d[i] = guard
					}
					return d
				}

				// A stored m×k: 6 rows of kc values, lda apart.
				lda := kc + pad
				a := fill(6 * max(lda, 1))
				d := dst(6 * kc)
				packA6NFast(d, a, lda, kc)
				for p := range kc {
					for i := range 6 {
						require.Equal(t, a[i*lda+p], d[6*p+i], "packA6NFast p=%d i=%d", p, i)
					}
				}
				for _, v := range d[6*kc:] {
					require.Equal(t, guard, v, "packA6NFast wrote past the panel")
				}

				// A stored k×m: kc rows of 6 values, lda apart.
				lda = 6 + pad
				a = fill(max(kc*lda, 1))
				d = dst(6 * kc)
				packA6TFast(d, a, lda, kc)
				for p := range kc {
					for i := range 6 {
						require.Equal(t, a[p*lda+i], d[6*p+i], "packA6TFast p=%d i=%d", p, i)
					}
				}
				for _, v := range d[6*kc:] {
					require.Equal(t, guard, v, "packA6TFast wrote past the panel")
				}

				// B stored n×k: 16 rows of kc values, ldb apart.
				ldb := kc + pad
				b := fill(16 * max(ldb, 1))
				d = dst(16 * kc)
				packB16TFast(d, b, ldb, kc)
				for p := range kc {
					for j := range 16 {
						require.Equal(t, b[j*ldb+p], d[16*p+j], "packB16TFast p=%d j=%d", p, j)
					}
				}
				for _, v := range d[16*kc:] {
					require.Equal(t, guard, v, "packB16TFast wrote past the panel")
				}

				// B stored k×n: kc rows of 16 values, ldb apart.
				ldb = 16 + pad
				b = fill(max(kc*ldb, 1))
				d = dst(16 * kc)
				packB16NFast(d, b, ldb, kc)
				for p := range kc {
					for j := range 16 {
						require.Equal(t, b[p*ldb+j], d[16*p+j], "packB16NFast p=%d j=%d", p, j)
					}
				}
				for _, v := range d[16*kc:] {
					require.Equal(t, guard, v, "packB16NFast wrote past the panel")
				}
			})
		}
	}

	// Several panels at once, row by row.
	for _, kc := range []int{1, 7, 33, 127} {
		for _, panels := range []int{0, 1, 2, 5} {
			for _, pad := range []int{0, 3} {
				t.Run(fmt.Sprintf("panels%d_kc%d_pad%d", panels, kc, pad), func(t *testing.T) {
					lda := 6*panels + pad
					a := make([]float32, max(kc*lda, 1))
					for i := range a {
						a[i] = float32(rng.Float64()*2 - 1)
					}
					d := make([]float32, 6*kc*panels+8)
					packA6TPanels(d, a, lda, kc, panels)
					for r := range panels {
						for p := range kc {
							for i := range 6 {
								require.Equal(t, a[p*lda+6*r+i], d[6*kc*r+6*p+i], "packA6TPanels r=%d p=%d i=%d", r, p, i)
							}
						}
					}
					require.Equal(t, make([]float32, 8), d[6*kc*panels:], "packA6TPanels wrote past the panels")

					ldb := 16*panels + pad
					b := make([]float32, max(kc*ldb, 1))
					for i := range b {
						b[i] = float32(rng.Float64()*2 - 1)
					}
					d = make([]float32, 16*kc*panels+8)
					packB16NPanels(d, b, ldb, kc, panels)
					for r := range panels {
						for p := range kc {
							for j := range 16 {
								require.Equal(t, b[p*ldb+16*r+j], d[16*kc*r+16*p+j], "packB16NPanels r=%d p=%d j=%d", r, p, j)
							}
						}
					}
					require.Equal(t, make([]float32, 8), d[16*kc*panels:], "packB16NPanels wrote past the panels")
				})
			}
		}
	}
}

// packB16NPanels (row by row over every panel) against the Go reference packer
// run panel by panel, on the MoE's widths (32 panels: 512 columns) and odd
// depths, with rows longer than the panels; the bytes past the panels stay.
func TestPackB16NPanelsReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, kc := range []int{1, 7, 33, 127, 256} {
		for _, panels := range []int{1, 3, 8, 32} {
			for _, pad := range []int{0, 5} {
				ldb := 16*panels + pad
				b := make([]float32, kc*ldb)
				for i := range b {
					b[i] = float32(rng.Float64()*2 - 1)
				}
				want := make([]float32, 16*kc*panels+8)
				for r := range panels {
					packB16NGo(want[16*kc*r:], b[16*r:], ldb, kc)
				}
				got := make([]float32, 16*kc*panels+8)
				packB16NPanels(got, b, ldb, kc, panels)
				require.Equal(t, want, got, "kc=%d panels=%d ldb=%d", kc, panels, ldb)
			}
		}
	}
}
