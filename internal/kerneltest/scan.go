package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/metal"
)

// ScanLengths are the row lengths the scans are tried on: empty, within a SIMD
// group, within a threadgroup's block, and over several blocks.
var ScanLengths = []int{0, 1, 7, 33, 127, 1000, 4097}

// scanLayouts are the (outer, inner) around a scanned axis: rows alone, several
// rows, a strided middle axis, and enough strided rows to take a thread each
// (tried on the lengths up to 127 only: its work grows 1034-fold).
var scanLayouts = [][2]int{{1, 1}, {3, 1}, {2, 3}, {2, 517}}

// scanLayoutFits reports whether layout lo is tried at length n.
func scanLayoutFits(lo [2]int, n int) bool { return lo[0]*lo[1] < 1000 || n <= 127 }

// Scan checks the general associative scan (every operator, inclusive and
// exclusive, forward and reverse) against a sequential float64 reference, on
// the lengths of ScanLengths and strided layouts.
func Scan(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(61, 62))
	for _, n := range ScanLengths {
		for _, lo := range scanLayouts {
			if !scanLayoutFits(lo, n) {
				continue
			}
			l := metal.ScanLayout{Outer: lo[0], N: n, Inner: lo[1]}
			for _, op := range []metal.ScanOp{metal.ScanSum, metal.ScanProd, metal.ScanMax, metal.ScanMin} {
				for _, excl := range []bool{false, true} {
					for _, rev := range []bool{false, true} {
						l.Exclusive, l.Reverse = excl, rev
						scanCase(t, d, r, op, l)
					}
				}
			}
			l.Exclusive, l.Reverse = true, false
			scanIntCase(t, d, r, l)
		}
	}
	y := Empty(t, d, 8)
	assert.Error(t, metal.RunScan(d, metal.ScanSum, y, y, metal.ScanLayout{Outer: 1, N: 9, Inner: 1}), "x too small")
	assert.Error(t, metal.RunScan(d, metal.ScanOp(99), y, y, metal.ScanLayout{Outer: 1, N: 2, Inner: 1}), "unknown op")
	release(y)
	require.NoError(t, d.Synchronize())
}

// ScanLong checks a row whose block totals outgrow a block themselves (the
// grid level recursing once more).
func ScanLong(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(63, 64))
	scanCase(t, d, r, metal.ScanSum, metal.ScanLayout{Outer: 1, N: 1<<20 + 4099, Inner: 1})
	require.NoError(t, d.Synchronize())
}

// scanRef is the sequential scan of row i of layout l in float64: combine and
// identity of the operator, and the scale the float32 error grows with (the
// scan of the magnitudes for a sum).
func scanRef(x []float32, op metal.ScanOp, l metal.ScanLayout) (want, scale []float64) {
	want, scale = make([]float64, len(x)), make([]float64, len(x))
	for i := range l.Outer {
		for j := range l.Inner {
			acc, mag := scanIdentity(op), 0.0
			for s := range l.N {
				tt := s
				if l.Reverse {
					tt = l.N - 1 - s
				}
				k := (i*l.N+tt)*l.Inner + j
				if l.Exclusive {
					want[k], scale[k] = acc, mag
				}
				v := float64(x[k])
				switch op {
				case metal.ScanSum, metal.ScanSumInt32:
					acc += v
				case metal.ScanProd:
					acc *= v
				case metal.ScanMax:
					acc = math.Max(acc, v)
				case metal.ScanMin:
					acc = math.Min(acc, v)
				}
				mag += math.Abs(v)
				if !l.Exclusive {
					want[k], scale[k] = acc, mag
				}
			}
		}
	}
	if op != metal.ScanSum {
		scale = nil // products, maxima and minima: relative to the value
	}
	return want, scale
}

func scanIdentity(op metal.ScanOp) float64 {
	switch op {
	case metal.ScanProd:
		return 1
	case metal.ScanMax:
		return math.Inf(-1)
	case metal.ScanMin:
		return math.Inf(1)
	}
	return 0
}

func scanCase(t *testing.T, d metal.Compute, r *rand.Rand, op metal.ScanOp, l metal.ScanLayout) {
	what := fmt.Sprintf("scan op %d %+v", op, l)
	n := l.Outer * l.N * l.Inner
	lo, hi := -1.0, 1.0
	if op == metal.ScanProd {
		lo, hi = 0.999, 1.001 // products of thousands of factors stay finite
	}
	x := Random(r, n, lo, hi)
	xb, y := Upload(t, d, x), Empty(t, d, n)
	require.NoError(t, metal.RunScan(d, op, y, xb, l), what)
	want, scale := scanRef(x, op, l)
	AssertClose(t, Download(y, n), want, scale, what)
	release(xb, y)
}

func scanIntCase(t *testing.T, d metal.Compute, r *rand.Rand, l metal.ScanLayout) {
	what := fmt.Sprintf("scan int32 %+v", l)
	n := l.Outer * l.N * l.Inner
	x := make([]int32, n)
	xf := make([]float32, n)
	for i := range x {
		x[i] = int32(r.IntN(9))
		xf[i] = float32(x[i])
	}
	xb, y := UploadInt32(t, d, x), Empty(t, d, n)
	require.NoError(t, metal.RunScan(d, metal.ScanSumInt32, y, xb, l), what)
	want, _ := scanRef(xf, metal.ScanSumInt32, l)
	y.Wait()
	got := make([]int32, n)
	if n > 0 {
		copy(got, unsafe.Slice((*int32)(y.Pointer()), n))
	}
	for i := range got {
		if float64(got[i]) != want[i] {
			t.Errorf("%s: [%d] = %d, want %v", what, i, got[i], want[i])
			break
		}
	}
	release(xb, y)
}

// LinearScan checks the linear recurrence h_t = a_t·h_{t−1} + b_t and its
// gradients against a sequential float64 reference, with and without h0.
func LinearScan(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(65, 66))
	for _, n := range ScanLengths {
		for _, lo := range scanLayouts {
			if !scanLayoutFits(lo, n) {
				continue
			}
			for _, withH0 := range []bool{false, true} {
				linearCase(t, d, r, metal.ScanLayout{Outer: lo[0], N: n, Inner: lo[1]}, withH0)
			}
		}
	}
	y := Empty(t, d, 8)
	assert.Error(t, metal.RunLinearScan(d, y, y, y, nil, metal.ScanLayout{Outer: 1, N: 2, Inner: 1, Reverse: true}), "reverse")
	release(y)
	require.NoError(t, d.Synchronize())
}

// linearRef runs the recurrence and its backward in float64: h, and the scale
// of its rounding (the recurrence on magnitudes); u = ∂L/∂b, da, dh0.
func linearRef(a, b, h0, g []float32, l metal.ScanLayout) (h, hs, u, us, da, dh0 []float64) {
	n := len(a)
	h, hs, u, us, da = make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	dh0 = make([]float64, l.Outer*l.Inner)
	at := func(i, t, j int) int { return (i*l.N+t)*l.Inner + j }
	for i := range l.Outer {
		for j := range l.Inner {
			row := i*l.Inner + j
			prev, prevs := 0.0, 0.0
			if h0 != nil {
				prev, prevs = float64(h0[row]), math.Abs(float64(h0[row]))
			}
			for t := range l.N {
				k := at(i, t, j)
				h[k] = float64(a[k])*prev + float64(b[k])
				hs[k] = math.Abs(float64(a[k]))*prevs + math.Abs(float64(b[k]))
				prev, prevs = h[k], hs[k]
			}
			next, nexts := 0.0, 0.0
			for t := l.N - 1; t >= 0; t-- {
				k := at(i, t, j)
				u[k] = float64(g[k]) + next
				us[k] = math.Abs(float64(g[k])) + nexts
				hp, hps := 0.0, 0.0
				if t > 0 {
					hp, hps = h[at(i, t-1, j)], hs[at(i, t-1, j)]
				} else if h0 != nil {
					hp, hps = float64(h0[row]), math.Abs(float64(h0[row]))
				}
				da[k] = u[k] * hp
				us[k] = max(us[k], us[k]*hps) // da's scale, which bounds u's too
				next, nexts = float64(a[k])*u[k], math.Abs(float64(a[k]))*us[k]
			}
			if l.N > 0 {
				dh0[row] = float64(a[at(i, 0, j)]) * u[at(i, 0, j)]
			}
		}
	}
	return h, hs, u, us, da, dh0
}

func linearCase(t *testing.T, d metal.Compute, r *rand.Rand, l metal.ScanLayout, withH0 bool) {
	what := fmt.Sprintf("linear scan %+v h0=%v", l, withH0)
	n, rows := l.Outer*l.N*l.Inner, l.Outer*l.Inner
	a, b, g := Random(r, n, -1, 1), Random(r, n, -1, 1), Random(r, n, -1, 1)
	var h0 []float32
	var h0b, dh0b *metal.Buffer
	if withH0 {
		h0 = Random(r, rows, -1, 1)
		h0b, dh0b = Upload(t, d, h0), Empty(t, d, rows)
	}
	ab, bb, gb := Upload(t, d, a), Upload(t, d, b), Upload(t, d, g)
	h, da, db := Empty(t, d, n), Empty(t, d, n), Empty(t, d, n)
	require.NoError(t, metal.RunLinearScan(d, h, ab, bb, h0b, l), what)
	require.NoError(t, metal.RunLinearScanBackward(d, da, db, dh0b, gb, ab, h, h0b, l), what)
	wantH, hs, wantU, us, wantDA, wantDH0 := linearRef(a, b, h0, g, l)
	AssertClose(t, Download(h, n), wantH, hs, what+" h")
	AssertClose(t, Download(db, n), wantU, us, what+" db")
	AssertClose(t, Download(da, n), wantDA, us, what+" da")
	if withH0 {
		AssertClose(t, Download(dh0b, rows), wantDH0, constant(rows, 1), what+" dh0")
		release(h0b, dh0b)
	}
	release(ab, bb, gb, h, da, db)
}
