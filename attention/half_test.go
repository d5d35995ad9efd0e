package attention

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/mlxtrain/mlxtrain/autodiff"
)

// TestHalfConversions: the F16C kernels (where present) agree bit for bit with
// autodiff's scalar conversions, over lengths with and without a tail and over
// normal, subnormal, huge and special values.
func TestHalfConversions(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 7, 8, 33, 64} {
		f := make([]float32, n)
		for i := range f {
			switch i % 6 {
			case 0:
				f[i] = float32(rng.NormFloat64())
			case 1:
				f[i] = float32(rng.NormFloat64() * 1e-6) // subnormal halves
			case 2:
				f[i] = float32(rng.NormFloat64() * 1e5) // beyond the half range
			case 3:
				f[i] = float32(math.Inf(-1))
			default:
				f[i] = float32(rng.NormFloat64() * 100)
			}
		}
		h := make([]uint16, n)
		float32ToHalves(h, f)
		back := make([]float32, n)
		halvesToFloat32(back, h)
		for i := range f {
			assert.Equal(t, autodiff.Float32ToHalf(f[i]), h[i], "to half: %g", f[i])
			assert.Equal(t, autodiff.HalfToFloat32(h[i]), back[i], "from half: %#x", h[i])
		}
	}
}

// TestHalfRows: the strided row conversion takes each row's first d halves.
func TestHalfRows(t *testing.T) {
	for _, d := range []int{8, 12, 32} {
		const rows, stride = 5, 40
		src := make([]uint16, (rows-1)*stride+d)
		for i := range src {
			src[i] = autodiff.Float32ToHalf(float32(i) / 8)
		}
		dst := make([]float32, rows*d)
		halfRowsToFloat32(dst, src, rows, d, stride)
		for r := range rows {
			for c := range d {
				assert.Equal(t, float32(r*stride+c)/8, dst[r*d+c], "row %d col %d", r, c)
			}
		}
	}
}
