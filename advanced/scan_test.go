package advanced

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/metal"
)

var scanLengths = []int{1, 7, 1000, 4097}

// withThreads runs f at 1 and at 2 workers.
func withThreads(t *testing.T, f func(t *testing.T)) {
	old := metal.Threads()
	defer metal.SetThreads(old)
	for _, th := range []int{1, 2} {
		metal.SetThreads(th)
		t.Run(fmt.Sprintf("threads=%d", th), f)
	}
}

// mat2 is a 2×2 matrix over the integers modulo a prime: its product is
// associative, exact and not commutative.
type mat2 [4]uint64

const mat2Mod = 1_000_000_007

func mat2Mul(x, y mat2) mat2 {
	return mat2{
		(x[0]*y[0] + x[1]*y[2]) % mat2Mod, (x[0]*y[1] + x[1]*y[3]) % mat2Mod,
		(x[2]*y[0] + x[3]*y[2]) % mat2Mod, (x[2]*y[1] + x[3]*y[3]) % mat2Mod,
	}
}

// foldInclusive is the sequential left fold written out, the reference for every
// scan: want[i] = ((x0∘x1)∘x2)∘…∘xi.
func foldInclusive[E any](xs []E, op func(a, b E) E) []E {
	out := make([]E, len(xs))
	for i := range xs {
		if i == 0 {
			out[i] = xs[0]
		} else {
			out[i] = op(out[i-1], xs[i])
		}
	}
	return out
}

// scanCase checks every scan entry point on xs against the fold: Scan, the
// exclusive forms (shifted fold), ParallelScan at the current worker count and
// scanChunked at chunk counts that split xs unevenly; eq compares elements.
func scanCase[E any](t *testing.T, xs []E, identity E, op func(a, b E) E, eq func(want, got E) bool) {
	t.Helper()
	want := foldInclusive(xs, op)
	check := func(name string, got []E, shift bool) {
		t.Helper()
		for i := range xs {
			w := identity
			if !shift {
				w = want[i]
			} else if i > 0 {
				w = want[i-1]
			}
			if !eq(w, got[i]) {
				t.Fatalf("%s n=%d: element %d: want %v, got %v", name, len(xs), i, w, got[i])
			}
		}
	}
	got := make([]E, len(xs))
	Scan(got, xs, op)
	check("Scan", got, false)
	total := ScanExclusive(got, xs, identity, op)
	check("ScanExclusive", got, true)
	assert.True(t, eq(want[len(xs)-1], total), "ScanExclusive total")
	ParallelScan(got, xs, op)
	check("ParallelScan", got, false)
	total = ParallelScanExclusive(got, xs, identity, op)
	check("ParallelScanExclusive", got, true)
	assert.True(t, eq(want[len(xs)-1], total), "ParallelScanExclusive total")
	for _, chunks := range []int{2, 3, 5, 64} {
		scanChunked(got, xs, op, nil, chunks)
		check(fmt.Sprintf("chunks=%d", chunks), got, false)
		total = scanChunked(got, xs, op, &identity, chunks)
		check(fmt.Sprintf("exclusive chunks=%d", chunks), got, true)
		assert.True(t, eq(want[len(xs)-1], total), "exclusive total, %d chunks", chunks)
	}
	// In place.
	in := append([]E(nil), xs...)
	scanChunked(in, in, op, nil, 3)
	check("in place", in, false)
}

func TestScanMatchesSequentialFold(t *testing.T) {
	withThreads(t, func(t *testing.T) {
		// The last length is long enough for ParallelScan to split at 2 workers.
		for _, n := range append(scanLengths, 3*scanGrain+5) {
			rng := rand.New(rand.NewPCG(uint64(n), 7))
			ints := make([]int64, n)
			mats := make([]mat2, n)
			affs := make([]Affine[float64], n)
			for i := range n {
				ints[i] = rng.Int64N(2001) - 1000
				mats[i] = mat2{rng.Uint64N(mat2Mod), rng.Uint64N(mat2Mod), rng.Uint64N(mat2Mod), rng.Uint64N(mat2Mod)}
				affs[i] = Affine[float64]{0.5 + 0.5*rng.Float64(), rng.NormFloat64()}
			}
			exact := func(a, b int64) bool { return a == b }
			t.Run(fmt.Sprintf("sum/n=%d", n), func(t *testing.T) {
				scanCase(t, ints, 0, func(a, b int64) int64 { return a + b }, exact)
			})
			t.Run(fmt.Sprintf("max/n=%d", n), func(t *testing.T) {
				scanCase(t, ints, math.MinInt64, func(a, b int64) int64 { return max(a, b) }, exact)
			})
			t.Run(fmt.Sprintf("mat2/n=%d", n), func(t *testing.T) {
				scanCase(t, mats, mat2{1, 0, 0, 1}, mat2Mul, func(a, b mat2) bool { return a == b })
			})
			t.Run(fmt.Sprintf("affine/n=%d", n), func(t *testing.T) {
				// Affine composition is associative only up to rounding; the
				// recurrence contracts (|a| < 1), so errors stay at the ulp level.
				scanCase(t, affs, Affine[float64]{1, 0}, Affine[float64].Then, func(a, b Affine[float64]) bool {
					return math.Abs(a.A-b.A) <= 1e-12*math.Abs(a.A)+1e-300 && math.Abs(a.B-b.B) <= 1e-12*(1+math.Abs(a.B))
				})
				// The scanned maps applied to h = 0 are the recurrence itself.
				h, got := 0.0, make([]Affine[float64], n)
				ParallelScan(got, affs, Affine[float64].Then)
				for i, f := range affs {
					h = f.A*h + f.B
					require.InDelta(t, h, got[i].Apply(0), 1e-12*(1+math.Abs(h)), "step %d", i)
				}
			})
		}
	})
}

func TestScanEdgeCases(t *testing.T) {
	add := func(a, b int) int { return a + b }
	Scan([]int{}, []int{}, add)
	ParallelScan([]int{}, []int{}, add)
	assert.Equal(t, 5, ScanExclusive([]int{}, []int{}, 5, add), "empty exclusive scan returns the identity")
	assert.Equal(t, 5, scanChunked([]int{}, []int{}, add, ptr(5), 4))
	assert.Panics(t, func() { Scan(make([]int, 2), make([]int, 3), add) })
	assert.Panics(t, func() { ParallelScanExclusive(make([]int, 3), make([]int, 2), 0, add) })
}

func ptr[E any](v E) *E { return &v }

// refLinear is the recurrence written out per channel.
func refLinear(a, b, h0 []float64, steps, channels int) []float64 {
	h := make([]float64, steps*channels)
	for c := range channels {
		s := 0.0
		if h0 != nil {
			s = h0[c]
		}
		for t := range steps {
			s = a[t*channels+c]*s + b[t*channels+c]
			h[t*channels+c] = s
		}
	}
	return h
}

func TestLinearScanMatchesRecurrence(t *testing.T) {
	withThreads(t, func(t *testing.T) {
		for _, steps := range scanLengths {
			for _, channels := range []int{1, 3, 100} {
				if steps*channels > 200_000 {
					continue
				}
				rng := rand.New(rand.NewPCG(uint64(steps), uint64(channels)))
				n := steps * channels
				a, b, h0 := make([]float64, n), make([]float64, n), make([]float64, channels)
				for i := range a {
					a[i] = 0.3 + 0.7*rng.Float64()
					b[i] = rng.NormFloat64()
				}
				for i := range h0 {
					h0[i] = rng.NormFloat64()
				}
				for _, init := range [][]float64{nil, h0} {
					want := refLinear(a, b, init, steps, channels)
					name := fmt.Sprintf("steps=%d/channels=%d/h0=%v", steps, channels, init != nil)
					got := make([]float64, n)
					LinearScan(got, a, b, init, steps, channels)
					assertClose(t, want, got, 1e-12, name)
					for _, segs := range []int{2, 3, 7} {
						clear(got)
						linearScanSegments(got, a, b, init, steps, channels, min(segs, steps))
						assertClose(t, want, got, 1e-12, fmt.Sprintf("%s/segments=%d", name, segs))
					}
					// In place over b, float32.
					a32, b32 := make([]float32, n), make([]float32, n)
					for i := range a {
						a32[i], b32[i] = float32(a[i]), float32(b[i])
					}
					var h32 []float32
					if init != nil {
						h32 = make([]float32, channels)
						for i := range h32 {
							h32[i] = float32(init[i])
						}
					}
					linearScanSegments(b32, a32, b32, h32, steps, channels, min(3, steps))
					got64 := make([]float64, n)
					for i, v := range b32 {
						got64[i] = float64(v)
					}
					assertClose(t, want, got64, 2e-5, name+"/float32 in place")
				}
			}
		}
	})
	assert.Panics(t, func() { LinearScan(make([]float32, 4), make([]float32, 4), make([]float32, 3), nil, 2, 2) })
	LinearScan([]float32{}, []float32{}, []float32{}, nil, 0, 5)
}

// assertClose fails when |want−got| > tol·(1+|want|) anywhere.
func assertClose(t *testing.T, want, got []float64, tol float64, msg string) {
	t.Helper()
	require.Len(t, got, len(want), msg)
	for i := range want {
		if d := math.Abs(want[i] - got[i]); !(d <= tol*(1+math.Abs(want[i]))) {
			t.Fatalf("%s: element %d of %d: want %.12g, got %.12g", msg, i, len(want), want[i], got[i])
		}
	}
}
