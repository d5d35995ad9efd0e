package advanced

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
)

// refRouterStats is the load-balancing loss E·Σ_e f_e·P_e and the z-loss mean
// lse² of softmax scores, written out plainly.
func refRouterStats(logits []float64, experts []int32, rows, E int) (balance, z float64) {
	if rows == 0 {
		return 0, 0
	}
	f, P := make([]float64, E), make([]float64, E)
	for _, e := range experts {
		f[e] += 1 / float64(rows)
	}
	for n := range rows {
		row := logits[n*E : (n+1)*E]
		var s float64
		for _, v := range row {
			s += math.Exp(v)
		}
		for e, v := range row {
			P[e] += math.Exp(v) / s / float64(rows)
		}
		z += math.Log(s) * math.Log(s) / float64(rows)
	}
	for e := range E {
		balance += f[e] * P[e]
	}
	return float64(E) * balance, z
}

func TestRouterStatsSoftmax(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, E := range []int{1, 3, 8} {
		for _, rows := range []int{0, 1, 7, 33, 127, 200} {
			k := min(2, E)
			logits := make([]float64, rows*E)
			for i := range logits {
				logits[i] = 3 * rng.NormFloat64()
			}
			experts := make([]int32, rows*k)
			for i := range experts {
				experts[i] = int32(rng.IntN(E))
			}
			t.Run(fmt.Sprintf("E%d/rows%d", E, rows), func(t *testing.T) {
				wantB, wantZ := refRouterStats(logits, experts, rows, E)
				b, z := routerStatsSoftmax(logits, experts, rows, E)
				assert.InDelta(t, wantB, b, 1e-12*math.Max(1, wantB))
				assert.InDelta(t, wantZ, z, 1e-12*math.Max(1, wantZ))

				l32 := make([]float32, len(logits))
				for i, v := range logits {
					l32[i] = float32(v)
				}
				b, z = routerStatsSoftmax(l32, experts, rows, E)
				assert.InDelta(t, wantB, b, 1e-6*math.Max(1, wantB))
				assert.InDelta(t, wantZ, z, 1e-6*math.Max(1, wantZ))
				// The separate kernels agree.
				assert.InDelta(t, LoadBalanceForward(l32, experts, rows, E, k, ScoreSoftmax, nil, nil), b, 1e-9*math.Max(1, b))
				assert.InDelta(t, RouterZForward(l32, rows, E, nil), z, 1e-6*math.Max(1, z))
			})
		}
	}
}
