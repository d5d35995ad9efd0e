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
)

// LogSoftmax checks the row log-softmax against autodiff's in float64. The
// scale is |x| + |ln Σ exp|: the output is their difference.
func LogSoftmax(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(15, 16))
	for _, rows := range Sizes {
		for _, cols := range append(Sizes, 1000) {
			n := rows * cols
			x := Random(r, n, -10, 10)
			in, out := Upload(t, d, x), Empty(t, d, n)
			require.NoError(t, metal.RunLogSoftmax(d, out, in, rows, cols))
			x64 := f64(x)
			want := make([]float64, n)
			autodiff.LogSoftmaxRows(want, x64, rows, cols)
			scale := make([]float64, n)
			for i := range scale {
				scale[i] = math.Abs(x64[i]) + math.Abs(x64[i]-want[i])
			}
			AssertClose(t, Download(out, n), want, scale, fmt.Sprintf("log-softmax %dx%d", rows, cols))
			release(in, out)
		}
	}
	require.NoError(t, d.Synchronize())
}

// SoftmaxBackward checks the backward of softmax and of log-softmax given the
// forward's output y, against autodiff's in float64; the scale is the sum of the
// magnitudes of the terms.
func SoftmaxBackward(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(17, 18))
	for _, log := range []bool{false, true} {
		for _, rows := range Sizes {
			for _, cols := range append(Sizes, 1000) {
				n := rows * cols
				x64 := f64(Random(r, n, -5, 5))
				y64 := make([]float64, n)
				if log {
					autodiff.LogSoftmaxRows(y64, x64, rows, cols)
				} else {
					autodiff.SoftmaxRows(y64, x64, rows, cols)
				}
				y := make([]float32, n)
				for i, v := range y64 {
					y[i] = float32(v)
				}
				g := Random(r, n, -1, 1)
				yb, gb, dx := Upload(t, d, y), Upload(t, d, g), Empty(t, d, n)
				want := make([]float64, n)
				scale := make([]float64, n)
				yw, gw := f64(y), f64(g)
				if log {
					require.NoError(t, metal.RunLogSoftmaxBackward(d, dx, gb, yb, rows, cols))
					autodiff.LogSoftmaxBackwardAxis(want, gw, yw, rows, cols, 1)
				} else {
					require.NoError(t, metal.RunSoftmaxBackward(d, dx, gb, yb, rows, cols))
					autodiff.SoftmaxBackwardAxis(want, gw, yw, rows, cols, 1)
				}
				for i := range rows {
					sg, sgy := 0.0, 0.0
					for j := range cols {
						sg += math.Abs(gw[i*cols+j])
						sgy += math.Abs(gw[i*cols+j] * yw[i*cols+j])
					}
					for j := range cols {
						k := i*cols + j
						if log {
							scale[k] = math.Abs(gw[k]) + math.Exp(yw[k])*sg
						} else {
							scale[k] = math.Abs(yw[k]) * (math.Abs(gw[k]) + sgy)
						}
					}
				}
				AssertClose(t, Download(dx, n), want, scale, fmt.Sprintf("softmax backward log=%v %dx%d", log, rows, cols))
				release(yb, gb, dx)
			}
		}
	}
	require.NoError(t, d.Synchronize())
}

// CrossEntropy checks the fused cross-entropy forward (loss and lse per row) and
// backward (per-row and scalar upstream gradients) against autodiff's row
// kernels in float64, with ignored rows, label smoothing and an ignore index of 0.
func CrossEntropy(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(19, 20))
	configs := []metal.CrossEntropyConfig{{Ignore: -100}, {Ignore: -100, Smoothing: 0.1}, {Ignore: 0, Smoothing: 0.25}}
	for ci, c := range configs {
		for _, rows := range Sizes {
			for _, vocab := range append(Sizes, 1000) {
				n := rows * vocab
				x := Random(r, n, -5, 5)
				targets := make([]int32, rows)
				count := 0
				for i := range targets {
					targets[i] = int32(r.IntN(vocab))
					if i%4 == 3 {
						targets[i] = c.Ignore
					}
					if targets[i] != c.Ignore {
						count++
					}
				}
				xb, tb := Upload(t, d, x), UploadInt32(t, d, targets)
				loss, lse := Empty(t, d, rows), Empty(t, d, rows)
				require.NoError(t, metal.RunCrossEntropy(d, loss, lse, xb, tb, rows, vocab, c))
				x64 := f64(x)
				wantLoss, wantLSE := make([]float64, rows), make([]float64, rows)
				autodiff.CrossEntropyRows(wantLoss, wantLSE, x64, targets, rows, vocab, c.Ignore, float64(c.Smoothing))
				lossScale, lseScale := make([]float64, rows), make([]float64, rows)
				for i := range rows {
					row := x64[i*vocab : (i+1)*vocab]
					m, abs := math.Inf(-1), 0.0
					for _, v := range row {
						m = math.Max(m, math.Abs(v))
						abs += math.Abs(v)
					}
					lseScale[i] = m
					if targets[i] != c.Ignore {
						lossScale[i] = math.Abs(wantLSE[i]) + math.Abs(row[targets[i]]) + float64(c.Smoothing)/float64(vocab)*abs
					}
				}
				what := fmt.Sprintf("cross-entropy config %d %dx%d", ci, rows, vocab)
				AssertClose(t, Download(loss, rows), wantLoss, lossScale, what+" loss")
				AssertClose(t, Download(lse, rows), wantLSE, lseScale, what+" lse")

				for _, perRow := range []bool{true, false} {
					gn, mul := 1, float32(1)/float32(max(count, 1))
					if perRow {
						gn, mul = rows, 1
					}
					g := Random(r, gn, -2, 2)
					gb, dl := Upload(t, d, g), Empty(t, d, n)
					require.NoError(t, metal.RunCrossEntropyBackward(d, dl, xb, tb, lse, gb, rows, vocab, c, mul, perRow))
					sc := make([]float64, gn)
					for i := range sc {
						sc[i] = float64(g[i] * mul)
					}
					want := make([]float64, n)
					autodiff.CrossEntropyBackwardRows(want, x64, targets, wantLSE, sc, rows, vocab, c.Ignore, float64(c.Smoothing))
					scale := make([]float64, n)
					for i := range rows {
						s := math.Abs(sc[min(i, gn-1)])
						for j := range vocab {
							scale[i*vocab+j] = s * (math.Exp(x64[i*vocab+j]-wantLSE[i]) + 1)
						}
					}
					got := Download(dl, n)
					AssertClose(t, got, want, scale, fmt.Sprintf("%s backward perRow=%v", what, perRow))
					for i := range rows {
						if targets[i] == c.Ignore {
							assert.Equal(t, make([]float32, vocab), got[i*vocab:(i+1)*vocab], "ignored rows get zeros")
						}
					}
					release(gb, dl)
				}
				release(xb, tb, loss, lse)
			}
		}
	}
	require.NoError(t, d.Synchronize())
}
