package kerneltest

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/metal"
)

// philoxRef is Philox4x32-10 (Salmon et al., SC 2011), the test's own copy.
func philoxRef(c [4]uint32, k [2]uint32) [4]uint32 {
	for round := 0; round < 10; round++ {
		if round > 0 {
			k[0] += 0x9E3779B9
			k[1] += 0xBB67AE85
		}
		hi0, lo0 := bits.Mul32(0xD2511F53, c[0])
		hi1, lo1 := bits.Mul32(0xCD9E8D57, c[2])
		c = [4]uint32{hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0}
	}
	return c
}

// philoxWordRef is word w of stream 0 of seed.
func philoxWordRef(seed, w uint64) uint32 {
	q := w / 4
	return philoxRef([4]uint32{uint32(q), uint32(q >> 32), 0, 0}, [2]uint32{uint32(seed), uint32(seed >> 32)})[w%4]
}

// Dropout checks dropout_f32: the Philox words it draws equal the published
// known answer (counter and key 0) exactly, and on odd and empty sizes, at
// offsets that start mid-block and cross 2³², its kept elements and their
// scaling match the reference stream for several drop rates.
func Dropout(t *testing.T, d metal.Compute) {
	require.Equal(t, [4]uint32{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}, philoxRef([4]uint32{}, [2]uint32{}), "the reference")

	// Each word exactly: kept at threshold w, dropped at w + 1.
	ones := Upload(t, d, []float32{1, 1, 1, 1})
	out := Empty(t, d, 4)
	for lane, w := range []uint32{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8} {
		for _, c := range []struct {
			thr  uint32
			want float32
		}{{w, 1}, {w + 1, 0}} {
			require.NoError(t, metal.RunDropout(d, out, ones, 4, 0, 0, c.thr, 1))
			assert.Equal(t, c.want, Download(out, 4)[lane], "word %d at threshold %#x", lane, c.thr)
		}
	}
	release(ones, out)

	r := rand.New(rand.NewPCG(71, 72))
	for _, n := range append(Sizes, 1000, 0) {
		for _, c := range []struct {
			seed, off uint64
			p         float64
		}{{7, 0, 0.1}, {0x0123456789abcdef, 3, 0.5}, {42, 1<<32 - 5, 0.9}, {1 << 40, 1<<33 + 2, 0.25}} {
			x := Random(r, n, -3, 3)
			thr := uint32(c.p * (1 << 32))
			scale := float32(1 / (1 - c.p))
			xb, ob := Upload(t, d, x), Empty(t, d, n)
			require.NoError(t, metal.RunDropout(d, ob, xb, n, c.seed, c.off, thr, scale))
			want := make([]float32, n)
			for i := range want {
				if philoxWordRef(c.seed, c.off+uint64(i)) >= thr {
					want[i] = x[i] * scale
				}
			}
			assert.Equal(t, want, Download(ob, n), fmt.Sprintf("n %d seed %#x off %#x p %g", n, c.seed, c.off, c.p))
			release(xb, ob)
		}
	}
	require.NoError(t, d.Synchronize())
}
