package quant

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Fixed vectors worked out from MLX's affine_quantize. The weights of vector
// "descending" are w_j = n − k_j with n = 2^bits − 1, so the group's minimum is 0
// and its maximum n: |min| ≤ |max| makes the scale negative, the edge is max = n,
// q0 = round(n / −1) = −n ≠ 0, so scale = n/−n = −1, bias = n and q_j = k_j.
// The words are k packed as MLX packs them (bits·i onwards, little-endian; a
// 3-bit pack is 8 values in 3 bytes, a 5-bit pack 8 in 5, a 6-bit pack 4 in 3).
var packVectors = []struct {
	bits, group int
	k           []uint8
	words       []uint32
}{
	{2, 32, cycle(32, 4), []uint32{0xE4E4E4E4, 0xE4E4E4E4}},
	{3, 32, cycle(32, 8), []uint32{0x88FAC688, 0xC688FAC6, 0xFAC688FA}},
	{4, 32, cycle(32, 16), []uint32{0x76543210, 0xFEDCBA98, 0x76543210, 0xFEDCBA98}},
	{5, 32, cycle(32, 32), []uint32{0x8A418820, 0xC5A92839, 0xCA307B9A, 0x38BDAB49, 0xFFBBCDEB}},
	{6, 64, cycle(64, 64), []uint32{0x440C2040, 0xA2481C61, 0x3CE34C2C, 0x544D2450, 0xA6585D65, 0x7DE75C6D,
		0x648E2860, 0xAA689E69, 0xBEEB6CAE, 0x74CF2C70, 0xAE78DF6D, 0xFFEF7CEF}},
	{8, 128, append(cycle(127, 256), 255), eightBitWords()},
}

func cycle(n, m int) []uint8 {
	k := make([]uint8, n)
	for j := range k {
		k[j] = uint8(j % m)
	}
	return k
}

// eightBitWords: bytes 0…126 then 255, four to a word, lowest byte first.
func eightBitWords() []uint32 {
	w := make([]uint32, 32)
	for i := range 31 {
		w[i] = 0x03020100 + uint32(i)*0x04040404
	}
	w[31] = 0xFF7E7D7C
	return w
}

func TestQuantizeFixedVectors(t *testing.T) {
	for _, v := range packVectors {
		t.Run(fmt.Sprintf("bits%d", v.bits), func(t *testing.T) {
			n := float32(int(1)<<v.bits - 1)
			desc := make([]float32, len(v.k))
			asc := make([]float32, len(v.k))
			for j, k := range v.k {
				desc[j] = n - float32(k)
				asc[j] = float32(k) - n
			}
			p := Params{GroupSize: v.group, Bits: v.bits}
			m, err := Quantize(p, desc, 1, len(desc))
			require.NoError(t, err)
			assert.Equal(t, v.words, m.Packed)
			assert.Equal(t, []float32{-1}, m.Scales)
			assert.Equal(t, []float32{n}, m.Biases)
			assert.Equal(t, desc, m.Dequantize())

			// w_j = k_j − n: |min| = n > |max| = 0, positive scale, edge = min = −n,
			// q0 = −n, scale = 1, bias = −n: the same q and words.
			m, err = Quantize(p, asc, 1, len(asc))
			require.NoError(t, err)
			assert.Equal(t, v.words, m.Packed)
			assert.Equal(t, []float32{1}, m.Scales)
			assert.Equal(t, []float32{-n}, m.Biases)
			assert.Equal(t, asc, m.Dequantize())

			q := make([]uint8, len(v.k))
			Unpack(q, v.words, v.bits)
			assert.Equal(t, v.k, q)
			for j := range v.k {
				require.Equal(t, v.k[j], m.Q(0, j), "Q(0,%d)", j)
			}
		})
	}
}

func TestQuantizeEdgeRules(t *testing.T) {
	p2 := Params{GroupSize: 32, Bits: 2}
	t.Run("zeros", func(t *testing.T) {
		// min = max = 0: scale = −max(0, 1e-7), q0 = round(0) = 0, bias 0.
		m, err := Quantize(p2, make([]float32, 32), 1, 32)
		require.NoError(t, err)
		assert.Equal(t, []float32{-1e-7}, m.Scales)
		assert.Equal(t, []float32{0}, m.Biases)
		assert.Equal(t, []uint32{0, 0}, m.Packed)
	})
	t.Run("constant", func(t *testing.T) {
		w := make([]float32, 32)
		for i := range w {
			w[i] = 0.25
		}
		// scale −1e-7, edge 0.25, q0 = round(−2.5e6) ≠ 0: bias 0.25, every q 0.
		m, err := Quantize(p2, w, 1, 32)
		require.NoError(t, err)
		assert.Equal(t, []float32{0.25}, m.Biases)
		assert.Equal(t, float32(0.25)/float32(-2.5e6), m.Scales[0])
		assert.Equal(t, w, m.Dequantize())
	})
	t.Run("round half to even", func(t *testing.T) {
		// min 0, max 3: scale −1, bias 3, q = 3 − w: 2.5 → 0.5 → 0, 1.5 → 2,
		// 0.5 → 2.5 → 2, 0.49 → 2.51 → 3; zeros → 3.
		w := make([]float32, 32)
		copy(w, []float32{0, 3, 2.5, 1.5, 0.5, 0.49})
		m, err := Quantize(p2, w, 1, 32)
		require.NoError(t, err)
		assert.Equal(t, []uint32{0xFFFFFE83, 0xFFFFFFFF}, m.Packed)
	})
	t.Run("scale snapped to the edge", func(t *testing.T) {
		// 4 bits, min −1, max 10: scale −11/15, edge 10, q0 = round(−13.64) = −14,
		// so scale = 10/−14 and bias 10; −1 gives round(15.4) = 15 and 0 gives 14.
		w := make([]float32, 32)
		w[0], w[1] = -1, 10
		m, err := Quantize(Params{GroupSize: 32, Bits: 4}, w, 1, 32)
		require.NoError(t, err)
		assert.Equal(t, float32(10)/float32(-14), m.Scales[0])
		assert.Equal(t, float32(10), m.Biases[0])
		assert.Equal(t, uint8(15), m.Q(0, 0))
		assert.Equal(t, uint8(0), m.Q(0, 1))
		for j := 2; j < 32; j++ {
			assert.Equal(t, uint8(14), m.Q(0, j))
		}
	})
}

func TestPackRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, bits := range ValidBits {
		for _, n := range []int{0, 32, 64, 96, 32 * 33} {
			q := make([]uint8, n)
			for i := range q {
				q[i] = uint8(rng.IntN(1 << bits))
			}
			words := make([]uint32, n*bits/32)
			Pack(words, q, bits)
			back := make([]uint8, n)
			Unpack(back, words, bits)
			assert.Equal(t, q, back, "bits %d n %d", bits, n)
			// The layout as MLX's byte packs describe it.
			assert.Equal(t, mlxPacks(q, bits), words, "bits %d n %d", bits, n)
		}
	}
}

// mlxPacks packs q the way MLX's CPU quantize loop writes it: el values to a
// pack, gathered into one integer, stored as a 4-byte word (2, 4, 8 bits) or as
// 3 (3, 6 bits) or 5 (5 bits) little-endian bytes, then read back as words.
func mlxPacks(q []uint8, bits int) []uint32 {
	el, nb := 32/bits, 4
	switch bits {
	case 3:
		el, nb = 8, 3
	case 5:
		el, nb = 8, 5
	case 6:
		el, nb = 4, 3
	}
	var bytes []byte
	for j := 0; j+el <= len(q); j += el {
		var v uint64
		for k := range el {
			v |= uint64(q[j+k]) << (k * bits)
		}
		for b := range nb {
			bytes = append(bytes, byte(v>>(8*b)))
		}
	}
	words := make([]uint32, len(bytes)/4)
	for i := range words {
		words[i] = uint32(bytes[4*i]) | uint32(bytes[4*i+1])<<8 | uint32(bytes[4*i+2])<<16 | uint32(bytes[4*i+3])<<24
	}
	return words
}

// The dequantized weights are within one step (hi−lo)/(2^bits−1) of the
// originals in every group: rounding costs at most half a (possibly enlarged)
// step, and snapping the scale to the edge shortens the far end's reach by less
// than one step. The RMS error of uniform data is about a step/√12.
func TestQuantizeErrorBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	rows, cols := 7, 384
	w := make([]float32, rows*cols)
	for i := range w {
		w[i] = float32(rng.NormFloat64()) * 0.05
		if i%97 == 0 {
			w[i] *= 20 // outliers
		}
	}
	for _, bits := range ValidBits {
		for _, G := range ValidGroupSizes {
			p := Params{GroupSize: G, Bits: bits}
			m, err := Quantize(p, w, rows, cols)
			require.NoError(t, err)
			d := m.Dequantize()
			var se, steps float64
			for r := range rows {
				for g := range cols / G {
					grp := w[r*cols+g*G : r*cols+(g+1)*G]
					lo, hi := grp[0], grp[0]
					for _, v := range grp {
						lo, hi = min(lo, v), max(hi, v)
					}
					step := float64(hi-lo) / float64(int(1)<<bits-1)
					steps += step * step
					for j, v := range grp {
						e := math.Abs(float64(d[r*cols+g*G+j] - v))
						se += e * e
						require.LessOrEqual(t, e, step*(1+1e-5)+1e-7, "bits %d group %d row %d col %d", bits, G, r, g*G+j)
					}
				}
			}
			rmse := math.Sqrt(se / float64(rows*cols))
			meanStep := math.Sqrt(steps / float64(rows*cols/G))
			assert.Less(t, rmse, meanStep/math.Sqrt(12)*1.5, "bits %d group %d", bits, G)
		}
	}
}

func TestQuantizeRejects(t *testing.T) {
	_, err := Quantize(Params{GroupSize: 64, Bits: 7}, make([]float32, 64), 1, 64)
	assert.ErrorContains(t, err, "bits 7")
	_, err = Quantize(Params{GroupSize: 48, Bits: 4}, make([]float32, 96), 1, 96)
	assert.ErrorContains(t, err, "group size 48")
	_, err = Quantize(Params{GroupSize: 64, Bits: 4}, make([]float32, 96), 1, 96)
	assert.ErrorContains(t, err, "multiple of the group size")
	_, err = Quantize(Params{GroupSize: 32, Bits: 4}, make([]float32, 32), 2, 32)
	assert.ErrorContains(t, err, "32 values")
	w := make([]float32, 64)
	w[40] = float32(math.NaN())
	_, err = Quantize(Params{GroupSize: 32, Bits: 4}, w, 1, 64)
	assert.ErrorContains(t, err, "weight (0, 40) is NaN")
	w[40] = float32(math.Inf(-1))
	_, err = Quantize(Params{GroupSize: 32, Bits: 4}, w, 1, 64)
	assert.ErrorContains(t, err, "-Inf")
}
