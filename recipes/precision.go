package recipes

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/checkpoints"
	"github.com/mlxtrain/mlxtrain/data"
	"github.com/mlxtrain/mlxtrain/models"
)

// LossScaler is dynamic loss scaling for float16 training. The backward pass
// starts from Scale instead of 1, so that small activation gradients do not
// underflow float16; the parameter gradients are divided by Scale before the
// update. A step whose gradients hold an Inf or a NaN (an overflow) is skipped
// and the scale halved; after GrowthInterval finite steps in a row the scale
// doubles, up to MaxLossScale. Scales are powers of two, so scaling and
// unscaling are exact.
type LossScaler struct {
	Scale          float64 // the current multiplier of the loss gradient
	GoodSteps      int     // finite steps since the scale last changed
	GrowthInterval int     // finite steps in a row before the scale doubles
}

// The loss scaler's defaults: PyTorch's initial scale, a growth interval of
// 1000 steps (PyTorch uses 2000; runs here are shorter).
const (
	DefaultLossScale      = 1 << 16
	DefaultGrowthInterval = 1000
	MaxLossScale          = 1 << 24
	MinLossScale          = 0x1p-24
)

// NewLossScaler returns a scaler at the default scale and growth interval.
func NewLossScaler() *LossScaler {
	return &LossScaler{Scale: initialLossScale, GrowthInterval: DefaultGrowthInterval}
}

// initialLossScale is DefaultLossScale; tests raise it to force overflows.
var initialLossScale float64 = DefaultLossScale

// Update records whether a step's gradients were all finite and reports
// whether the step is to be applied (false: skip it; the scale was halved).
func (s *LossScaler) Update(finite bool) bool {
	if !finite {
		s.Scale = math.Max(s.Scale/2, MinLossScale)
		s.GoodSteps = 0
		return false
	}
	s.GoodSteps++
	if s.GoodSteps >= s.GrowthInterval {
		s.Scale = math.Min(s.Scale*2, MaxLossScale)
		s.GoodSteps = 0
	}
	return true
}

// Unscale divides the gradients (nil ones are skipped) by the scale in place
// and reports whether every element is finite.
func (s *LossScaler) Unscale(grads []*autodiff.Tensor) bool {
	inv := 1 / s.Scale
	finite := true
	for _, g := range grads {
		if g == nil {
			continue
		}
		switch g.DType() {
		case autodiff.Float32:
			f, xs := float32(inv), g.Float32s()
			for i, v := range xs {
				v *= f
				finite = finite && !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0)
				xs[i] = v
			}
		case autodiff.Float64:
			xs := g.Float64s()
			for i, v := range xs {
				v *= inv
				finite = finite && !math.IsNaN(v) && !math.IsInf(v, 0)
				xs[i] = v
			}
		}
	}
	return finite
}

// State is the scaler's part of a checkpoint.
func (s *LossScaler) State() *checkpoints.LossScaleState {
	return &checkpoints.LossScaleState{Scale: s.Scale, GoodSteps: int64(s.GoodSteps)}
}

// SetState continues from a checkpoint's state.
func (s *LossScaler) SetState(st *checkpoints.LossScaleState) {
	s.Scale, s.GoodSteps = st.Scale, int(st.GoodSteps)
}

// TrainOptions are the model's training options the recipe asks for:
// train.grad_checkpoint, train.precision and model.dropout.
func (r *Recipe) TrainOptions() models.TrainOptions {
	return models.TrainOptions{
		GradCheckpoint: r.Train.GradCheckpoint,
		Precision:      models.Precision(r.Train.Precision),
		Dropout:        r.Model.Dropout,
	}
}

// withEpochs returns the recipe with train.iters set from train.epochs: the
// steps that go through the training rows epochs times, ⌈epochs × rows /
// (batch_size × grad_accumulation_steps)⌉. Without epochs it is r.
func (r *Recipe) withEpochs(rowsPerEpoch int) *Recipe {
	if r.Train.Epochs <= 0 {
		return r
	}
	per := r.Train.BatchSize * max(r.Train.GradAccumulationSteps, 1)
	c := *r
	c.Train.Iters = max(1, (r.Train.Epochs*rowsPerEpoch+per-1)/per)
	return &c
}

// setupTraining applies the recipe's memory, precision and dropout settings to
// the run's model, and makes the loss scaler for f16.
func (ru *run) setupTraining() error {
	o := ru.r.TrainOptions()
	if err := o.Validate(); err != nil {
		return fmt.Errorf("recipe: %w", err)
	}
	ru.model.Train = o
	if o.Precision == models.PrecisionF16 {
		ru.scaler = NewLossScaler()
	}
	return nil
}

// backward runs the tape's backward from loss, scaled in f16.
func (ru *run) backward(tp *autodiff.Tape, loss *autodiff.Tensor) {
	if ru.scaler == nil {
		tp.Backward(loss)
		return
	}
	tp.BackwardWith(loss, autodiff.Full(loss.DType(), ru.scaler.Scale, loss.Shape()...))
}

// unscale undoes the loss scale on the gradients and reports whether the
// optimizer step is to be taken (in f16, not after an overflow).
func (ru *run) unscale(grads []*autodiff.Tensor) bool {
	if ru.scaler == nil {
		return true
	}
	apply := ru.scaler.Update(ru.scaler.Unscale(grads))
	if !apply {
		ru.skips++
	}
	return apply
}

// moeMetric is one mixture-of-experts layer's routing in the last step.
type moeMetric struct {
	Layer   int       `json:"layer"`
	Load    []float64 `json:"load"`    // fraction of the (token, slot) pairs each expert processed
	Dropped int       `json:"dropped"` // pairs dropped for capacity
	Balance float64   `json:"balance"` // load-balancing loss, before its coefficient
	ZLoss   float64   `json:"z_loss"`
}

// moeMetrics are the routing statistics of the model's last training step, by
// layer; nil for a model without experts.
func (ru *run) moeMetrics() []moeMetric {
	stats := ru.model.MoEStats()
	if len(stats) == 0 {
		return nil
	}
	layers := make([]int, 0, len(stats))
	for i := range stats {
		layers = append(layers, i)
	}
	sort.Ints(layers)
	out := make([]moeMetric, 0, len(layers))
	for _, i := range layers {
		st := stats[i]
		m := moeMetric{Layer: i, Dropped: st.Dropped, Balance: st.Balance, ZLoss: st.ZLoss, Load: make([]float64, len(st.Load))}
		if pairs := st.Tokens * st.TopK; pairs > 0 {
			for e, n := range st.Load {
				m.Load[e] = float64(n) / float64(pairs)
			}
		}
		out = append(out, m)
	}
	return out
}

// moeSummary is the report line's brief of moeMetrics: each layer's busiest
// expert's share and the dropped pairs.
func moeSummary(ms []moeMetric) string {
	if len(ms) == 0 {
		return ""
	}
	parts := make([]string, len(ms))
	for k, m := range ms {
		most := 0.0
		for _, f := range m.Load {
			most = math.Max(most, f)
		}
		parts[k] = fmt.Sprintf("L%d max %.0f%%/%d dropped", m.Layer, 100*most, m.Dropped)
	}
	return "; moe " + strings.Join(parts, ", ")
}

// evalProblems are the held-out problems an evaluation scores: the first
// eval.problems of them (all when 0).
func (ru *run) evalProblems() []data.Problem {
	ps := ru.d.task.Eval()
	if n := ru.r.Eval.Problems; n > 0 && n < len(ps) {
		ps = ps[:n]
	}
	return ps
}

// gradSum holds the gradients of a step's earlier micro-batches, summed in
// order (as one tape accumulating them would, bit for bit).
type gradSum []*autodiff.Tensor

// add adds grads (owned by their tape) to the sum.
func (s *gradSum) add(grads []*autodiff.Tensor) {
	if *s == nil {
		*s = make(gradSum, len(grads))
	}
	for i, g := range grads {
		switch {
		case g == nil:
		case (*s)[i] == nil:
			(*s)[i] = g.Clone()
		default:
			addInto((*s)[i], g)
		}
	}
}

// addTo adds the sum to the last micro-batch's grads in place (IEEE addition
// commutes, so this is the same as adding them to the sum) and returns them;
// a parameter the last micro-batch did not reach gets the sum's tensor, which
// s keeps owning.
func (s gradSum) addTo(grads []*autodiff.Tensor) []*autodiff.Tensor {
	for i, t := range s {
		switch {
		case t == nil:
		case grads[i] == nil:
			grads[i] = t
		default:
			addInto(grads[i], t)
		}
	}
	return grads
}

func (s gradSum) release() {
	for _, t := range s {
		if t != nil {
			t.Release()
		}
	}
}

// addInto sets dst += src elementwise.
func addInto(dst, src *autodiff.Tensor) {
	if dst.DType() == autodiff.Float32 {
		d, v := dst.Float32s(), src.Float32s()
		for i := range d {
			d[i] += v[i]
		}
		return
	}
	d, v := dst.Float64s(), src.Float64s()
	for i := range d {
		d[i] += v[i]
	}
}
