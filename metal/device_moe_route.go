package metal

import "fmt"

// The routing kernels of a mixture of experts (shaders/moe_route.metal).

// RouterMode selects the router's score function and gate normalisation for
// the routing kernels: an OR of at most one score flag and one norm flag (no
// flag: softmax scores, the softmax over the k chosen logits).
type RouterMode uint32

// The router modes.
const (
	RouterSigmoid     RouterMode = 1      // σ(logit) scores instead of softmax
	RouterRenormalize RouterMode = 1 << 1 // the chosen scores over their sum
	RouterScores      RouterMode = 2 << 1 // the chosen scores as they are
)

// RouterMaxK is the most experts per token the routing kernels take.
const RouterMaxK = 16

type routerParams struct{ Rows, Experts, K, Mode uint32 }

func routerCheck(kernel string, rows, experts, k int) (routerParams, error) {
	if experts < 1 || k < 1 || k > experts || k > RouterMaxK {
		return routerParams{}, fmt.Errorf("%s: top %d of %d experts (at most %d)", kernel, k, experts, RouterMaxK)
	}
	if err := checkCount(kernel, rows, experts); err != nil {
		return routerParams{}, err
	}
	return routerParams{uint32(rows), uint32(experts), uint32(k), 0}, nil
}

func routerLaunch(kernel string, rows int, args ...Arg) *Launch {
	return &Launch{Kernel: kernel, Groups: [3]int{groupsFor(rows, 64), 1, 1}, Threads: [3]int{64, 1, 1}, Args: args}
}

// RunRouterGates picks the k largest of each row of logits (rows × experts;
// best first, ties to the lower expert, NaN as largest), writing their ids to
// experts and their gate weights to gates (both rows × k). One launch
// (moe_router_gates_f32).
func RunRouterGates(d Compute, gates, experts, logits *Buffer, rows, numExperts, k int, mode RouterMode) error {
	const kernel = "moe_router_gates_f32"
	p, err := routerCheck(kernel, rows, numExperts, k)
	if err != nil {
		return err
	}
	p.Mode = uint32(mode)
	if err := checkBuffers(kernel, need{"gates", gates, rows * k, false}, need{"experts", experts, rows * k, false},
		need{"logits", logits, rows * numExperts, false}); err != nil {
		return err
	}
	if rows == 0 {
		return nil
	}
	return d.Dispatch(routerLaunch(kernel, rows, Out(0, gates), Out(1, experts), In(2, logits), Params(3, p)))
}

// RunRouterGatesBackward writes dlogits (rows × experts) from dgates and what
// [RunRouterGates] left in gates and experts. One launch
// (moe_router_gates_backward_f32).
func RunRouterGatesBackward(d Compute, dlogits, dgates, gates, experts, logits *Buffer, rows, numExperts, k int, mode RouterMode) error {
	const kernel = "moe_router_gates_backward_f32"
	p, err := routerCheck(kernel, rows, numExperts, k)
	if err != nil {
		return err
	}
	p.Mode = uint32(mode)
	if err := checkBuffers(kernel, need{"dlogits", dlogits, rows * numExperts, false}, need{"dgates", dgates, rows * k, false},
		need{"gates", gates, rows * k, false}, need{"experts", experts, rows * k, false},
		need{"logits", logits, rows * numExperts, false}); err != nil {
		return err
	}
	if rows == 0 {
		return nil
	}
	return d.Dispatch(routerLaunch(kernel, rows, Out(0, dlogits), In(1, dgates), In(2, gates), In(3, experts), In(4, logits), Params(5, p)))
}

// RunRouterStats writes, for rows of router logits and their chosen experts
// (rows × k), the sums the auxiliary losses need into sums (2·experts + 1):
// Σ_n p[n, e] (the router probabilities: softmax, or σ normalised to sum 1
// with RouterSigmoid), then the pairs routed to each e (0 when experts is nil
// and k 0), then Σ_n lse[n]²; and each row's logsumexp into lse (rows). probs
// (rows × experts) is scratch.
// Two launches (moe_router_probs_f32, moe_router_sums_f32).
func RunRouterStats(d Compute, sums, lse, probs, logits, experts *Buffer, rows, numExperts, k int, mode RouterMode) error {
	const kernel = "moe_router_stats"
	p, err := routerCheck(kernel, rows, numExperts, max(k, 1))
	if err != nil {
		return err
	}
	p.K, p.Mode = uint32(k), uint32(mode&RouterSigmoid)
	if (experts == nil) != (k == 0) {
		return fmt.Errorf("%s: experts and k = %d: want both or neither", kernel, k)
	}
	if err := checkBuffers(kernel, need{"sums", sums, 2*numExperts + 1, false}, need{"lse", lse, rows, false},
		need{"probs", probs, rows * numExperts, false}, need{"logits", logits, rows * numExperts, false},
		need{"experts", experts, rows * k, true}); err != nil {
		return err
	}
	if rows > 0 {
		if err := d.Dispatch(routerLaunch("moe_router_probs_f32", rows, Out(0, probs), Out(1, lse), In(2, logits), Params(3, p))); err != nil {
			return err
		}
	}
	var keep []*Buffer
	defer func() { releaseBuffers(keep) }()
	if rows == 0 { // the kernel reads nothing of them; bind something
		if probs, err = placeholder(d, nil, &keep); err != nil {
			return err
		}
		lse, experts = probs, probs
	}
	if experts, err = placeholder(d, experts, &keep); err != nil {
		return err
	}
	return d.Dispatch(&Launch{Kernel: "moe_router_sums_f32", Groups: [3]int{numExperts + 1, 1, 1}, Threads: [3]int{256, 1, 1},
		Args: []Arg{Out(0, sums), In(1, probs), In(2, lse), In(3, experts), Params(4, p)}})
}

// RunLoadBalanceBackward writes dlogits (rows × experts), the gradient of
// g[0]·E·Σ_e f_e·P_e (the load-balancing loss; f_e from sums as
// [RunRouterStats] wrote them). One launch (moe_load_balance_backward_f32).
func RunLoadBalanceBackward(d Compute, dlogits, g, logits, sums *Buffer, rows, numExperts int, mode RouterMode) error {
	const kernel = "moe_load_balance_backward_f32"
	p, err := routerCheck(kernel, rows, numExperts, 1)
	if err != nil {
		return err
	}
	p.Mode = uint32(mode & RouterSigmoid)
	if err := checkBuffers(kernel, need{"dlogits", dlogits, rows * numExperts, false}, need{"g", g, 1, false},
		need{"logits", logits, rows * numExperts, false}, need{"sums", sums, 2*numExperts + 1, false}); err != nil {
		return err
	}
	if rows == 0 {
		return nil
	}
	return d.Dispatch(routerLaunch(kernel, rows, Out(0, dlogits), In(1, g), In(2, logits), In(3, sums), Params(4, p)))
}

// RunRouterZBackward writes dlogits (rows × experts), the gradient of g[0]
// times the router z-loss (the mean of lse²; lse as [RunRouterStats] wrote it).
// One launch (moe_router_z_backward_f32).
func RunRouterZBackward(d Compute, dlogits, g, logits, lse *Buffer, rows, numExperts int) error {
	const kernel = "moe_router_z_backward_f32"
	p, err := routerCheck(kernel, rows, numExperts, 1)
	if err != nil {
		return err
	}
	if err := checkBuffers(kernel, need{"dlogits", dlogits, rows * numExperts, false}, need{"g", g, 1, false},
		need{"logits", logits, rows * numExperts, false}, need{"lse", lse, rows, false}); err != nil {
		return err
	}
	if rows == 0 {
		return nil
	}
	return d.Dispatch(routerLaunch(kernel, rows, Out(0, dlogits), In(1, g), In(2, logits), In(3, lse), Params(4, p)))
}

// routeSortShared is the threadgroup memory of moe_route_sort, in int32s
// (MOE_SORT_SHARED): a count per lane and expert, and the offsets.
const routeSortShared = 6144

// RouteSortMaxExperts is the most experts [RunRouteSort] takes.
const RouteSortMaxExperts = routeSortShared/2 - 1

// RunRouteSort sorts the tokens·k (token, slot) pairs of experts (int32 expert
// ids, as [RunRouterGates] writes them) by expert with a stable counting sort,
// keeping at most capacity pairs per expert (0: every pair), the earliest
// first: pos (tokens·k) receives each pair's row in expert order or −1 when
// dropped, token (tokens·k; the first rows are written) each row's token, and
// info (2·experts + 2 int32s) the offsets of the experts' rows (experts + 1),
// the pairs routed to each expert before the capacity (experts), and the
// dropped count. One launch of one threadgroup (moe_route_sort).
func RunRouteSort(d Compute, pos, token, info, experts *Buffer, tokens, k, numExperts, capacity int) error {
	const kernel = "moe_route_sort"
	if k < 1 || numExperts < 1 || numExperts > RouteSortMaxExperts || capacity < 0 {
		return fmt.Errorf("%s: k %d, %d experts (at most %d), capacity %d", kernel, k, numExperts, RouteSortMaxExperts, capacity)
	}
	if err := checkCount(kernel, tokens, k); err != nil {
		return err
	}
	if err := checkBuffers(kernel, need{"pos", pos, tokens * k, false}, need{"token", token, tokens * k, false},
		need{"info", info, 2*numExperts + 2, false}, need{"experts", experts, tokens * k, false}); err != nil {
		return err
	}
	lanes := 256
	for lanes > 1 && lanes*numExperts+numExperts+1 > routeSortShared {
		lanes /= 2
	}
	var keep []*Buffer
	defer func() { releaseBuffers(keep) }()
	if tokens == 0 { // nothing to read or place, but the offsets are still written
		for _, b := range []**Buffer{&pos, &token, &experts} {
			var err error
			if *b, err = placeholder(d, nil, &keep); err != nil {
				return err
			}
		}
	}
	p := struct{ Pairs, K, Experts, Capacity uint32 }{uint32(tokens * k), uint32(k), uint32(numExperts), uint32(capacity)}
	return d.Dispatch(&Launch{Kernel: kernel, Groups: [3]int{1, 1, 1}, Threads: [3]int{lanes, 1, 1},
		Args: []Arg{Out(0, pos), Out(1, token), Out(2, info), In(3, experts), Params(4, p)}})
}
