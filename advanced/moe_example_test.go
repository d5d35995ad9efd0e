package advanced_test

import (
	"fmt"

	"github.com/mlxtrain/mlxtrain/advanced"
	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/layers"
)

// A training step of a top-2-of-8 mixture of GELU experts with one shared
// expert: the auxiliary loss the forward pass leaves is added to the task loss,
// and the routing statistics are read for the training metrics.
func ExampleMoE() {
	m, err := advanced.NewMoE(autodiff.NewRNG(1), autodiff.Float32, advanced.MoEConfig{
		Dim: 16, Experts: 8, TopK: 2, SharedExperts: 1, Bias: true,
		CapacityFactor: 1.25, AuxLossCoef: 0.01, ZLossCoef: 0.001,
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("parameters:", layers.CountParams(m), "hidden width:", m.Config.Hidden)
	x := autodiff.RandNormal(autodiff.NewRNG(2), autodiff.Float32, 0, 1, 4, 32, 16) // (batch, seq, d_model)

	tp := autodiff.NewTape()
	defer tp.Release()
	y := m.Forward(&layers.Ctx{Tape: tp, Train: true}, x)
	loss := autodiff.MeanAll(autodiff.Mul(y, y)) // a stand-in for the language-model loss
	if aux := m.TakeAuxLoss(); aux != nil {
		loss = autodiff.Add(loss, aux)
	}
	tp.Backward(loss)
	fmt.Println("y", y.Shape(), "router grad", tp.Grad(m.Router.Weight).Shape(), "up_proj grad", tp.Grad(m.UpProj).Shape())

	st := m.Stats()
	total := 0
	for _, n := range st.Routed {
		total += n
	}
	fmt.Printf("%d tokens, %d pairs routed, %d dropped, busiest expert at %.2f× the mean\n", st.Tokens, total, st.Dropped, st.MaxLoad())
	fmt.Printf("balance %.2f (k = 2 when even)\n", st.Balance)
	// Output:
	// parameters: 19280 hidden width: 64
	// y [4 32 16] router grad [8 16] up_proj grad [8 64 16]
	// 128 tokens, 256 pairs routed, 6 dropped, busiest expert at 1.28× the mean
	// balance 2.02 (k = 2 when even)
}

// The router's choice for two tokens among four experts, with the three ways of
// weighing the chosen experts.
func ExampleRouterGates() {
	logits := autodiff.FromFloat64([]float64{
		0.5, -1, 2, 0.25,
		1.5, -0.5, 0, 3,
	}, 2, 4)
	for _, norm := range []advanced.GateNorm{advanced.GateSoftmaxTopK, advanced.GateRenormalize, advanced.GateScores} {
		gates, experts := advanced.RouterGates(logits, 2, advanced.ScoreSoftmax, norm)
		fmt.Printf("%-12s experts %v gates %.3f\n", norm, experts.Int32s(), gates.Float64s())
	}
	gates, _ := advanced.RouterGates(logits, 2, advanced.ScoreSigmoid, advanced.GateRenormalize)
	fmt.Printf("sigmoid, renormalize: %.3f\n", gates.Float64s())
	// Output:
	// softmax_topk experts [2 0 3 0] gates [0.818 0.182 0.818 0.182]
	// renormalize  experts [2 0 3 0] gates [0.818 0.182 0.818 0.182]
	// scores       experts [2 0 3 0] gates [0.691 0.154 0.767 0.171]
	// sigmoid, renormalize: [0.586 0.414 0.538 0.462]
}

// Three tokens routed to two of three experts, at most two pairs per expert:
// the pairs sorted by expert, the third token's pair with expert 0 dropped.
func ExampleNewRouting() {
	experts := []int32{0, 1, 2, 0, 0, 2} // token 0 → 0, 1; token 1 → 2, 0; token 2 → 0, 2
	r := advanced.NewRouting(experts, 3, 2, 3, advanced.ExpertCapacity(1, 3, 2, 3))
	fmt.Println("capacity", r.Capacity, "offsets", r.Offsets, "tokens", r.Token)
	fmt.Println("row of each pair", r.Pos, "dropped", r.Dropped)
	// Output:
	// capacity 2 offsets [0 2 3 5] tokens [0 1 0 1 2]
	// row of each pair [0 2 3 1 -1 4] dropped 1
}

// The dispatch path written out: route, gather by expert, one GEMM per expert
// for each projection, and the weighted scatter back to tokens.
func ExampleGroupedLinear() {
	const tokens, dim, hidden, experts, k = 6, 4, 8, 3, 2
	rng := autodiff.NewRNG(3)
	x := autodiff.RandNormal(rng, autodiff.Float32, 0, 1, tokens, dim)
	router := autodiff.RandNormal(rng, autodiff.Float32, 0, 1, experts, dim)
	up := autodiff.RandNormal(rng, autodiff.Float32, 0, 0.5, experts, hidden, dim)
	down := autodiff.RandNormal(rng, autodiff.Float32, 0, 0.5, experts, dim, hidden)

	tp := autodiff.NewTape()
	defer tp.Release()
	logits := layers.LinearOp(tp.Watch(x), tp.Watch(router), nil)
	gates, ids := advanced.RouterGates(logits, k, advanced.ScoreSoftmax, advanced.GateSoftmaxTopK)
	r := advanced.NewRouting(ids.Int32s(), tokens, k, experts, 0)
	xs := advanced.Dispatch(x, r) // (tokens·k, dim), expert by expert
	h := advanced.GroupedLinearGELU(xs, tp.Watch(up), nil, r.Offsets)
	ys := advanced.GroupedLinear(h, tp.Watch(down), nil, r.Offsets)
	y := advanced.Combine(ys, gates, r) // (tokens, dim)
	tp.BackwardWith(y, autodiff.Full(autodiff.Float32, 1, tokens, dim))
	fmt.Println("rows per expert", r.Load(), "y", y.Shape(), "d up", tp.Grad(up).Shape(), "d router", tp.Grad(router).Shape())
	// Output:
	// rows per expert [6 2 4] y [6 4] d up [3 8 4] d router [3 4]
}

// The load-balancing loss is k for a uniform router with an even load and
// grows as the router favours the experts it sends tokens to.
func ExampleLoadBalanceLoss() {
	even := autodiff.FromInt32([]int32{0, 1, 2, 3}, 4, 1)
	uniform := autodiff.Zeros(autodiff.Float64, 4, 4)
	fmt.Printf("uniform, even: %.3f\n", advanced.LoadBalanceLoss(uniform, even, advanced.ScoreSoftmax).Item())
	skewed := autodiff.FromInt32([]int32{0, 0, 0, 1}, 4, 1)
	confident := autodiff.FromFloat64([]float64{
		4, 0, 0, 0,
		4, 0, 0, 0,
		4, 0, 0, 0,
		0, 4, 0, 0,
	}, 4, 4)
	fmt.Printf("confident, skewed: %.3f\n", advanced.LoadBalanceLoss(confident, skewed, advanced.ScoreSoftmax).Item())
	// Output:
	// uniform, even: 1.000
	// confident, skewed: 2.396
}

// The z-loss of router logits: the mean squared log-sum-exp.
func ExampleRouterZLoss() {
	logits := autodiff.FromFloat64([]float64{0, 0, 10, 10}, 2, 2)
	fmt.Printf("%.4f\n", advanced.RouterZLoss(logits).Item()) // ((ln 2)² + (10 + ln 2)²)/2
	// Output:
	// 57.4119
}

// An expert's capacity for a batch of 2048 tokens routed to 2 of 8 experts.
func ExampleExpertCapacity() {
	fmt.Println(advanced.ExpertCapacity(1, 2048, 2, 8), advanced.ExpertCapacity(1.25, 2048, 2, 8), advanced.ExpertCapacity(0, 2048, 2, 8))
	// Output:
	// 512 640 0
}
