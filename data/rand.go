package data

import "math/bits"

// rng is a small splitmix64 generator. The data package defines its own so that
// shuffles, splits and synthetic tasks depend only on their seed, never on the Go
// release (math/rand/v2 does not promise a stable Shuffle or IntN sequence).
type rng struct{ state uint64 }

// newRNG derives an independent stream from a seed and any number of stream labels
// (an epoch, a task kind, a split name...).
func newRNG(seed uint64, streams ...uint64) *rng {
	r := &rng{state: seed}
	for _, s := range streams {
		r.state = mix64(r.state ^ mix64(s+0x632be59bd9b4e019))
	}
	return r
}

func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

func (r *rng) next() uint64 {
	r.state += 0x9e3779b97f4a7c15
	return mix64(r.state)
}

// intn returns a uniform integer in [0, n) (Lemire's multiply-and-reject).
func (r *rng) intn(n int) int {
	if n <= 0 {
		panic("data: intn: n <= 0")
	}
	bound := uint64(n)
	hi, lo := bits.Mul64(r.next(), bound)
	if lo < bound {
		thresh := -bound % bound
		for lo < thresh {
			hi, lo = bits.Mul64(r.next(), bound)
		}
	}
	return int(hi)
}

// perm returns a uniform permutation of 0..n-1 (Fisher–Yates).
func (r *rng) perm(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := r.intn(i + 1)
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// stringSeed turns a label into a stream number.
func stringSeed(s string) uint64 {
	h := uint64(14695981039346656037) // FNV-1a
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
