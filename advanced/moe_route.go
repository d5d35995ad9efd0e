package advanced

import (
	"fmt"
	"math"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/internal/vecmath"
	"github.com/mlxtrain/mlxtrain/metal"
)

// RouterScore is how a router turns its logits into expert scores. The choice of
// experts is the same either way (both are increasing in the logit); the scores
// feed the gate weights ([GateNorm]) and the load-balancing loss.
type RouterScore string

const (
	// ScoreSoftmax: p = softmax(logits) over the experts (Switch, Mixtral, Qwen-MoE).
	ScoreSoftmax RouterScore = "softmax"
	// ScoreSigmoid: s = σ(logit) per expert, independently (DeepSeek-V3).
	ScoreSigmoid RouterScore = "sigmoid"
)

// GateNorm is how the k chosen experts of a token weigh their outputs.
type GateNorm string

const (
	// GateSoftmaxTopK is the softmax over the k chosen logits (Mixtral):
	// w_j = exp(l_j) / Σ_{i chosen} exp(l_i), whatever the score function.
	GateSoftmaxTopK GateNorm = "softmax_topk"
	// GateRenormalize divides the chosen scores by their sum: w_j = s_j / Σ_{i
	// chosen} s_i (Qwen-MoE's norm_topk_prob, DeepSeek-V3). With softmax scores
	// this equals GateSoftmaxTopK (the normaliser of the full softmax cancels);
	// with sigmoid scores it differs.
	GateRenormalize GateNorm = "renormalize"
	// GateScores uses the chosen scores as they are, w_j = s_j, so a token's
	// weights sum to less than 1 (Switch, DeepSeek-V2, Qwen-MoE without
	// norm_topk_prob).
	GateScores GateNorm = "scores"
)

func (s RouterScore) valid() bool { return s == ScoreSoftmax || s == ScoreSigmoid }

func (g GateNorm) valid() bool {
	return g == GateSoftmaxTopK || g == GateRenormalize || g == GateScores
}

// RouterGatesForward picks the k largest logits of each of rows rows of E
// (best first; ties go to the lower expert index), writes the experts' ids to
// experts and their gate weights to gates (both rows×k).
func RouterGatesForward[T autodiff.Float](gates []T, experts []int32, logits []T, rows, E, k int, score RouterScore, norm GateNorm) {
	checkGates("RouterGatesForward", len(gates), len(experts), len(logits), rows, E, k, score, norm)
	metal.ParallelFor(rows, max(1, 4096/(E+1)), func(lo, hi int) {
		for n := lo; n < hi; n++ {
			row, ids, w := logits[n*E:(n+1)*E], experts[n*k:(n+1)*k], gates[n*k:(n+1)*k]
			selectTopK(ids, row)
			gateWeights(w, ids, row, score, norm)
		}
	})
}

// selectTopK fills ids (length k ≤ len(row)) with the indices of row's k largest
// values in decreasing order, the lower index first among equals (NaN counts as
// largest, as in autodiff.TopK).
func selectTopK[T autodiff.Float](ids []int32, row []T) {
	k := len(ids)
	if k == 0 {
		return
	}
	before := func(a, b T) bool { return a > b || a != a && b == b } // a ranks strictly before b
	n := 0
	for e, v := range row {
		if n == k && !before(v, row[ids[k-1]]) {
			continue
		}
		i := min(n, k-1)
		for i > 0 && before(v, row[ids[i-1]]) {
			ids[i] = ids[i-1]
			i--
		}
		ids[i] = int32(e)
		n = min(n+1, k)
	}
}

// gateWeights computes one row's gate weights from its logits and chosen ids.
func gateWeights[T autodiff.Float](w []T, ids []int32, row []T, score RouterScore, norm GateNorm) {
	k := len(ids)
	if k == 0 {
		return
	}
	switch {
	case (norm == GateSoftmaxTopK || norm == GateRenormalize && score == ScoreSoftmax) && softmaxTopK32(w, ids, row):
	case norm == GateSoftmaxTopK || norm == GateRenormalize && score == ScoreSoftmax:
		top := float64(row[ids[0]])
		var sum float64
		for j, e := range ids {
			v := math.Exp(float64(row[e]) - top)
			w[j] = T(v)
			sum += v
		}
		for j := range w {
			w[j] = T(float64(w[j]) / sum)
		}
	case norm == GateRenormalize: // sigmoid scores
		var sum float64
		for j, e := range ids {
			s := sigmoid(float64(row[e]))
			w[j] = T(s)
			sum += s
		}
		for j := range w {
			w[j] = T(float64(w[j]) / sum)
		}
	case score == ScoreSoftmax: // GateScores
		top := float64(row[ids[0]])
		var sum float64
		for _, v := range row {
			sum += math.Exp(float64(v) - top)
		}
		for j, e := range ids {
			w[j] = T(math.Exp(float64(row[e])-top) / sum)
		}
	default: // GateScores, sigmoid
		for j, e := range ids {
			w[j] = T(sigmoid(float64(row[e])))
		}
	}
}

func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// RouterGatesBackward adds to dlogits (rows×E) the gradient that flows back
// through the gate weights: dgates, gates and experts (rows×k) as the forward
// pass left them, logits its input.
func RouterGatesBackward[T autodiff.Float](dlogits, dgates, gates []T, experts []int32, logits []T, rows, E, k int, score RouterScore, norm GateNorm) {
	checkGates("RouterGatesBackward", len(gates), len(experts), len(logits), rows, E, k, score, norm)
	if len(dlogits) != rows*E || len(dgates) != rows*k {
		panic(fmt.Sprintf("advanced: RouterGatesBackward: dlogits %d, dgates %d for %d rows of %d experts, k %d", len(dlogits), len(dgates), rows, E, k))
	}
	metal.ParallelFor(rows, max(1, 4096/(E+1)), func(lo, hi int) {
		for n := lo; n < hi; n++ {
			gateBackward(dlogits[n*E:(n+1)*E], dgates[n*k:(n+1)*k], gates[n*k:(n+1)*k], experts[n*k:(n+1)*k], logits[n*E:(n+1)*E], score, norm)
		}
	})
}

func gateBackward[T autodiff.Float](dl, g, w []T, ids []int32, row []T, score RouterScore, norm GateNorm) {
	var dot float64 // Σ_j g_j w_j
	for j := range ids {
		dot += float64(g[j]) * float64(w[j])
	}
	switch {
	case norm == GateSoftmaxTopK || norm == GateRenormalize && score == ScoreSoftmax:
		for j, e := range ids {
			dl[e] += T(float64(w[j]) * (float64(g[j]) - dot))
		}
	case norm == GateRenormalize: // w_j = s_j / S with s = σ(l)
		var sum float64
		for _, e := range ids {
			sum += sigmoid(float64(row[e]))
		}
		for j, e := range ids {
			s := sigmoid(float64(row[e]))
			dl[e] += T((float64(g[j]) - dot) / sum * s * (1 - s))
		}
	case score == ScoreSoftmax: // w_j = p_{e_j}, p = softmax over every expert
		top := float64(row[ids[0]])
		var sum float64
		for _, v := range row {
			sum += math.Exp(float64(v) - top)
		}
		for e, v := range row {
			dl[e] -= T(math.Exp(float64(v)-top) / sum * dot)
		}
		for j, e := range ids {
			dl[e] += T(float64(g[j]) * float64(w[j]))
		}
	default: // w_j = σ(l_j)
		for j, e := range ids {
			dl[e] += T(float64(g[j]) * float64(w[j]) * (1 - float64(w[j])))
		}
	}
}

// softmaxTopK32 is gateWeights' softmax over the chosen logits for float32
// rows, with vecmath's exponential in place of math.Exp (the chosen logits
// less the best are ≤ 0; relative error below 2e-7). It reports false, doing
// nothing, for other types and for a NaN or infinite best logit, which the
// float64 formula then handles.
func softmaxTopK32[T autodiff.Float](w []T, ids []int32, row []T) bool {
	r32, ok := any(row).([]float32)
	if !ok {
		return false
	}
	w32 := any(w).([]float32)
	top := r32[ids[0]]
	if top != top || math.IsInf(float64(top), 0) {
		return false
	}
	var sum float32
	for j, e := range ids {
		d := r32[e] - top
		if d != d {
			return false
		}
		w32[j] = vecmath.Exp(d)
		sum += w32[j]
	}
	inv := 1 / sum
	for j := range w32 {
		w32[j] *= inv
	}
	return true
}

func checkGates(op string, ngates, nexperts, nlogits, rows, E, k int, score RouterScore, norm GateNorm) {
	if rows < 0 || E < 1 || k < 0 || k > E || ngates != rows*k || nexperts != rows*k || nlogits != rows*E {
		panic(fmt.Sprintf("advanced: %s: gates %d, experts %d, logits %d for %d rows of %d experts, k %d", op, ngates, nexperts, nlogits, rows, E, k))
	}
	if !score.valid() || !norm.valid() {
		panic(fmt.Sprintf("advanced: %s: unknown score %q or gate norm %q", op, score, norm))
	}
}

// RouterGates routes each row of logits (..., E): it picks the k largest
// logits (best first, ties to the lower expert) and returns their gate weights
// (..., k), differentiable with respect to logits, and the chosen experts
// (..., k) as int32, which the caller owns. See [RouterScore] and [GateNorm].
func RouterGates(logits *autodiff.Tensor, k int, score RouterScore, norm GateNorm) (gates, experts *autodiff.Tensor) {
	if logits.Rank() == 0 || !logits.DType().IsFloat() || k < 1 || k > logits.Dim(-1) {
		panic(fmt.Sprintf("advanced: RouterGates: logits %s %v, k %d", logits.DType(), logits.Shape(), k))
	}
	if !score.valid() || !norm.valid() {
		panic(fmt.Sprintf("advanced: RouterGates: unknown score %q or gate norm %q", score, norm))
	}
	E := logits.Dim(-1)
	rows := logits.Len() / E
	shape := append(append([]int(nil), logits.Shape()[:logits.Rank()-1]...), k)
	gates = autodiff.Empty(logits.DType(), shape...)
	experts = autodiff.Empty(autodiff.Int32, shape...)
	ids := autodiff.Empty(autodiff.Int32, shape...) // the backward's: the caller may release experts
	mode := routerMode(score, norm)
	tm, path := startTimer(), metal.PathGo
	if dev := autodiff.DeviceFor(moeRouterOp, []*autodiff.Tensor{logits, gates, experts, ids}, rows, E); dev != nil && rows > 0 && k <= metal.RouterMaxK &&
		autodiff.Launched("moe_router_gates", routerGatesDevice(dev, gates, experts, ids, logits, rows, E, k, mode)) {
		path = metal.PathMetal
	} else {
		if logits.DType() == autodiff.Float32 {
			RouterGatesForward(gates.Float32s(), experts.Int32s(), logits.Float32s(), rows, E, k, score, norm)
		} else {
			RouterGatesForward(gates.Float64s(), experts.Int32s(), logits.Float64s(), rows, E, k, score, norm)
		}
		copy(ids.Int32s(), experts.Int32s())
	}
	tm.doneOn("moe_router_gates", path, (logits.Len()+2*gates.Len())*4)
	gates = autodiff.Record(gates, "moe_router_gates", func(g *autodiff.Tensor) {
		autodiff.Accumulate(logits, func() *autodiff.Tensor {
			tm, path := startTimer(), metal.PathGo
			if dev := autodiff.DeviceFor(moeRouterOp, []*autodiff.Tensor{logits, gates, ids, g}, rows, E); dev != nil && rows > 0 && k <= metal.RouterMaxK {
				dl := autodiff.Empty(logits.DType(), logits.Shape()...)
				if autodiff.Launched("moe_router_gates", metal.RunRouterGatesBackward(dev, dl.Buffer(), g.Buffer(), gates.Buffer(), ids.Buffer(), logits.Buffer(), rows, E, k, mode)) {
					tm.doneOn("moe_router_gates_backward", metal.PathMetal, 2*logits.Len()*4)
					return dl
				}
				dl.Release()
			}
			dl := autodiff.Zeros(logits.DType(), logits.Shape()...)
			if logits.DType() == autodiff.Float32 {
				RouterGatesBackward(dl.Float32s(), g.Float32s(), gates.Float32s(), ids.Int32s(), logits.Float32s(), rows, E, k, score, norm)
			} else {
				RouterGatesBackward(dl.Float64s(), g.Float64s(), gates.Float64s(), ids.Int32s(), logits.Float64s(), rows, E, k, score, norm)
			}
			tm.doneOn("moe_router_gates_backward", path, 2*logits.Len()*logits.DType().Size())
			return dl
		})
	}, logits)
	autodiff.Own(gates, ids)
	return gates, experts
}

// ExpertCapacity is the number of (token, slot) pairs an expert takes from a
// batch of tokens tokens routed to k of experts experts: ⌈factor·tokens·k/experts⌉,
// or 0 (no limit: dropless) when factor is 0.
func ExpertCapacity(factor float64, tokens, k, experts int) int {
	if factor <= 0 || experts <= 0 {
		return 0
	}
	return int(math.Ceil(factor * float64(tokens) * float64(k) / float64(experts)))
}

// Routing is the dispatch plan of one batch: the (token, slot) pairs sorted by
// expert (a stable counting sort, so in token order within an expert), each
// expert's pairs a contiguous group of rows. Pairs beyond an expert's capacity
// are dropped, the earliest tokens kept: a dropped pair contributes nothing
// (the token's other experts keep their weights, not renormalised, as in Switch).
type Routing struct {
	Tokens, K, Experts int
	Capacity           int // most pairs an expert keeps; 0: no limit

	Routed  []int   // pairs routed to each expert, before the capacity (E)
	Offsets []int   // expert e's rows are [Offsets[e], Offsets[e+1]) (E+1)
	Token   []int32 // the token of each row (Offsets[E])
	Pos     []int32 // the row of pair n·K+j, −1 when dropped (Tokens·K)
	Dropped int     // pairs dropped

	// dev holds the index arrays on the device, when it sorted them; the
	// fields above are then filled by host(), on the first CPU use.
	dev *routeTensors
}

// NewRouting sorts the pairs of experts (tokens×k expert ids, as [RouterGates]
// returns them) by expert, keeping at most capacity per expert (0: all).
func NewRouting(experts []int32, tokens, k, numExperts, capacity int) *Routing {
	if tokens < 0 || k < 1 || numExperts < 1 || capacity < 0 || len(experts) != tokens*k {
		panic(fmt.Sprintf("advanced: NewRouting: %d expert ids for %d tokens, k %d, %d experts, capacity %d", len(experts), tokens, k, numExperts, capacity))
	}
	r := &Routing{Tokens: tokens, K: k, Experts: numExperts, Capacity: capacity,
		Routed: make([]int, numExperts), Offsets: make([]int, numExperts+1), Pos: make([]int32, tokens*k)}
	for i, e := range experts {
		if e < 0 || int(e) >= numExperts {
			panic(fmt.Sprintf("advanced: NewRouting: pair %d has expert %d of %d", i, e, numExperts))
		}
		r.Routed[e]++
	}
	for e, n := range r.Routed {
		if capacity > 0 {
			n = min(n, capacity)
		}
		r.Offsets[e+1] = r.Offsets[e] + n
	}
	r.Token = make([]int32, r.Offsets[numExperts])
	next := append([]int(nil), r.Offsets[:numExperts]...)
	for i, e := range experts {
		p := next[e]
		if p == r.Offsets[e+1] {
			r.Pos[i] = -1
			r.Dropped++
			continue
		}
		r.Pos[i] = int32(p)
		next[e]++
	}
	for n := range tokens { // the tokens of the kept rows, without a division per pair
		for _, p := range r.Pos[n*k : (n+1)*k] {
			if p >= 0 {
				r.Token[p] = int32(n)
			}
		}
	}
	return r
}

// route is NewRouting on an expert-id tensor: a counting sort on the device
// when it takes it (the host then reads back only the offsets and counts; the
// index arrays stay on the device until the caller releases r.tensors()), else
// on the CPU.
func route(experts *autodiff.Tensor, tokens, k, numExperts, capacity int) *Routing {
	tm := startTimer()
	if r := routeDevice(experts, tokens, k, numExperts, capacity); r != nil {
		tm.doneOn("moe_route_sort", metal.PathMetal, 3*tokens*k*4)
		return r
	}
	r := NewRouting(experts.Int32s(), tokens, k, numExperts, capacity)
	tm.doneOn("moe_route_sort", metal.PathGo, 3*tokens*k*4)
	return r
}

// Rows is the number of kept pairs: the rows of the dispatched batch. A
// dropless routing has Tokens·K rows: a device sort's is not read back.
func (r *Routing) Rows() int {
	if r.Offsets == nil && r.Capacity == 0 {
		return r.Tokens * r.K
	}
	return r.host().Offsets[r.Experts]
}

// Load returns the pairs each expert keeps (after the capacity).
func (r *Routing) Load() []int {
	r.host()
	out := make([]int, r.Experts)
	for e := range out {
		out[e] = r.Offsets[e+1] - r.Offsets[e]
	}
	return out
}
