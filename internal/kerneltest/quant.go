package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
	"github.com/mlxtrain/mlxtrain/quant"
)

// QuantShapes are the (N, K, group size) of the quantized matrices Quant tries:
// odd output counts, one and several groups per row.
var QuantShapes = [][3]int{{1, 32, 32}, {7, 96, 32}, {33, 128, 64}, {5, 256, 128}}

// QuantRows are the rows of x Quant tries: the matrix-vector kernel (up to
// metal.QuantMatVecMaxRows) and the tiled one, with partial tiles.
var QuantRows = []int{1, 3, 17}

// UploadUint32 copies xs into a new buffer of d.
func UploadUint32(t testing.TB, d metal.Compute, xs []uint32) *metal.Buffer {
	f := make([]float32, len(xs))
	for i, v := range xs {
		f[i] = math.Float32frombits(v)
	}
	return Upload(t, d, f)
}

// uploadQuant quantizes a random matrix with quant.Quantize and uploads it.
func uploadQuant(t testing.TB, d metal.Compute, r *rand.Rand, bits, n, k, group int) (*quant.Matrix, *metal.QuantMatrix) {
	m, err := quant.Quantize(quant.Params{GroupSize: group, Bits: bits}, Random(r, n*k, -1, 1), n, k)
	require.NoError(t, err)
	return m, &metal.QuantMatrix{Packed: UploadUint32(t, d, m.Packed), Scales: Upload(t, d, m.Scales),
		Biases: Upload(t, d, m.Biases), N: n, K: k, Bits: bits, GroupSize: group}
}

func releaseQuant(w *metal.QuantMatrix) { release(w.Packed, w.Scales, w.Biases) }

// Quant checks the quantized kernels against package quant's Go references for
// every bit width on odd shapes: y = x·Wᵀ (quant.MatMulTPath, the reference
// path), its input gradient dx = g·W (quant.MatMul) and the quantized embedding
// lookup (quant.Gather). Reduction orders differ: the tolerance is float32's
// relative to the sum of magnitudes.
func Quant(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(41, 42))
	for _, bits := range quant.ValidBits {
		for _, s := range QuantShapes {
			n, k, group := s[0], s[1], s[2]
			m, w := uploadQuant(t, d, r, bits, n, k, group)
			deq := m.Dequantize()
			for _, rows := range QuantRows {
				what := fmt.Sprintf("bits=%d N=%d K=%d G=%d rows=%d", bits, n, k, group, rows)
				x, g := Random(r, rows*k, -1, 1), Random(r, rows*n, -1, 1)
				xb, gb := Upload(t, d, x), Upload(t, d, g)
				y, dx := Empty(t, d, rows*n), Empty(t, d, rows*k)
				require.NoError(t, metal.RunQuantMatMulT(d, y, xb, w, rows), what)
				require.NoError(t, metal.RunQuantMatMul(d, dx, gb, w, rows), what)
				wantY, wantDX := make([]float32, rows*n), make([]float32, rows*k)
				quant.MatMulTPath(metal.PathReference, wantY, x, rows, m)
				quant.MatMul(wantDX, g, rows, m)
				AssertClose(t, Download(y, rows*n), f64(wantY), absProduct(x, deq, rows, n, k, false), what+" y=x·Wᵀ")
				AssertClose(t, Download(dx, rows*k), f64(wantDX), absProduct(g, deq, rows, n, k, true), what+" dx=g·W")
				release(xb, gb, y, dx)
			}
			ids := make([]int32, 13)
			for i := range ids {
				ids[i] = int32(r.IntN(n))
			}
			ib, out := UploadInt32(t, d, ids), Empty(t, d, len(ids)*k)
			require.NoError(t, metal.RunQuantGather(d, out, ib, w, len(ids)))
			want := make([]float32, len(ids)*k)
			quant.Gather(want, m, ids)
			AssertClose(t, Download(out, len(ids)*k), f64(want), nil, fmt.Sprintf("gather bits=%d N=%d K=%d", bits, n, k))
			release(ib, out)
			releaseQuant(w)
		}
	}
	// One matrix of a stack, on rows of x and y from an offset on.
	for _, rows := range []int{2, 18} {
		p := quant.Params{GroupSize: 32, Bits: 5}
		const n, k, skip = 7, 64, 3
		m0, err := quant.Quantize(p, Random(r, n*k, -1, 1), n, k)
		require.NoError(t, err)
		m1, err := quant.Quantize(p, Random(r, n*k, -1, 1), n, k)
		require.NoError(t, err)
		w := &metal.QuantMatrix{Packed: UploadUint32(t, d, append(append([]uint32{}, m0.Packed...), m1.Packed...)),
			Scales: Upload(t, d, append(append([]float32{}, m0.Scales...), m1.Scales...)),
			Biases: Upload(t, d, append(append([]float32{}, m0.Biases...), m1.Biases...)),
			N:      n, K: k, Bits: 5, GroupSize: 32, PackedOff: len(m0.Packed), GroupOff: len(m0.Scales)}
		x, g := Random(r, (skip+rows)*k, -1, 1), Random(r, (skip+rows)*n, -1, 1)
		xb, gb := Upload(t, d, x), Upload(t, d, g)
		y, dx := Empty(t, d, (skip+rows)*n), Empty(t, d, (skip+rows)*k)
		require.NoError(t, metal.RunQuantMatMulTAt(d, y, xb, skip*n, skip*k, w, rows))
		require.NoError(t, metal.RunQuantMatMulAt(d, dx, gb, skip*k, skip*n, w, rows))
		wantY, wantDX := make([]float32, rows*n), make([]float32, rows*k)
		quant.MatMulTPath(metal.PathReference, wantY, x[skip*k:], rows, m1)
		quant.MatMul(wantDX, g[skip*n:], rows, m1)
		deq := m1.Dequantize()
		AssertClose(t, Download(y, (skip+rows)*n)[skip*n:], f64(wantY), absProduct(x[skip*k:], deq, rows, n, k, false), "offsets y")
		AssertClose(t, Download(dx, (skip+rows)*k)[skip*k:], f64(wantDX), absProduct(g[skip*n:], deq, rows, n, k, true), "offsets dx")
		release(xb, gb, y, dx)
		releaseQuant(w)
	}
	// Layouts the kernels do not take.
	_, w := uploadQuant(t, d, r, 4, 3, 64, 32)
	y, x := Empty(t, d, 64), Empty(t, d, 64)
	bad := *w
	bad.Bits = 7
	assert.Error(t, metal.RunQuantMatMulT(d, y, x, &bad, 1), "7 bits")
	bad = *w
	bad.GroupSize = 24
	assert.Error(t, metal.RunQuantMatMulT(d, y, x, &bad, 1), "group of 24")
	bad = *w
	bad.N = 1000
	assert.Error(t, metal.RunQuantMatMulT(d, y, x, &bad, 1), "packed too small")
	release(y, x)
	releaseQuant(w)
	require.NoError(t, d.Synchronize())
}

// absProduct is |a|·|W|ᵀ (a rows × K) or, with back, |a|·|W| (a rows × N): the
// scale of each output's rounding error.
func absProduct(a, w []float32, rows, n, k int, back bool) []float64 {
	if !back {
		out := make([]float64, rows*n)
		for i := range rows {
			for o := range n {
				s := 0.0
				for c := range k {
					s += math.Abs(float64(a[i*k+c]) * float64(w[o*k+c]))
				}
				out[i*n+o] = s
			}
		}
		return out
	}
	out := make([]float64, rows*k)
	for i := range rows {
		for o := range n {
			for c := range k {
				out[i*k+c] += math.Abs(float64(a[i*n+o]) * float64(w[o*k+c]))
			}
		}
	}
	return out
}

// QuantExpertRows are the rows per expert QuantExperts tries: empty groups,
// one row, partial tiles and a group over several tiles.
var QuantExpertRows = [][]int{{1}, {0, 7, 0, 33}, {127, 0, 1}, {0, 0}}

// QuantExperts checks the grouped quantized kernels (metal.RunQuantGatherMM
// and its input gradient) against package quant's Go references expert by
// expert (quant.MatMulTPath on the reference path, quant.MatMul) for every
// bit width, with and without a bias, on the groups of QuantExpertRows.
func QuantExperts(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(43, 44))
	for _, bits := range quant.ValidBits {
		for gi, groups := range QuantExpertRows {
			E := len(groups)
			n, k, group := []int{7, 33, 5, 16}[gi], []int{64, 96, 256, 32}[gi], []int{32, 32, 128, 32}[gi]
			offsets := []int32{0}
			for _, g := range groups {
				offsets = append(offsets, offsets[len(offsets)-1]+int32(g))
			}
			rows := int(offsets[E])
			what := fmt.Sprintf("bits=%d experts=%v N=%d K=%d G=%d", bits, groups, n, k, group)
			ex, err := quant.QuantizeExperts(quant.Params{GroupSize: group, Bits: bits}, autodiff.FromFloat32(Random(r, E*n*k, -1, 1), E, n, k))
			require.NoError(t, err, what)
			w := &metal.QuantMatrix{Packed: UploadUint32(t, d, ex.Packed.Uint32s()), Scales: Upload(t, d, ex.Scales.Float32s()),
				Biases: Upload(t, d, ex.Biases.Float32s()), N: n, K: k, Bits: bits, GroupSize: group}
			x, g, b := Random(r, rows*k, -1, 1), Random(r, rows*n, -1, 1), Random(r, E*n, -1, 1)
			xb, gb, bb, ob := Upload(t, d, append(x, 0)), Upload(t, d, append(g, 0)), Upload(t, d, b), UploadInt32(t, d, offsets)
			y, yb, dx := Empty(t, d, rows*n+1), Empty(t, d, rows*n+1), Empty(t, d, rows*k+1)
			require.NoError(t, metal.RunQuantGatherMM(d, y, xb, ob, nil, w, rows, E), what)
			require.NoError(t, metal.RunQuantGatherMM(d, yb, xb, ob, bb, w, rows, E), what)
			require.NoError(t, metal.RunQuantGatherMMBackward(d, dx, gb, ob, w, rows, E), what)
			wantY, wantYB, wantDX := make([]float64, rows*n), make([]float64, rows*n), make([]float64, rows*k)
			scaleY, scaleDX := make([]float64, 0, rows*n), make([]float64, 0, rows*k)
			for e := range E {
				lo, hi := int(offsets[e]), int(offsets[e+1])
				m := ex.Expert(e)
				ye, dxe := make([]float32, (hi-lo)*n), make([]float32, (hi-lo)*k)
				quant.MatMulTPath(metal.PathReference, ye, x[lo*k:hi*k], hi-lo, m)
				quant.MatMul(dxe, g[lo*n:hi*n], hi-lo, m)
				for i, v := range ye {
					wantY[lo*n+i] = float64(v)
					wantYB[lo*n+i] = float64(v) + float64(b[e*n+i%n])
				}
				copy(wantDX[lo*k:hi*k], f64(dxe))
				deq := m.Dequantize()
				scaleY = append(scaleY, absProduct(x[lo*k:hi*k], deq, hi-lo, n, k, false)...)
				scaleDX = append(scaleDX, absProduct(g[lo*n:hi*n], deq, hi-lo, n, k, true)...)
			}
			scaleYB := make([]float64, len(scaleY))
			for i, s := range scaleY {
				scaleYB[i] = s + 1
			}
			AssertClose(t, Download(y, rows*n), wantY, scaleY, what+" y=x·W_eᵀ")
			AssertClose(t, Download(yb, rows*n), wantYB, scaleYB, what+" y=x·W_eᵀ+b_e")
			AssertClose(t, Download(dx, rows*k), wantDX, scaleDX, what+" dx=g·W_e")
			release(xb, gb, bb, ob, y, yb, dx)
			releaseQuant(w)
			ex.Packed.Release()
			ex.Scales.Release()
			ex.Biases.Release()
		}
	}
	// Operands the kernels do not take.
	_, w := uploadQuant(t, d, r, 4, 6, 64, 32) // 3 experts of 2 rows
	w.N = 2
	y, x, off := Empty(t, d, 64), Empty(t, d, 128), UploadInt32(t, d, []int32{0, 1, 1, 2})
	assert.NoError(t, metal.RunQuantGatherMM(d, y, x, off, nil, w, 2, 3))
	assert.Error(t, metal.RunQuantGatherMM(d, y, x, off, nil, w, 2, 4), "a stack of 4 experts")
	assert.Error(t, metal.RunQuantGatherMM(d, y, x, off, nil, w, 2, 0), "no experts")
	assert.Error(t, metal.RunQuantGatherMMBackward(d, y, x, off, w, 3, 3), "dx too small")
	release(y, x, off)
	releaseQuant(w)
	require.NoError(t, d.Synchronize())
}
