package advanced

import (
	"fmt"
	"math"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// lossBlock is the number of rows each partial sum of the router losses covers:
// fixed, so the sums do not depend on the thread count.
const lossBlock = 64

// routerProbs writes row n's router probabilities over the E experts to p: the
// softmax of the logits, or (sigmoid scores) σ(l) normalised to sum 1, as
// DeepSeek-V3's balance loss does. It returns the normaliser: Σ exp(l−max) for
// softmax, Σ σ(l) for sigmoid.
func routerProbs[T autodiff.Float](p []float64, row []T, score RouterScore) float64 {
	var sum float64
	if score == ScoreSigmoid {
		for e, v := range row {
			p[e] = sigmoid(float64(v))
			sum += p[e]
		}
	} else {
		top := math.Inf(-1)
		for _, v := range row {
			top = math.Max(top, float64(v))
		}
		for e, v := range row {
			p[e] = math.Exp(float64(v) - top)
			sum += p[e]
		}
	}
	for e := range p {
		p[e] /= sum
	}
	return sum
}

// LoadBalanceForward returns the load-balancing loss E·Σ_e f_e·P_e of rows
// tokens routed to k of E experts: f_e is the fraction of tokens sent to expert
// e (pairs routed to e over rows, before any capacity: the fractions sum to k)
// and P_e the mean router probability of e (see [LoadBalanceLoss]). frac and
// prob (length E, or nil) receive f and P.
func LoadBalanceForward[T autodiff.Float](logits []T, experts []int32, rows, E, k int, score RouterScore, frac, prob []float64) float64 {
	if rows < 0 || E < 1 || k < 1 || len(logits) != rows*E || len(experts) != rows*k || !score.valid() ||
		frac != nil && len(frac) != E || prob != nil && len(prob) != E {
		panic(fmt.Sprintf("advanced: LoadBalanceForward: logits %d, experts %d for %d rows of %d experts, k %d, score %q", len(logits), len(experts), rows, E, k, score))
	}
	if rows == 0 {
		return 0
	}
	f, P := make([]float64, E), make([]float64, E)
	for _, e := range experts {
		if e < 0 || int(e) >= E {
			panic(fmt.Sprintf("advanced: LoadBalanceForward: expert %d of %d", e, E))
		}
		f[e]++
	}
	blocks := ceilDiv(rows, lossBlock)
	part := make([]float64, blocks*E)
	metal.ParallelFor(blocks, 1, func(lo, hi int) {
		p := make([]float64, E)
		for b := lo; b < hi; b++ {
			sum := part[b*E : (b+1)*E]
			for n := b * lossBlock; n < min(rows, (b+1)*lossBlock); n++ {
				routerProbs(p, logits[n*E:(n+1)*E], score)
				for e, v := range p {
					sum[e] += v
				}
			}
		}
	})
	var loss float64
	for e := range E {
		for b := range blocks {
			P[e] += part[b*E+e]
		}
		f[e] /= float64(rows)
		P[e] /= float64(rows)
		loss += f[e] * P[e]
	}
	copy(frac, f)
	copy(prob, P)
	return float64(E) * loss
}

// LoadBalanceBackward adds to dlogits the gradient of g·LoadBalanceForward
// through P (f is a count: no gradient), given the f that the forward pass
// returned in frac.
func LoadBalanceBackward[T autodiff.Float](dlogits []T, g float64, logits []T, frac []float64, rows, E int, score RouterScore) {
	if len(dlogits) != rows*E || len(logits) != rows*E || len(frac) != E {
		panic(fmt.Sprintf("advanced: LoadBalanceBackward: dlogits %d, logits %d, frac %d for %d rows of %d experts", len(dlogits), len(logits), len(frac), rows, E))
	}
	if rows == 0 {
		return
	}
	c := make([]float64, E) // ∂loss/∂p[n, e], the same for every row
	for e := range c {
		c[e] = g * float64(E) * frac[e] / float64(rows)
	}
	metal.ParallelFor(rows, max(1, 2048/E), func(lo, hi int) {
		p := make([]float64, E)
		for n := lo; n < hi; n++ {
			row, dl := logits[n*E:(n+1)*E], dlogits[n*E:(n+1)*E]
			sum := routerProbs(p, row, score)
			var cp float64
			for e, v := range p {
				cp += c[e] * v
			}
			for e, v := range p {
				d := v * (c[e] - cp) // softmax: ∂/∂l; sigmoid: ∂/∂s times s
				if score == ScoreSigmoid {
					s := v * sum
					d = (c[e] - cp) / sum * s * (1 - s)
				}
				dl[e] += T(d)
			}
		}
	})
}

// LoadBalanceLoss is the Switch/GShard load-balancing loss of a router:
// E·Σ_e f_e·P_e, where f_e is the fraction of tokens whose top k includes
// expert e (experts (..., k), int32, as [RouterGates] returns them) and P_e the
// mean over tokens of e's router probability (softmax of logits (..., E); for
// sigmoid scores, the scores normalised to sum 1 per token). It is k when the
// router is uniform and the load even (1 for Switch's top-1), and equals Hugging
// Face's load_balancing_loss_func for one layer's logits (Mixtral, Qwen-MoE), so
// their router_aux_loss_coef values carry over. The gradient flows through P.
func LoadBalanceLoss(logits, experts *autodiff.Tensor, score RouterScore) *autodiff.Tensor {
	if logits.Rank() == 0 || !logits.DType().IsFloat() || experts.DType() != autodiff.Int32 || experts.Rank() != logits.Rank() ||
		experts.Len()/max(experts.Dim(-1), 1)*logits.Dim(-1) != logits.Len() || experts.Dim(-1) < 1 || !score.valid() {
		panic(fmt.Sprintf("advanced: LoadBalanceLoss: logits %s %v, experts %s %v, score %q", logits.DType(), logits.Shape(), experts.DType(), experts.Shape(), score))
	}
	E, k := logits.Dim(-1), experts.Dim(-1)
	rows := logits.Len() / E
	if k <= metal.RouterMaxK {
		if sums, lse := routerStatsDevice(logits, experts, k, score); sums != nil {
			return loadBalanceDevice(logits, sums, lse, rows, E, score)
		}
	}
	tm := startTimer()
	frac := make([]float64, E)
	var v float64
	if logits.DType() == autodiff.Float32 {
		v = LoadBalanceForward(logits.Float32s(), experts.Int32s(), rows, E, k, score, frac, nil)
	} else {
		v = LoadBalanceForward(logits.Float64s(), experts.Int32s(), rows, E, k, score, frac, nil)
	}
	tm.done("moe_load_balance", logits.Len()*logits.DType().Size())
	return autodiff.Record(autodiff.Scalar(logits.DType(), v), "moe_load_balance", func(g *autodiff.Tensor) {
		autodiff.Accumulate(logits, func() *autodiff.Tensor {
			tm := startTimer()
			dl := autodiff.Zeros(logits.DType(), logits.Shape()...)
			if logits.DType() == autodiff.Float32 {
				LoadBalanceBackward(dl.Float32s(), g.Item(), logits.Float32s(), frac, rows, E, score)
			} else {
				LoadBalanceBackward(dl.Float64s(), g.Item(), logits.Float64s(), frac, rows, E, score)
			}
			tm.done("moe_load_balance_backward", 2*logits.Len()*logits.DType().Size())
			return dl
		})
	}, logits)
}

// loadBalanceDevice is LoadBalanceLoss from the device's sums (which the op
// then owns; lse, not needed, is released unless nil): the value is read back,
// the gradient is one launch.
func loadBalanceDevice(logits, sums, lse *autodiff.Tensor, rows, E int, score RouterScore) *autodiff.Tensor {
	if lse != nil {
		lse.Release()
	}
	tm := startTimer()
	v := balanceOf(sums.Float32s(), rows, E)
	tm.doneOn("moe_load_balance", metal.PathMetal, logits.Len()*4)
	out := autodiff.Record(autodiff.Scalar(logits.DType(), v), "moe_load_balance", func(g *autodiff.Tensor) {
		autodiff.Accumulate(logits, func() *autodiff.Tensor {
			return lossGradDevice("moe_load_balance_backward", logits, g, func(dev metal.Compute, dl *autodiff.Tensor) error {
				return metal.RunLoadBalanceBackward(dev, dl.Buffer(), g.Buffer(), logits.Buffer(), sums.Buffer(), rows, E, routerMode(score, ""))
			}, func(dl *autodiff.Tensor) {
				frac := make([]float64, E)
				for e := range frac {
					frac[e] = float64(sums.Float32s()[E+e]) / float64(rows)
				}
				LoadBalanceBackward(dl.Float32s(), g.Item(), logits.Float32s(), frac, rows, E, score)
			})
		})
	}, logits)
	autodiff.Own(out, sums)
	return out
}

// routerZDevice is RouterZLoss of value v from the rows' logsumexp lse that
// the device computed (the op then owns lse): the gradient is one launch.
func routerZDevice(logits, lse *autodiff.Tensor, v float64) *autodiff.Tensor {
	E := logits.Dim(-1)
	rows := logits.Len() / E
	tm := startTimer()
	tm.doneOn("moe_router_z", metal.PathMetal, logits.Len()*4)
	out := autodiff.Record(autodiff.Scalar(logits.DType(), v), "moe_router_z", func(g *autodiff.Tensor) {
		autodiff.Accumulate(logits, func() *autodiff.Tensor {
			return lossGradDevice("moe_router_z_backward", logits, g, func(dev metal.Compute, dl *autodiff.Tensor) error {
				return metal.RunRouterZBackward(dev, dl.Buffer(), g.Buffer(), logits.Buffer(), lse.Buffer(), rows, E)
			}, func(dl *autodiff.Tensor) {
				l := make([]float64, rows)
				for i, v := range lse.Float32s() {
					l[i] = float64(v)
				}
				RouterZBackward(dl.Float32s(), g.Item(), logits.Float32s(), l, rows, E)
			})
		})
	}, logits)
	autodiff.Own(out, lse)
	return out
}

// routerLossesDevice is LoadBalanceLoss and RouterZLoss of one batch from one
// computation of the statistics on the device (and one read of them), or nils
// when the device does not take it.
func routerLossesDevice(logits, experts *autodiff.Tensor, score RouterScore) (balance, z *autodiff.Tensor) {
	E, k := logits.Dim(-1), experts.Dim(-1)
	rows := logits.Len() / E
	if k > metal.RouterMaxK {
		return nil, nil
	}
	sums, lse := routerStatsDevice(logits, experts, k, score)
	if sums == nil {
		return nil, nil
	}
	v := float64(sums.Float32s()[2*E]) / float64(rows) // before the balance's op may free sums
	return loadBalanceDevice(logits, sums, nil, rows, E, score), routerZDevice(logits, lse, v)
}

// lossGradDevice returns the gradient of a router loss with respect to the
// logits (float32): from the device launch, or else from the CPU kernel.
func lossGradDevice(op string, logits, g *autodiff.Tensor, launch func(metal.Compute, *autodiff.Tensor) error, cpu func(dl *autodiff.Tensor)) *autodiff.Tensor {
	E := logits.Dim(-1)
	tm := startTimer()
	if dev := autodiff.DeviceFor(moeRouterLossOp, []*autodiff.Tensor{logits, g}, logits.Len()/E, E); dev != nil {
		dl := autodiff.Empty(autodiff.Float32, logits.Shape()...)
		if autodiff.Launched(op, launch(dev, dl)) {
			tm.doneOn(op, metal.PathMetal, 2*logits.Len()*4)
			return dl
		}
		dl.Release()
	}
	dl := autodiff.Zeros(autodiff.Float32, logits.Shape()...)
	cpu(dl)
	tm.done(op, 2*logits.Len()*4)
	return dl
}

// RouterZForward returns the router z-loss of rows rows of E logits, the mean
// of logsumexp(row)², and leaves each row's logsumexp in lse (length rows) when
// it is not nil.
func RouterZForward[T autodiff.Float](logits []T, rows, E int, lse []float64) float64 {
	if rows < 0 || E < 1 || len(logits) != rows*E || lse != nil && len(lse) != rows {
		panic(fmt.Sprintf("advanced: RouterZForward: logits %d, lse %d for %d rows of %d", len(logits), len(lse), rows, E))
	}
	if rows == 0 {
		return 0
	}
	if lse == nil {
		lse = make([]float64, rows)
	}
	autodiff.LogSumExpRows(lse, logits, rows, E)
	var s float64
	for _, v := range lse {
		s += v * v
	}
	return s / float64(rows)
}

// RouterZBackward adds to dlogits the gradient of g·RouterZForward: 2g/rows ·
// lse[n]·softmax(row n).
func RouterZBackward[T autodiff.Float](dlogits []T, g float64, logits []T, lse []float64, rows, E int) {
	if len(dlogits) != rows*E || len(logits) != rows*E || len(lse) != rows {
		panic(fmt.Sprintf("advanced: RouterZBackward: dlogits %d, logits %d, lse %d for %d rows of %d", len(dlogits), len(logits), len(lse), rows, E))
	}
	metal.ParallelFor(rows, max(1, 2048/E), func(lo, hi int) {
		for n := lo; n < hi; n++ {
			c := 2 * g / float64(rows) * lse[n]
			for e, v := range logits[n*E : (n+1)*E] {
				dlogits[n*E+e] += T(c * math.Exp(float64(v)-lse[n]))
			}
		}
	})
}

// RouterZLoss is ST-MoE's router z-loss: the mean over tokens of
// logsumexp(logits)², logits (..., E). It keeps the router's logits small.
func RouterZLoss(logits *autodiff.Tensor) *autodiff.Tensor {
	if logits.Rank() == 0 || !logits.DType().IsFloat() || logits.Dim(-1) < 1 {
		panic(fmt.Sprintf("advanced: RouterZLoss: logits %s %v", logits.DType(), logits.Shape()))
	}
	E := logits.Dim(-1)
	rows := logits.Len() / E
	if sums, lse := routerStatsDevice(logits, nil, 0, ScoreSoftmax); sums != nil {
		v := float64(sums.Float32s()[2*E]) / float64(rows)
		sums.Release()
		return routerZDevice(logits, lse, v)
	}
	tm := startTimer()
	lse := make([]float64, rows)
	var v float64
	if logits.DType() == autodiff.Float32 {
		v = RouterZForward(logits.Float32s(), rows, E, lse)
	} else {
		v = RouterZForward(logits.Float64s(), rows, E, lse)
	}
	tm.done("moe_router_z", logits.Len()*logits.DType().Size())
	return autodiff.Record(autodiff.Scalar(logits.DType(), v), "moe_router_z", func(g *autodiff.Tensor) {
		autodiff.Accumulate(logits, func() *autodiff.Tensor {
			tm := startTimer()
			dl := autodiff.Zeros(logits.DType(), logits.Shape()...)
			if logits.DType() == autodiff.Float32 {
				RouterZBackward(dl.Float32s(), g.Item(), logits.Float32s(), lse, rows, E)
			} else {
				RouterZBackward(dl.Float64s(), g.Item(), logits.Float64s(), lse, rows, E)
			}
			tm.done("moe_router_z_backward", 2*logits.Len()*logits.DType().Size())
			return dl
		})
	}, logits)
}
