package autodiff

import (
	"fmt"
	"math"

	"github.com/mlxtrain/mlxtrain/metal"
)

// DropoutMask fills keep, a bitset of n bits (bit i of keep[i/64]), with the
// dropout mask for n elements at offset off of seed's stream: element i is kept
// when its 32-bit word is at least p·2³². It is the same mask at any thread count.
func DropoutMask(keep []uint64, seed, off uint64, n int, p float64) {
	thr := dropoutThreshold(p)
	words := (n + 63) / 64
	metal.ParallelFor(words, rngGrain/64, func(lo, hi int) {
		var w [64]uint32
		for k := lo; k < hi; k++ {
			cnt := min(64, n-64*k)
			rngWords(seed, rngKindBits, off+uint64(64*k), w[:cnt])
			var bitsK uint64
			for j, v := range w[:cnt] {
				if v >= thr {
					bitsK |= 1 << j
				}
			}
			keep[k] = bitsK
		}
	})
}

// dropoutThreshold is the smallest word dropout keeps at drop rate p: p·2³².
func dropoutThreshold(p float64) uint32 {
	return uint32(math.Min(math.Round(p*(1<<32)), math.MaxUint32))
}

// DropoutKernel sets out[i] = x[i]·scale where bit i of keep is set, 0 elsewhere.
// The backward pass is the same kernel on the gradient.
func DropoutKernel[T Float](out, x []T, keep []uint64, scale T) {
	x = x[:len(out)]
	metal.ParallelFor((len(out)+63)/64, parallelGrain/64, func(lo, hi int) {
		for k := lo; k < hi; k++ {
			b := keep[k]
			end := min(64*k+64, len(out))
			for i := 64 * k; i < end; i++ {
				if b&1 != 0 {
					out[i] = x[i] * scale
				} else {
					out[i] = 0
				}
				b >>= 1
			}
		}
	})
}

// Dropout zeroes each element of x with probability p and scales the rest by
// 1/(1−p) (inverted dropout), so the expected value is unchanged. The mask comes
// from rng's counter stream (rng advances by x's element count) and is kept as a
// bitset, one bit per element, for the backward pass; the same rng state gives
// the same mask at any thread count. p must be in [0, 1). With p = 0 or train
// false it is the identity and draws nothing: the result then shares x's storage
// as Reshape does (no copy), and must be released like any other result.
func Dropout(x *Tensor, p float64, rng *RNG, train bool) *Tensor {
	checkFloat("dropout", x)
	if !(p >= 0 && p < 1) {
		panic(fmt.Sprintf("autodiff: Dropout: p = %g, want 0 ≤ p < 1", p))
	}
	if p == 0 || !train {
		return shpView("dropout", x, append([]int(nil), x.shape...))
	}
	if rng == nil {
		panic("autodiff: Dropout: nil RNG in training")
	}
	tm := startOp()
	n := x.Len()
	seed, off := rng.Seed, rng.advance(n)
	var keep []uint64 // the mask on the CPU, drawn when a CPU path needs it
	mask := func() []uint64 {
		if keep == nil {
			keep = make([]uint64, (n+63)/64)
			DropoutMask(keep, seed, off, n, p)
		}
		return keep
	}
	out := Empty(x.dtype, x.shape...)
	scale := 1 / (1 - p)
	// On a device the kernel draws the same Philox words and the mask is drawn
	// again for the backward, never stored.
	onDevice := func(dst, src *Tensor) bool {
		return tryDevice("dropout", DeviceFor(dropoutOp, []*Tensor{dst, src}, n), func(d metal.Compute) error {
			return metal.RunDropout(d, dst.buf, src.buf, n, seed, off, dropoutThreshold(p), float32(scale))
		})
	}
	path := metal.PathMetal
	switch {
	case onDevice(out, x):
	case x.dtype == Float32:
		path = metal.PathGo
		DropoutKernel(out.Float32s(), x.Float32s(), mask(), float32(scale))
	default:
		path = metal.PathGo
		DropoutKernel(out.Float64s(), x.Float64s(), mask(), scale)
	}
	tm.done("dropout", path, 2*n*x.dtype.Size())
	return record(out, "dropout", func(g *Tensor) {
		accumulate(x, func() *Tensor {
			dx := Empty(g.dtype, g.shape...)
			switch {
			case onDevice(dx, g):
			case g.dtype == Float32:
				DropoutKernel(dx.Float32s(), g.Float32s(), mask(), float32(scale))
			default:
				DropoutKernel(dx.Float64s(), g.Float64s(), mask(), scale)
			}
			return dx
		})
	}, x)
}
