package autodiff

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Known-answer vectors for Philox4x32-10 from the Random123 distribution's
// kat_vectors file (counter words, key words → output words).
func TestPhiloxKnownAnswers(t *testing.T) {
	cases := []struct {
		ctr  [4]uint32
		key  [2]uint32
		want [4]uint32
	}{
		{[4]uint32{0, 0, 0, 0}, [2]uint32{0, 0}, [4]uint32{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
		{[4]uint32{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, [2]uint32{0xffffffff, 0xffffffff}, [4]uint32{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
		{[4]uint32{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, [2]uint32{0xa4093822, 0x299f31d0}, [4]uint32{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, Philox4x32(c.ctr, c.key), "ctr %08x key %08x", c.ctr, c.key)
	}
}

func TestRNGStreamLayout(t *testing.T) {
	// word p of the bit stream is lane p%4 of the block at counter (p/4, 0, 0, 0)
	// keyed by the seed's two halves: pinned so checkpoints stay reproducible.
	seed := uint64(0x0123456789abcdef)
	r := NewRNG(seed)
	got := make([]uint32, 10)
	r.Uint32s(got)
	key := [2]uint32{0x89abcdef, 0x01234567}
	var want []uint32
	for blk := range uint32(3) {
		out := Philox4x32([4]uint32{blk, 0, 0, 0}, key)
		want = append(want, out[:]...)
	}
	assert.Equal(t, want[:10], got)
	assert.Equal(t, uint64(10), r.Offset)

	// a high offset reaches the counter's second word
	r = &RNG{Seed: seed, Offset: 4 << 32}
	r.Uint32s(got[:1])
	assert.Equal(t, Philox4x32([4]uint32{0, 1, 0, 0}, key)[0], got[0])
}

// TestRNGPositional checks that element i of a draw depends only on (seed,
// offset+i): a draw split anywhere, at any worker count, gives the same numbers.
func TestRNGPositional(t *testing.T) {
	const n = 3*rngGrain + 77
	draws := map[string]func(r *RNG, n int) []float64{
		"uint32": func(r *RNG, n int) []float64 {
			d := make([]uint32, n)
			r.Uint32s(d)
			out := make([]float64, n)
			for i, v := range d {
				out[i] = float64(v)
			}
			return out
		},
		"uniform32": func(r *RNG, n int) []float64 {
			d := make([]float32, n)
			r.Uniform32(d, -1, 3)
			return Cast(FromFloat32(d, n), Float64).Float64s()
		},
		"uniform64": func(r *RNG, n int) []float64 {
			d := make([]float64, n)
			r.Uniform64(d, -1, 3)
			return d
		},
		"normal32": func(r *RNG, n int) []float64 {
			d := make([]float32, n)
			r.Normal32(d, 1, 2)
			return Cast(FromFloat32(d, n), Float64).Float64s()
		},
		"normal64": func(r *RNG, n int) []float64 {
			d := make([]float64, n)
			r.Normal64(d, 1, 2)
			return d
		},
	}
	for name, draw := range draws {
		var one, two []float64
		shpTWithThreads(1, func() { one = draw(&RNG{Seed: 42, Offset: 5}, n) })
		shpTWithThreads(2, func() { two = draw(&RNG{Seed: 42, Offset: 5}, n) })
		require.Equal(t, one, two, "%s: 1 and 2 workers", name)
		// split at odd and even points: each piece continues the stream
		r := &RNG{Seed: 42, Offset: 5}
		var pieces []float64
		for _, m := range []int{1, 2, 3, 130, 7, n - 143} {
			pieces = append(pieces, draw(r, m)...)
		}
		assert.Equal(t, uint64(5+n), r.Offset, name)
		assert.Equal(t, one, pieces, "%s: split draws", name)
		// and a draw from the middle matches
		mid := draw(&RNG{Seed: 42, Offset: 5 + 1001}, 333)
		assert.Equal(t, one[1001:1334], mid, "%s: offset draw", name)
		other := draw(&RNG{Seed: 43, Offset: 5}, 8)
		assert.NotEqual(t, one[:8], other, "%s: seeds differ", name)
	}
}

// rngTMoments returns the mean and variance of xs.
func rngTMoments(xs []float64) (mean, variance float64) {
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	for _, x := range xs {
		variance += (x - mean) * (x - mean)
	}
	return mean, variance / float64(len(xs)-1)
}

func TestRNGStatistics(t *testing.T) {
	const n = 100000
	// bounds of five standard errors of the estimates
	r := NewRNG(7)
	u32 := make([]float32, n)
	r.Uniform32(u32, -2, 2)
	u := Cast(FromFloat32(u32, n), Float64).Float64s()
	m, v := rngTMoments(u)
	assert.InDelta(t, 0, m, 5*math.Sqrt(16.0/12/n))
	assert.InDelta(t, 16.0/12, v, 5*16.0/12*math.Sqrt(0.8/n))
	for _, x := range u {
		require.True(t, x >= -2 && x < 2, "uniform32 %g out of [-2, 2)", x)
	}
	u64 := make([]float64, n)
	r.Uniform64(u64, 0, 1)
	m, v = rngTMoments(u64)
	assert.InDelta(t, 0.5, m, 5*math.Sqrt(1.0/12/n))
	assert.InDelta(t, 1.0/12, v, 5*1.0/12*math.Sqrt(0.8/n))

	// uint32: 16 buckets of the top bits, chi-square with 15 degrees of freedom
	w := make([]uint32, n)
	r.Uint32s(w)
	var buckets [16]float64
	for _, x := range w {
		buckets[x>>28]++
	}
	chi := 0.0
	for _, b := range buckets {
		chi += (b - n/16) * (b - n/16) / (n / 16)
	}
	assert.Less(t, chi, 37.7, "chi-square of uint32 buckets (p = 0.001)")

	for _, dt := range []DType{Float32, Float64} {
		x := RandNormal(r, dt, 3, 0.5, n)
		m, v = rngTMoments(x.Float64Values())
		assert.InDelta(t, 3, m, 5*0.5/math.Sqrt(n), dt.String())
		assert.InDelta(t, 0.25, v, 5*0.25*math.Sqrt(2.0/n), dt.String())
		// tails: the fraction beyond 2σ is 4.55%
		beyond := 0
		for _, y := range x.Float64Values() {
			if math.Abs(y-3) > 1 {
				beyond++
			}
		}
		assert.InDelta(t, 0.0455, float64(beyond)/n, 5*math.Sqrt(0.0455*0.9545/n), dt.String())
	}

	tn := TruncatedNormal(r, Float64, 0, 1, -2, 2, n)
	m, v = rngTMoments(tn.Float64s())
	phi2 := math.Exp(-2) / math.Sqrt(2*math.Pi)
	wantVar := 1 - 4*phi2/math.Erf(2/math.Sqrt2)
	assert.InDelta(t, 0, m, 5*math.Sqrt(wantVar/n))
	assert.InDelta(t, wantVar, v, 5*wantVar*math.Sqrt(2.0/n))
	for _, y := range tn.Float64s() {
		require.True(t, y >= -2 && y <= 2)
	}
	tn32 := TruncatedNormal(r, Float32, 1, 0.1, 0, 1, 1000)
	for _, y := range tn32.Float32s() {
		require.True(t, y >= 1 && y <= 1.1+1e-6, "%g", y)
	}
}

func TestRandConstructors(t *testing.T) {
	r := NewRNG(9)
	for _, dt := range []DType{Float32, Float64, Float16, BFloat16} {
		x := RandUniform(r, dt, 1, 2, 7, 33)
		require.Equal(t, []int{7, 33}, x.Shape())
		require.Equal(t, dt, x.DType())
		for i := range x.Len() {
			require.True(t, x.At(i) >= 1 && x.At(i) <= 2)
		}
	}
	assert.Equal(t, uint64(4*7*33), r.Offset)
	// same state, same tensor
	a := RandNormal(&RNG{Seed: 1, Offset: 3}, Float32, 0, 1, 127)
	b := RandNormal(&RNG{Seed: 1, Offset: 3}, Float32, 0, 1, 127)
	assert.Equal(t, a.Float32s(), b.Float32s())
	assert.Equal(t, []int{0, 3}, RandUniform(r, Float32, 0, 1, 0, 3).Shape())
	assert.Contains(t, shpTPanic(func() { RandNormal(nil, Float32, 0, 1, 3) }), "nil RNG")
	assert.Contains(t, shpTPanic(func() { RandNormal(r, Int32, 0, 1, 3) }), "dtype")
	assert.Contains(t, shpTPanic(func() { TruncatedNormal(r, Float32, 0, 1, 2, -2, 3) }), "bounds")
}

func BenchmarkRNGNormal32(b *testing.B) {
	d := make([]float32, 1<<20)
	r := NewRNG(1)
	shpTBenchThreads(b, func(b *testing.B) {
		b.SetBytes(4 << 20)
		for b.Loop() {
			r.Normal32(d, 0, 1)
		}
	})
}

func BenchmarkRNGUniform32(b *testing.B) {
	d := make([]float32, 1<<20)
	r := NewRNG(1)
	shpTBenchThreads(b, func(b *testing.B) {
		b.SetBytes(4 << 20)
		for b.Loop() {
			r.Uniform32(d, 0, 1)
		}
	})
}
