package autodiff

import (
	"fmt"
	"math"
	"math/bits"

	"github.com/mlxtrain/mlxtrain/metal"
)

// Counter-based random numbers. Philox4x32-10 (Salmon, Moraes, Dror and Shaw,
// "Parallel random numbers: as easy as 1, 2, 3", SC 2011) is a keyed bijection
// of a 128-bit counter: every output block is a pure function of (key, counter),
// so element i of a draw is computed from its own position, in any order, by any
// number of workers, on any device, with the same result.

// The Philox4x32 multipliers and Weyl key increments.
const (
	philoxM0 = 0xD2511F53
	philoxM1 = 0xCD9E8D57
	philoxW0 = 0x9E3779B9 // golden ratio
	philoxW1 = 0xBB67AE85 // √3 − 1
)

// Philox4x32 applies Philox4x32-10 to a counter under a key.
func Philox4x32(ctr [4]uint32, key [2]uint32) [4]uint32 {
	c0, c1, c2, c3 := ctr[0], ctr[1], ctr[2], ctr[3]
	k0, k1 := key[0], key[1]
	for round := range 10 {
		if round > 0 {
			k0 += philoxW0
			k1 += philoxW1
		}
		hi0, lo0 := bits.Mul32(philoxM0, c0)
		hi1, lo1 := bits.Mul32(philoxM1, c2)
		c0, c1, c2, c3 = hi1^c1^k0, lo1, hi0^c3^k1, lo0
	}
	return [4]uint32{c0, c1, c2, c3}
}

// The streams of an RNG: each kind of draw uses its own counters (the third
// counter word), so two kinds drawn at overlapping offsets never share bits.
const (
	rngKindBits      = 0 // Uint32s, Uniform32, dropout masks: one word per element
	rngKindUniform64 = 1 // two words per element
	rngKindNormal32  = 2 // one word per element, in Box–Muller pairs
	rngKindNormal64  = 3 // two words per element, in Box–Muller pairs
)

// RNG is a counter-based random generator: Philox4x32-10 keyed by Seed, with
// Offset the position of the next element. A draw of n elements gives element i a
// value that depends only on (Seed, Offset+i) and the kind of draw, then advances
// Offset by n; so the two numbers are the whole state (a checkpoint saves them),
// and results do not depend on the thread count or device. An RNG is not safe for
// concurrent draws; give each goroutine its own (different seeds or disjoint offsets).
//
// The layout, which a device kernel must reproduce: the key is (Seed mod 2³²,
// Seed ≫ 32); word p of a stream is lane p mod 4 of the block at counter
// (q mod 2³², q ≫ 32, kind, 0) with q = p/4; kind is 0 for Uint32s, Uniform32 and
// dropout masks (word p = element p), 1 for Uniform64 (words 2p, 2p+1 → 53 bits),
// 2 for Normal32 (words p&^1, p|1 → a Box–Muller pair, cosine for even p, sine
// for odd) and 3 for Normal64 (the pair from words 2(p&^1) … 2(p&^1)+3).
type RNG struct {
	Seed   uint64
	Offset uint64
}

// NewRNG returns a generator at offset 0 of seed.
func NewRNG(seed uint64) *RNG { return &RNG{Seed: seed} }

// rngGrain is the number of elements below which a draw stays on one goroutine.
const rngGrain = 1 << 13

// rngWords fills dst with the words at positions pos, pos+1, … of a stream: word p
// is lane p%4 of the Philox block at counter (p/4, kind, 0).
func rngWords(seed uint64, kind uint32, pos uint64, dst []uint32) {
	key := [2]uint32{uint32(seed), uint32(seed >> 32)}
	block := func(b uint64) [4]uint32 {
		return Philox4x32([4]uint32{uint32(b), uint32(b >> 32), kind, 0}, key)
	}
	i := 0
	if lane := int(pos % 4); lane != 0 && len(dst) > 0 { // the head of a partial block
		out := block(pos / 4)
		i = copy(dst, out[lane:])
	}
	for ; i+4 <= len(dst); i += 4 {
		out := block((pos + uint64(i)) / 4)
		d := dst[i : i+4 : i+4]
		d[0], d[1], d[2], d[3] = out[0], out[1], out[2], out[3]
	}
	if i < len(dst) {
		out := block((pos + uint64(i)) / 4)
		copy(dst[i:], out[:])
	}
}

// rngDraw runs fill over [0, n) in parallel chunks; each chunk gets the element
// range [lo, hi) and a scratch buffer.
func rngDraw(n int, fill func(lo, hi int, scratch []uint32)) {
	metal.ParallelFor(n, rngGrain, func(lo, hi int) {
		var scratch [512]uint32
		for s := lo; s < hi; s += 128 {
			fill(s, min(s+128, hi), scratch[:])
		}
	})
}

// advance returns the current offset and moves it past n elements.
func (r *RNG) advance(n int) uint64 {
	off := r.Offset
	r.Offset += uint64(n)
	return off
}

// Uint32s fills dst with uniformly distributed 32-bit words.
func (r *RNG) Uint32s(dst []uint32) {
	seed, off := r.Seed, r.advance(len(dst))
	rngDraw(len(dst), func(lo, hi int, _ []uint32) {
		rngWords(seed, rngKindBits, off+uint64(lo), dst[lo:hi])
	})
}

// rngUnit32 maps a word to [0, 1) with 24 random bits (every float32 step of
// 2^-24 equally likely).
func rngUnit32(w uint32) float32 { return float32(w>>8) * (1.0 / (1 << 24)) }

// rngUnit64 maps two words to [0, 1) with 53 random bits.
func rngUnit64(hi, lo uint32) float64 {
	return float64((uint64(hi)<<32|uint64(lo))>>11) * (1.0 / (1 << 53))
}

// rngTop is the largest value a uniform draw in [lo, hi) may take, so rounding
// of lo + span·u never reaches hi (no bound when the range is empty or reversed).
func rngTop[T Float](lo, hi T) T {
	if !(hi > lo) {
		return T(math.Inf(1))
	}
	if _, ok := any(hi).(float32); ok {
		return T(math.Nextafter32(float32(hi), float32(math.Inf(-1))))
	}
	return T(math.Nextafter(float64(hi), math.Inf(-1)))
}

// Uniform32 fills dst with values uniform in [lo, hi).
func (r *RNG) Uniform32(dst []float32, lo, hi float32) {
	seed, off := r.Seed, r.advance(len(dst))
	span, top := hi-lo, rngTop(lo, hi)
	rngDraw(len(dst), func(a, b int, w []uint32) {
		w = w[:b-a]
		d := dst[a:b]
		rngWords(seed, rngKindBits, off+uint64(a), w)
		for i, x := range w {
			d[i] = min(lo+span*rngUnit32(x), top)
		}
	})
}

// Uniform64 fills dst with values uniform in [lo, hi), 53 random bits each.
func (r *RNG) Uniform64(dst []float64, lo, hi float64) {
	seed, off := r.Seed, r.advance(len(dst))
	span, top := hi-lo, rngTop(lo, hi)
	rngDraw(len(dst), func(a, b int, w []uint32) {
		w = w[:2*(b-a)]
		d := dst[a:b]
		rngWords(seed, rngKindUniform64, 2*(off+uint64(a)), w)
		for i := range d {
			d[i] = min(lo+span*rngUnit64(w[2*i], w[2*i+1]), top)
		}
	})
}

// rngBoxMuller turns u1 in (0, 1] and u2 in [0, 1) into two independent standard
// normals.
func rngBoxMuller(u1, u2 float64) (float64, float64) {
	rad := math.Sqrt(-2 * math.Log(u1))
	s, c := math.Sincos(2 * math.Pi * u2)
	return rad * c, rad * s
}

// rngNormals writes standard normals for elements [a, b) of a stream starting at
// off: element p comes from the Box–Muller pair p&^1 (cosine for even p, sine for
// odd), so it depends only on its own position. words is the number of words
// per uniform (1 or 2).
func rngNormals(seed uint64, kind uint32, off uint64, a, b, words int, scratch []uint32, put func(i int, z float64)) {
	first := (off + uint64(a)) &^ 1
	last := off + uint64(b) // exclusive
	pairs := int((last - first + 1) / 2)
	w := scratch[:pairs*2*words]
	rngWords(seed, kind, first*uint64(words), w)
	for k := range pairs {
		var u1, u2 float64
		if words == 1 {
			u1 = (float64(w[2*k]) + 0.5) * (1.0 / (1 << 32)) // (0, 1): log is finite
			u2 = float64(w[2*k+1]) * (1.0 / (1 << 32))
		} else {
			u1 = 1 - rngUnit64(w[4*k], w[4*k+1]) // (0, 1]
			u2 = rngUnit64(w[4*k+2], w[4*k+3])
		}
		z0, z1 := rngBoxMuller(u1, u2)
		p := first + 2*uint64(k)
		if p >= off+uint64(a) {
			put(int(p-off)-a, z0)
		}
		if p+1 < last {
			put(int(p+1-off)-a, z1)
		}
	}
}

// Normal32 fills dst with normal values of the given mean and standard deviation
// (Box–Muller on 32-bit uniforms, computed in float64).
func (r *RNG) Normal32(dst []float32, mean, std float32) {
	seed, off := r.Seed, r.advance(len(dst))
	rngDraw(len(dst), func(a, b int, w []uint32) {
		d := dst[a:b]
		rngNormals(seed, rngKindNormal32, off, a, b, 1, w, func(i int, z float64) {
			d[i] = mean + std*float32(z)
		})
	})
}

// Normal64 fills dst with normal values of the given mean and standard deviation
// (Box–Muller on 53-bit uniforms).
func (r *RNG) Normal64(dst []float64, mean, std float64) {
	seed, off := r.Seed, r.advance(len(dst))
	rngDraw(len(dst), func(a, b int, w []uint32) {
		d := dst[a:b]
		rngNormals(seed, rngKindNormal64, off, a, b, 2, w, func(i int, z float64) {
			d[i] = mean + std*z
		})
	})
}

// rngCheck validates the RNG and dtype of a random tensor constructor.
func rngCheck(op string, rng *RNG, dtype DType) {
	if rng == nil {
		panic("autodiff: " + op + ": nil RNG")
	}
	if !dtype.IsFloat() && dtype != Float16 && dtype != BFloat16 {
		panic(fmt.Sprintf("autodiff: %s: dtype %s, want a float dtype", op, dtype))
	}
}

// rngTensor builds a random tensor of dtype: float32 and float64 are filled
// directly; half types are drawn in float32 and rounded.
func rngTensor(dtype DType, shape []int, fill32 func([]float32), fill64 func([]float64)) *Tensor {
	switch dtype {
	case Float64:
		t := Empty(Float64, shape...)
		fill64(t.Float64s())
		return t
	case Float32:
		t := Empty(Float32, shape...)
		fill32(t.Float32s())
		return t
	}
	tmp := Empty(Float32, shape...)
	fill32(tmp.Float32s())
	t := Cast(tmp, dtype)
	tmp.Release()
	return t
}

// RandUniform returns a tensor of values uniform in [lo, hi), advancing rng by its
// element count.
func RandUniform(rng *RNG, dtype DType, lo, hi float64, shape ...int) *Tensor {
	rngCheck("RandUniform", rng, dtype)
	checkShape("RandUniform", shape)
	return rngTensor(dtype, shape,
		func(d []float32) { rng.Uniform32(d, float32(lo), float32(hi)) },
		func(d []float64) { rng.Uniform64(d, lo, hi) })
}

// RandNormal returns a tensor of normal values, advancing rng by its element count.
func RandNormal(rng *RNG, dtype DType, mean, std float64, shape ...int) *Tensor {
	rngCheck("RandNormal", rng, dtype)
	checkShape("RandNormal", shape)
	return rngTensor(dtype, shape,
		func(d []float32) { rng.Normal32(d, float32(mean), float32(std)) },
		func(d []float64) { rng.Normal64(d, mean, std) })
}

// TruncatedNormal returns normal values of the given mean and std conditioned on
// lying within [lo, hi] standard deviations of the mean (lo < hi; ±2 is the usual
// initialiser). Each element is the inverse normal CDF of one 53-bit uniform, so
// it stays a pure function of its position like every other draw.
func TruncatedNormal(rng *RNG, dtype DType, mean, std, lo, hi float64, shape ...int) *Tensor {
	rngCheck("TruncatedNormal", rng, dtype)
	checkShape("TruncatedNormal", shape)
	if !(lo < hi) {
		panic(fmt.Sprintf("autodiff: TruncatedNormal: bounds [%g, %g]", lo, hi))
	}
	cdf := func(z float64) float64 { return 0.5 * math.Erfc(-z/math.Sqrt2) }
	clo, chi := cdf(lo), cdf(hi)
	ppf := func(u float64) float64 {
		z := -math.Sqrt2 * math.Erfcinv(2*(clo+u*(chi-clo)))
		return math.Min(math.Max(z, lo), hi) // rounding in the far tails
	}
	n := numel(shape)
	u := make([]float64, n)
	rng.Uniform64(u, 0, 1)
	return rngTensor(dtype, shape,
		func(d []float32) {
			for i, v := range u {
				d[i] = float32(mean + std*ppf(v))
			}
		},
		func(d []float64) {
			for i, v := range u {
				d[i] = mean + std*ppf(v)
			}
		})
}
