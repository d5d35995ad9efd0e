package advanced

import (
	"errors"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// The device paths of the mixture of experts (shaders/moe.metal and
// moe_route.metal): routing (top-k gates, the auxiliary losses' sums, the
// counting sort by expert), the gather into expert order and the weighted
// scatter back, and the experts' grouped products (gather_mm), each forward
// and backward. Thresholds: metal.Tunings.
var (
	// "moe_router" (rows, experts): the top-k and gate weights, and their gradient.
	moeRouterOp = metal.Kernels.Register("moe_router", []string{"rows", "experts"},
		metal.DeviceImpl("moe_router", routerSelfTest), &metal.Impl{Path: metal.PathGo})
	// "moe_router_loss" (rows, experts): the load-balancing and z losses.
	moeRouterLossOp = metal.Kernels.Register("moe_router_loss", []string{"rows", "experts"},
		metal.DeviceImpl("moe_router_loss", routerSelfTest), &metal.Impl{Path: metal.PathGo})
	// "moe_route_sort" (pairs): the counting sort of the (token, slot) pairs.
	moeSortOp = metal.Kernels.Register("moe_route_sort", []string{"pairs"},
		metal.DeviceImpl("moe_route_sort", sortSelfTest), &metal.Impl{Path: metal.PathGo})
	// "moe_dispatch" and "moe_combine" (tokens, dim): the gather into expert
	// order and the weighted scatter back.
	moeDispatchOp = metal.Kernels.Register("moe_dispatch", []string{"tokens", "dim"},
		metal.DeviceImpl("moe_dispatch", moeSelfTest), &metal.Impl{Path: metal.PathGo})
	moeCombineOp = metal.Kernels.Register("moe_combine", []string{"tokens", "dim"},
		metal.DeviceImpl("moe_combine", moeSelfTest), &metal.Impl{Path: metal.PathGo})
	// "moe_grouped_linear" (rows, out): the experts' products in one launch over
	// every expert, with bias and GELU, and their gradients.
	groupedOp = metal.Kernels.Register("moe_grouped_linear", []string{"rows", "out"},
		metal.DeviceImpl("moe_grouped_linear", groupedSelfTest), &metal.Impl{Path: metal.PathGo})
)

// indices uploads an index array as an int32 tensor (device memory while an
// accelerator is open).
func indices(v []int32) *autodiff.Tensor { return autodiff.FromInt32(v, len(v)) }

func moeDevice(op *metal.Op, r *Routing, dim int, ts ...*autodiff.Tensor) metal.Compute {
	if r.Rows() == 0 || r.Tokens == 0 || dim == 0 {
		return nil
	}
	return autodiff.DeviceFor(op, ts, r.Tokens, dim)
}

// routerMode is the kernels' encoding of a score function and gate norm.
func routerMode(score RouterScore, norm GateNorm) metal.RouterMode {
	var m metal.RouterMode
	if score == ScoreSigmoid {
		m |= metal.RouterSigmoid
	}
	switch norm {
	case GateRenormalize:
		m |= metal.RouterRenormalize
	case GateScores:
		m |= metal.RouterScores
	}
	return m
}

// routerGatesDevice records the top-k on dev: experts for the caller, ids (a
// copy) for the backward.
func routerGatesDevice(dev metal.Compute, gates, experts, ids, logits *autodiff.Tensor, rows, E, k int, mode metal.RouterMode) error {
	if err := metal.RunRouterGates(dev, gates.Buffer(), experts.Buffer(), logits.Buffer(), rows, E, k, mode); err != nil {
		return err
	}
	n := rows * k
	return metal.RunCopy(dev, ids.Buffer(), experts.Buffer(), []int{n}, []int{1}, []int{1}, 0, 0, metal.Write)
}

// routerStatsDevice records on the device the sums of the auxiliary losses
// (2E+1: Σ p per expert, pairs per expert, Σ lse²) and each row's logsumexp,
// or returns nils. experts may be nil (no counts).
func routerStatsDevice(logits, experts *autodiff.Tensor, k int, score RouterScore) (sums, lse *autodiff.Tensor) {
	E := logits.Dim(-1)
	rows := logits.Len() / E
	dev := autodiff.DeviceFor(moeRouterLossOp, []*autodiff.Tensor{logits, experts}, rows, E)
	if dev == nil || rows == 0 {
		return nil, nil
	}
	sums, lse = autodiff.Empty(autodiff.Float32, 2*E+1), autodiff.Empty(autodiff.Float32, rows)
	probs := autodiff.Empty(autodiff.Float32, rows, E)
	defer probs.Release() // back to the pool once the launches are done
	var eb *metal.Buffer
	if experts != nil {
		eb = experts.Buffer()
	} else {
		k = 0
	}
	if !autodiff.Launched("moe_router_loss", metal.RunRouterStats(dev, sums.Buffer(), lse.Buffer(), probs.Buffer(), logits.Buffer(), eb, rows, E, k, routerMode(score, ""))) {
		sums.Release()
		lse.Release()
		return nil, nil
	}
	return sums, lse
}

// balanceOf is the load-balancing loss from the device's sums.
func balanceOf(sums []float32, rows, E int) float64 {
	var loss float64
	for e := range E {
		loss += float64(sums[E+e]) / float64(rows) * float64(sums[e]) / float64(rows)
	}
	return float64(E) * loss
}

// routeDevice sorts the pairs on the device (a counting sort: one launch of
// one threadgroup); the index arrays and the offsets stay on the device, and
// the host reads them back only when a CPU path or the statistics need them
// (Routing.host). nil when the device does not take it.
func routeDevice(experts *autodiff.Tensor, tokens, k, E, capacity int) *Routing {
	if tokens == 0 || E > metal.RouteSortMaxExperts {
		return nil
	}
	dev := autodiff.DeviceFor(moeSortOp, []*autodiff.Tensor{experts}, tokens*k)
	if dev == nil {
		return nil
	}
	pos, token, info := autodiff.Empty(autodiff.Int32, tokens*k), autodiff.Empty(autodiff.Int32, tokens*k), autodiff.Empty(autodiff.Int32, 2*E+2)
	if !autodiff.Launched("moe_route_sort", metal.RunRouteSort(dev, pos.Buffer(), token.Buffer(), info.Buffer(), experts.Buffer(), tokens, k, E, capacity)) {
		pos.Release()
		token.Release()
		info.Release()
		return nil
	}
	return &Routing{Tokens: tokens, K: k, Experts: E, Capacity: capacity, dev: &routeTensors{pos: pos, token: token, info: info}}
}

// host fills a device routing's host fields from the sort's results (waiting
// for the sort) the first time it is called, and returns r.
func (r *Routing) host() *Routing {
	if r.Offsets != nil || r.dev == nil {
		return r
	}
	E := r.Experts
	v := r.dev.info.Int32s() // waits for the sort only
	r.Routed, r.Offsets, r.Dropped = make([]int, E), make([]int, E+1), int(v[2*E+1])
	for e := range E + 1 {
		r.Offsets[e] = int(v[e])
	}
	for e := range E {
		r.Routed[e] = int(v[E+1+e])
	}
	r.Pos, r.Token = r.dev.pos.Int32s(), r.dev.token.Int32s()[:r.Offsets[E]]
	return r
}

// routeTensors are a device sort's index arrays: pos, token, and info, whose
// first E+1 entries are the offsets.
type routeTensors struct{ pos, token, info *autodiff.Tensor }

// deviceIndex returns the routing's index array as a device tensor and a func
// to call once the launch is recorded: the sort's own, or an upload of host.
func (r *Routing) deviceIndex(host []int32, pick func(*routeTensors) *autodiff.Tensor) (*autodiff.Tensor, func()) {
	if r.dev != nil {
		return pick(r.dev), func() {}
	}
	t := indices(host)
	return t, t.Release // back to the pool once the launch is done
}

func (r *Routing) posIndex() (*autodiff.Tensor, func()) {
	return r.deviceIndex(r.Pos, func(d *routeTensors) *autodiff.Tensor { return d.pos })
}

func (r *Routing) tokenIndex() (*autodiff.Tensor, func()) {
	return r.deviceIndex(r.Token, func(d *routeTensors) *autodiff.Tensor { return d.token })
}

// offsetIndex is the offsets as int32s on the device.
func (r *Routing) offsetIndex() (*autodiff.Tensor, func()) {
	if r.dev != nil {
		return r.dev.info, func() {}
	}
	t := offsets32(r.Offsets)
	return t, t.Release
}

// tensors are the device tensors the routing holds (nil: none).
func (r *Routing) tensors() []*autodiff.Tensor {
	if r.dev == nil {
		return nil
	}
	return []*autodiff.Tensor{r.dev.pos, r.dev.token, r.dev.info}
}

func offsets32(offsets []int) *autodiff.Tensor {
	v := make([]int32, len(offsets))
	for i, o := range offsets {
		v[i] = int32(o)
	}
	return indices(v)
}

// groupedForwardDevice records y = act(x·W_eᵀ + b_e) per group on dev: one
// launch over every expert.
func groupedForwardDevice(dev metal.Compute, y, deriv, x, w, b, off *autodiff.Tensor, gelu bool) error {
	E, out, in := w.Dim(0), w.Dim(1), w.Dim(2)
	return metal.RunGatherMM(dev, y.Buffer(), x.Buffer(), w.Buffer(), off.Buffer(), bufOf(b), bufOf(deriv), x.Dim(0), in, out, E, gelu)
}

// groupedBackwardDevice records the gradients on dev: dy = g·GELU′ (into the
// scratch dy when gelu), db per group, then dx and dw in a launch each.
func groupedBackwardDevice(dev metal.Compute, dx, dw, db, dy, g, deriv, x, w, off *autodiff.Tensor, gelu bool) error {
	E, out, in := w.Dim(0), w.Dim(1), w.Dim(2)
	rows := x.Dim(0)
	if gelu && rows*out > 0 {
		if err := metal.RunBinary(dev, metal.BinaryMul, dy.Buffer(), g.Buffer(), deriv.Buffer(), rows*out, rows*out); err != nil {
			return err
		}
	}
	if db != nil {
		if err := metal.RunMoEGroupColSum(dev, db.Buffer(), dy.Buffer(), off.Buffer(), rows, out, E); err != nil {
			return err
		}
	}
	return metal.RunGatherMMBackward(dev, bufOf(dx), bufOf(dw), dy.Buffer(), x.Buffer(), w.Buffer(), off.Buffer(), rows, in, out, E)
}

func releaseTensors(ts ...*autodiff.Tensor) {
	for _, t := range ts {
		if t != nil {
			t.Release()
		}
	}
}

// routerSelfTest compares the router kernels with the CPU on 37 rows of 5
// experts with ties, top 2, renormalised sigmoid scores: the experts, gates,
// their gradient, and the auxiliary losses' gradients.
func routerSelfTest() error {
	return autodiff.DeviceSelfTest(func(dev metal.Compute) ([]*autodiff.Tensor, error) {
		r := autodiff.SelfTestRand()
		const rows, E, k = 37, 5, 2
		score, norm := ScoreSigmoid, GateRenormalize
		vals := make([]float32, rows*E)
		for i := range vals {
			vals[i] = float32(r.IntN(5)-2) * 0.5 // ties
		}
		logits := autodiff.FromFloat32(vals, rows, E)
		dg, g := autodiff.RandomTensor(r, -1, 1, rows, k), autodiff.Full(autodiff.Float32, 0.7, 1)
		defer releaseTensors(logits, dg, g)
		gates, experts := autodiff.Empty(autodiff.Float32, rows, k), autodiff.Empty(autodiff.Int32, rows, k)
		dl, dlb, dlz := autodiff.Empty(autodiff.Float32, rows, E), autodiff.Empty(autodiff.Float32, rows, E), autodiff.Empty(autodiff.Float32, rows, E)
		outs := []*autodiff.Tensor{gates, experts, dl, dlb, dlz}
		if dev == nil {
			RouterGatesForward(gates.Float32s(), experts.Int32s(), logits.Float32s(), rows, E, k, score, norm)
			clear(dl.Float32s())
			RouterGatesBackward(dl.Float32s(), dg.Float32s(), gates.Float32s(), experts.Int32s(), logits.Float32s(), rows, E, k, score, norm)
			frac, lse := make([]float64, E), make([]float64, rows)
			LoadBalanceForward(logits.Float32s(), experts.Int32s(), rows, E, k, score, frac, nil)
			RouterZForward(logits.Float32s(), rows, E, lse)
			clear(dlb.Float32s())
			clear(dlz.Float32s())
			LoadBalanceBackward(dlb.Float32s(), 0.7, logits.Float32s(), frac, rows, E, score)
			RouterZBackward(dlz.Float32s(), 0.7, logits.Float32s(), lse, rows, E)
			return outs, nil
		}
		mode := routerMode(score, norm)
		sums, lse, probs := autodiff.Empty(autodiff.Float32, 2*E+1), autodiff.Empty(autodiff.Float32, rows), autodiff.Empty(autodiff.Float32, rows, E)
		defer releaseTensors(sums, lse, probs)
		return outs, errors.Join(
			metal.RunRouterGates(dev, gates.Buffer(), experts.Buffer(), logits.Buffer(), rows, E, k, mode),
			metal.RunRouterGatesBackward(dev, dl.Buffer(), dg.Buffer(), gates.Buffer(), experts.Buffer(), logits.Buffer(), rows, E, k, mode),
			metal.RunRouterStats(dev, sums.Buffer(), lse.Buffer(), probs.Buffer(), logits.Buffer(), experts.Buffer(), rows, E, k, mode),
			metal.RunLoadBalanceBackward(dev, dlb.Buffer(), g.Buffer(), logits.Buffer(), sums.Buffer(), rows, E, mode),
			metal.RunRouterZBackward(dev, dlz.Buffer(), g.Buffer(), logits.Buffer(), lse.Buffer(), rows, E))
	})()
}

// sortSelfTest compares the counting sort with NewRouting on 41 tokens, top 2
// of 6 experts skewed towards one, with a capacity that drops pairs.
func sortSelfTest() error {
	return autodiff.DeviceSelfTest(func(dev metal.Compute) ([]*autodiff.Tensor, error) {
		r := autodiff.SelfTestRand()
		const tokens, k, E, capacity = 41, 2, 6, 15
		ids := make([]int32, tokens*k)
		for n := range tokens {
			ids[n*k] = int32(min(r.IntN(E+3), E-1))
			ids[n*k+1] = int32((int(ids[n*k]) + 1 + r.IntN(E-1)) % E)
		}
		experts := indices(ids)
		defer experts.Release()
		pos, token, info := autodiff.Empty(autodiff.Int32, tokens*k), autodiff.Empty(autodiff.Int32, tokens*k), autodiff.Empty(autodiff.Int32, 2*E+2)
		outs := []*autodiff.Tensor{pos, info}
		if dev == nil {
			defer token.Release()
			rt := NewRouting(ids, tokens, k, E, capacity)
			copy(pos.Int32s(), rt.Pos)
			v := info.Int32s()
			for e := range E + 1 {
				v[e] = int32(rt.Offsets[e])
			}
			for e := range E {
				v[E+1+e] = int32(rt.Routed[e])
			}
			v[2*E+1] = int32(rt.Dropped)
			return outs, nil
		}
		defer token.Release()
		return outs, metal.RunRouteSort(dev, pos.Buffer(), token.Buffer(), info.Buffer(), experts.Buffer(), tokens, k, E, capacity)
	})()
}

// moeSelfTest compares the dispatch and combine kernels with the CPU on a
// small routing with dropped pairs.
func moeSelfTest() error {
	return autodiff.DeviceSelfTest(func(dev metal.Compute) ([]*autodiff.Tensor, error) {
		rng := autodiff.SelfTestRand()
		const tokens, k, dim = 13, 2, 37
		experts := make([]int32, tokens*k)
		for i := range experts {
			experts[i] = int32(rng.IntN(4))
		}
		r := NewRouting(experts, tokens, k, 4, 5)
		rows := r.Rows()
		x, dxs := autodiff.RandomTensor(rng, -1, 1, tokens, dim), autodiff.RandomTensor(rng, -1, 1, rows, dim)
		ys, gates, dy := autodiff.RandomTensor(rng, -1, 1, rows, dim), autodiff.RandomTensor(rng, 0, 1, tokens, k), autodiff.RandomTensor(rng, -1, 1, tokens, dim)
		pos, tok := indices(r.Pos), indices(r.Token)
		defer releaseTensors(x, dxs, ys, gates, dy, pos, tok)
		xs, dx, y := autodiff.Empty(autodiff.Float32, rows, dim), autodiff.Empty(autodiff.Float32, tokens, dim), autodiff.Empty(autodiff.Float32, tokens, dim)
		dys, dg := autodiff.Empty(autodiff.Float32, rows, dim), autodiff.Empty(autodiff.Float32, tokens, k)
		outs := []*autodiff.Tensor{xs, dx, y, dys, dg}
		if dev == nil {
			DispatchForward(xs.Float32s(), x.Float32s(), r.Token, dim)
			DispatchBackward(dx.Float32s(), dxs.Float32s(), r.Pos, k, dim)
			CombineForward(y.Float32s(), ys.Float32s(), gates.Float32s(), r.Pos, k, dim)
			CombineBackward(dys.Float32s(), dg.Float32s(), dy.Float32s(), ys.Float32s(), gates.Float32s(), r.Pos, k, dim)
			return outs, nil
		}
		return outs, errors.Join(
			metal.RunMoEDispatch(dev, xs.Buffer(), x.Buffer(), tok.Buffer(), tokens, rows, dim),
			metal.RunMoEDispatchBackward(dev, dx.Buffer(), dxs.Buffer(), pos.Buffer(), tokens, k, rows, dim),
			metal.RunMoECombine(dev, y.Buffer(), ys.Buffer(), gates.Buffer(), pos.Buffer(), tokens, k, rows, dim),
			metal.RunMoECombineBackward(dev, dys.Buffer(), dg.Buffer(), dy.Buffer(), ys.Buffer(), gates.Buffer(), pos.Buffer(), tokens, k, rows, dim))
	})()
}

// groupedSelfTest compares the grouped kernels with the CPU on 4 groups (two
// empty, one over a 16-row tile) with bias and GELU, forward and every gradient.
func groupedSelfTest() error {
	return autodiff.DeviceSelfTest(func(dev metal.Compute) ([]*autodiff.Tensor, error) {
		r := autodiff.SelfTestRand()
		offsets := []int{0, 7, 7, 26, 26}
		const rows, in, out = 26, 23, 17
		x, w := autodiff.RandomTensor(r, -1, 1, rows, in), autodiff.RandomTensor(r, -1, 1, 4, out, in)
		b, g := autodiff.RandomTensor(r, -1, 1, 4, out), autodiff.RandomTensor(r, -1, 1, rows, out)
		off := offsets32(offsets)
		defer releaseTensors(x, w, b, g, off)
		y, deriv, dy := autodiff.Empty(autodiff.Float32, rows, out), autodiff.Empty(autodiff.Float32, rows, out), autodiff.Empty(autodiff.Float32, rows, out)
		dx, dw, db := autodiff.Empty(autodiff.Float32, rows, in), autodiff.Empty(autodiff.Float32, 4, out, in), autodiff.Zeros(autodiff.Float32, 4, out)
		outs := []*autodiff.Tensor{y, deriv, dx, dw, db}
		defer dy.Release()
		if dev == nil {
			GroupedMatMulForward(y.Float32s(), x.Float32s(), w.Float32s(), offsets, in, out)
			groupBiasAct(y.Float32s(), deriv.Float32s(), b.Float32s(), offsets, out, true)
			groupedBackward(dx, dw, db, dy.Float32s(), g.Float32s(), deriv.Float32s(), x.Float32s(), w.Float32s(), offsets, in, out)
			return outs, nil
		}
		if err := groupedForwardDevice(dev, y, deriv, x, w, b, off, true); err != nil {
			return outs, err
		}
		return outs, groupedBackwardDevice(dev, dx, dw, db, dy, g, deriv, x, w, off, true)
	})()
}
