package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/metal"
)

// normRef is RMSNorm or LayerNorm of one row in float64, forward and backward,
// with the scales their float32 errors grow with.
type normRef struct {
	y, dx, dw, db            []float64 // dw and db: this row's contributions
	mean, rstd               float64
	yScale, dxScale, dwScale []float64
}

func newNormRef(layer bool, x, w, b, g []float64, eps float64) normRef {
	n := len(x)
	nf := float64(n)
	r := normRef{y: make([]float64, n), dx: make([]float64, n), dw: make([]float64, n), db: make([]float64, n),
		yScale: make([]float64, n), dxScale: make([]float64, n), dwScale: make([]float64, n)}
	mu := 0.0
	if layer {
		for _, v := range x {
			mu += v
		}
		mu /= nf
	}
	ss := 0.0
	for _, v := range x {
		ss += (v - mu) * (v - mu)
	}
	rs := 1 / math.Sqrt(ss/nf+eps)
	r.mean, r.rstd = mu, rs
	wAt := func(j int) float64 {
		if w == nil {
			return 1
		}
		return w[j]
	}
	xh := make([]float64, n)
	gw := make([]float64, n)
	var sgx, sg1, agx, ag1 float64
	for j, v := range x {
		xh[j] = (v - mu) * rs
		gw[j] = g[j] * wAt(j)
		r.y[j] = xh[j] * wAt(j)
		r.yScale[j] = (math.Abs(v) + math.Abs(mu)) * rs * math.Abs(wAt(j))
		if b != nil {
			r.y[j] += b[j]
			r.yScale[j] += math.Abs(b[j])
		}
		sgx += gw[j] * xh[j]
		agx += math.Abs(gw[j] * xh[j])
		sg1 += gw[j]
		ag1 += math.Abs(gw[j])
		r.dw[j] = g[j] * xh[j]
		r.db[j] = g[j]
		r.dwScale[j] = math.Abs(g[j]) * (math.Abs(v) + math.Abs(mu)) * rs
	}
	if !layer {
		sg1, ag1 = 0, 0
	}
	for j := range x {
		r.dx[j] = rs * (gw[j] - sg1/nf - xh[j]*sgx/nf)
		r.dxScale[j] = rs * (math.Abs(gw[j]) + ag1/nf + (math.Abs(x[j])+math.Abs(mu))*rs*agx/nf)
	}
	return r
}

// Norm checks RMSNorm (layer false) or LayerNorm forward, with and without
// weights (and bias), and the backward (dx, dw and db) from the kernel's own saved
// statistics, against float64 references. Rows past 64 make dw and db two passes.
func Norm(t *testing.T, d metal.Compute, layer bool) {
	r := rand.New(rand.NewPCG(21, 22))
	const eps = 1e-5
	for _, rows := range append(Sizes, 300) {
		for _, cols := range Sizes {
			for _, affine := range []bool{false, true} {
				n := rows * cols
				x := Random(r, n, -2, 3)
				g := Random(r, n, -1, 1)
				var w, b []float32
				var w64, b64 []float64
				if affine {
					w, b = Random(r, cols, -2, 2), Random(r, cols, -1, 1)
					w64, b64 = f64(w), f64(b)
				}
				if !layer {
					b64 = nil
				}
				xb, gb := Upload(t, d, x), Upload(t, d, g)
				var wb, bb *metal.Buffer
				if affine {
					wb, bb = Upload(t, d, w), Upload(t, d, b)
				}
				out, mean, rstd := Empty(t, d, n), Empty(t, d, rows), Empty(t, d, rows)
				if layer {
					require.NoError(t, metal.RunLayerNorm(d, out, mean, rstd, xb, wb, bb, rows, cols, eps))
				} else {
					require.NoError(t, metal.RunRMSNorm(d, out, rstd, xb, wb, rows, cols, eps))
				}
				dx, dw, db := Empty(t, d, n), Empty(t, d, cols), Empty(t, d, cols)
				if layer {
					require.NoError(t, metal.RunLayerNormBackward(d, dx, dw, db, gb, xb, wb, mean, rstd, rows, cols))
				} else {
					require.NoError(t, metal.RunRMSNormBackward(d, dx, dw, gb, xb, wb, rstd, rows, cols))
				}

				var want, wantDX, yScale, dxScale []float64
				wantMean, wantRstd := make([]float64, rows), make([]float64, rows)
				meanScale := make([]float64, rows)
				wantDW, wantDB := make([]float64, cols), make([]float64, cols)
				dwScale, dbScale := make([]float64, cols), make([]float64, cols)
				x64, g64 := f64(x), f64(g)
				for i := range rows {
					row := newNormRef(layer, x64[i*cols:(i+1)*cols], w64, b64, g64[i*cols:(i+1)*cols], eps)
					want = append(want, row.y...)
					yScale = append(yScale, row.yScale...)
					wantDX = append(wantDX, row.dx...)
					dxScale = append(dxScale, row.dxScale...)
					wantMean[i], wantRstd[i] = row.mean, row.rstd
					for j := range cols {
						meanScale[i] += math.Abs(x64[i*cols+j]) / float64(cols)
						wantDW[j] += row.dw[j]
						dwScale[j] += row.dwScale[j]
						wantDB[j] += row.db[j]
						dbScale[j] += math.Abs(row.db[j])
					}
				}
				what := fmt.Sprintf("layer=%v affine=%v %dx%d", layer, affine, rows, cols)
				AssertClose(t, Download(out, n), want, yScale, what+" y")
				AssertClose(t, Download(rstd, rows), wantRstd, nil, what+" rstd")
				if layer {
					AssertClose(t, Download(mean, rows), wantMean, meanScale, what+" mean")
					AssertClose(t, Download(db, cols), wantDB, dbScale, what+" db")
				}
				AssertClose(t, Download(dx, n), wantDX, dxScale, what+" dx")
				AssertClose(t, Download(dw, cols), wantDW, dwScale, what+" dw")
				release(xb, gb, out, mean, rstd, dx, dw, db)
				if affine {
					release(wb, bb)
				}
			}
		}
	}
	require.NoError(t, d.Synchronize())
}
