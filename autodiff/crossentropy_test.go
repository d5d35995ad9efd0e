package autodiff

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ceUnfused is the reference: LogSoftmax over the last axis (an op of its own),
// then the target gathered and smoothed by a Go loop, then the reduction.
func ceUnfused(logits []float64, v int, targets []int32, ignore int32, eps float64, red LossReduction) []float64 {
	rows := len(targets)
	lp := LogSoftmax(FromFloat64(logits, rows, v), -1).Float64s()
	per := make([]float64, rows)
	total, count := 0.0, 0
	for i, t := range targets {
		if t == ignore {
			continue
		}
		mean := 0.0
		for j := range v {
			mean += lp[i*v+j] / float64(v)
		}
		per[i] = -(1-eps)*lp[i*v+int(t)] - eps*mean
		total += per[i]
		count++
	}
	switch red {
	case ReductionNone:
		return per
	case ReductionSum:
		return []float64{total}
	}
	return []float64{total / float64(count)}
}

func ceTargets(rng *rand.Rand, rows, v int, ignore int32, ignoredEvery int) []int32 {
	ts := make([]int32, rows)
	for i := range ts {
		ts[i] = int32(rng.IntN(v))
		if ignoredEvery > 0 && i%ignoredEvery == 1 {
			ts[i] = ignore
		}
	}
	return ts
}

type ceCase struct {
	name  string
	opt   CrossEntropyOptions
	every int // every-th row (from row 1) gets the ignore index
}

func ceCases() []ceCase {
	zero := int32(0)
	other := int32(-1)
	return []ceCase{
		{"defaults", CrossEntropyOptions{}, 0},
		{"ignore -100", CrossEntropyOptions{}, 3},
		{"ignore 0", CrossEntropyOptions{IgnoreIndex: &zero}, 2},
		{"ignore -1 sum", CrossEntropyOptions{IgnoreIndex: &other, Reduction: ReductionSum}, 3},
		{"smoothing", CrossEntropyOptions{LabelSmoothing: 0.1}, 0},
		{"smoothing ignore", CrossEntropyOptions{LabelSmoothing: 0.25}, 4},
		{"smoothing 1", CrossEntropyOptions{LabelSmoothing: 1}, 0},
		{"sum", CrossEntropyOptions{Reduction: ReductionSum}, 0},
		{"none", CrossEntropyOptions{Reduction: ReductionNone}, 3},
		{"none smoothing", CrossEntropyOptions{Reduction: ReductionNone, LabelSmoothing: 0.1}, 2},
		{"mean explicit", CrossEntropyOptions{Reduction: ReductionMean, LabelSmoothing: 0.05}, 5},
	}
}

func (c ceCase) ignore() int32 {
	if c.opt.IgnoreIndex != nil {
		return *c.opt.IgnoreIndex
	}
	return DefaultIgnoreIndex
}

func (c ceCase) reduction() LossReduction {
	if c.opt.Reduction == "" {
		return ReductionMean
	}
	return c.opt.Reduction
}

func TestCrossEntropyMatchesUnfused(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	shapes := [][]int{{1, 1}, {1, 7}, {7, 33}, {33, 127}, {2, 3, 7}, {127, 7}, {64, 1000}}
	for _, c := range ceCases() {
		for _, shape := range shapes {
			v := shape[len(shape)-1]
			rows := numel(shape[:len(shape)-1])
			if c.every > 0 && rows < 2 {
				continue
			}
			if c.ignore() == 0 && v == 1 {
				continue // class 0 is the only class
			}
			logits := randTensor(rng, -5, 5, shape...)
			ts := ceTargets(rng, rows, v, c.ignore(), c.every)
			for i := range ts {
				if c.ignore() == 0 && ts[i] == 0 && i%c.every != 1 {
					ts[i] = 1
				}
			}
			targets := FromInt32(ts, shape[:len(shape)-1]...)
			label := fmt.Sprintf("%s %v", c.name, shape)
			want := ceUnfused(logits.Float64s(), v, ts, c.ignore(), c.opt.LabelSmoothing, c.reduction())
			got := CrossEntropy(logits, targets, c.opt)
			if c.reduction() == ReductionNone {
				require.Equal(t, shape[:len(shape)-1], got.Shape(), label)
			} else {
				require.Equal(t, 0, got.Rank(), label)
			}
			assert.InDeltaSlice(t, want, got.Float64s(), 1e-12, label)

			l32 := Cast(logits, Float32)
			want32 := ceUnfused(l32.Float64Values(), v, ts, c.ignore(), c.opt.LabelSmoothing, c.reduction())
			got32 := CrossEntropy(l32, targets, c.opt)
			for i, w := range want32 {
				// float64 accumulation; exp within 1 ulp; one rounding of the loss.
				assert.InDelta(t, w, got32.At(i), 2e-7*(1+math.Abs(w)), label)
			}
		}
	}
}

func TestCrossEntropyClosedForms(t *testing.T) {
	// Two equal logits: ln 2 per row.
	l := FromFloat64([]float64{0, 0, 3, 3}, 2, 2)
	assert.InDelta(t, math.Ln2, CrossEntropy(l, FromInt32([]int32{0, 1}, 2), CrossEntropyOptions{}).Item(), 1e-15)
	// Label smoothing ε on logits (1, 2, 3), target 0:
	// lse − (1−ε)·1 − ε/3·(1+2+3).
	x := FromFloat64([]float64{1, 2, 3}, 1, 3)
	lse := math.Log(math.E + math.Exp(2) + math.Exp(3))
	want := lse - 0.9*1 - 0.1/3*6
	assert.InDelta(t, want, CrossEntropy(x, FromInt32([]int32{0}, 1), CrossEntropyOptions{LabelSmoothing: 0.1}).Item(), 1e-14)
	// Huge logits do not overflow.
	big := FromFloat32([]float32{1e4, 0, -1e4}, 1, 3)
	assert.InDelta(t, 1e4, CrossEntropy(big, FromInt32([]int32{1}, 1), CrossEntropyOptions{}).Item(), 1e-3)
}

func TestCrossEntropyAllIgnored(t *testing.T) {
	l := FromFloat64([]float64{1, 2, 3, 4}, 2, 2)
	ts := FromInt32([]int32{-100, -100}, 2)
	assert.True(t, math.IsNaN(CrossEntropy(l, ts, CrossEntropyOptions{}).Item()), "mean over no rows is NaN, as in PyTorch")
	tp := NewTape()
	defer tp.Release()
	loss := CrossEntropy(tp.Watch(l), ts, CrossEntropyOptions{Reduction: ReductionSum})
	assert.Equal(t, 0.0, loss.Item())
	tp.Backward(loss)
	assert.Equal(t, []float64{0, 0, 0, 0}, tp.Grad(l).Float64s())
}

func TestCrossEntropyGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(33, 34))
	for _, c := range ceCases() {
		for _, shape := range [][]int{{1, 3}, {7, 5}, {3, 2, 7}, {5, 33}, {33, 4}} {
			v := shape[len(shape)-1]
			rows := numel(shape[:len(shape)-1])
			ts := ceTargets(rng, rows, v, c.ignore(), c.every)
			targets := FromInt32(ts, shape[:len(shape)-1]...)
			logits := randTensor(rng, -3, 3, shape...)
			err := GradCheck{Seed: 3}.Check(func(in []*Tensor) *Tensor { return CrossEntropy(in[0], targets, c.opt) }, logits)
			assert.NoError(t, err, "%s %v", c.name, shape)
		}
	}
}

// The fused float32 backward against softmax − smoothed one-hot formed in float64.
func TestCrossEntropyBackwardFloat32(t *testing.T) {
	rng := rand.New(rand.NewPCG(35, 36))
	rows, v := 300, 1000
	logits := randTensor(rng, -8, 8, rows, v)
	l32 := Cast(logits, Float32)
	for _, c := range ceCases() {
		ts := ceTargets(rng, rows, v, c.ignore(), c.every)
		targets := FromInt32(ts, rows)
		tp := NewTape()
		loss := CrossEntropy(tp.Watch(l32), targets, c.opt)
		var scale []float64
		count := 0
		for _, tg := range ts {
			if tg != c.ignore() {
				count++
			}
		}
		switch c.reduction() {
		case ReductionNone:
			g := Empty(Float32, rows)
			scale = make([]float64, rows)
			for i := range rows {
				g.Float32s()[i] = float32(i%7) - 3
				scale[i] = float64(i%7) - 3
			}
			tp.BackwardWith(loss, g)
		case ReductionSum:
			tp.Backward(loss)
			scale = []float64{1}
		default:
			tp.Backward(loss)
			scale = []float64{1 / float64(count)}
		}
		got := tp.Grad(l32).Float32s()
		p := smRef(l32.Float64Values(), []int{rows, v}, 1, false)
		eps := c.opt.LabelSmoothing
		for i := range rows {
			sc := scale[0]
			if len(scale) > 1 {
				sc = scale[i]
			}
			for j := range v {
				want := 0.0
				if ts[i] != c.ignore() {
					want = p[i*v+j] - eps/float64(v)
					if j == int(ts[i]) {
						want -= 1 - eps
					}
					want *= sc
				}
				if d := math.Abs(want - float64(got[i*v+j])); !(d <= 2e-7*math.Abs(sc)*(1+math.Abs(want/sc))) {
					require.InDelta(t, want, float64(got[i*v+j]), 2e-7*math.Abs(sc)*(1+math.Abs(want/sc)), "%s row %d col %d", c.name, i, j)
				}
			}
		}
		tp.Release()
	}
}

func TestCrossEntropyPanics(t *testing.T) {
	l := Zeros(Float32, 2, 3)
	assert.PanicsWithValue(t, "autodiff: cross_entropy: target 3 at row 1 is outside [0, 3) for logits (2,3) (ignore index -100)",
		func() { CrossEntropy(l, FromInt32([]int32{0, 3}, 2), CrossEntropyOptions{}) })
	assert.Panics(t, func() { CrossEntropy(l, FromInt32([]int32{-1, 0}, 2), CrossEntropyOptions{}) })
	assert.Panics(t, func() { CrossEntropy(l, FromInt32([]int32{0, 0, 0}, 3), CrossEntropyOptions{}) })
	assert.Panics(t, func() { CrossEntropy(l, FromFloat32([]float32{0, 0}, 2), CrossEntropyOptions{}) })
	assert.Panics(t, func() { CrossEntropy(l, FromInt32([]int32{0, 0}, 2), CrossEntropyOptions{LabelSmoothing: 1.5}) })
	assert.Panics(t, func() { CrossEntropy(l, FromInt32([]int32{0, 0}, 2), CrossEntropyOptions{Reduction: "avg"}) })
	assert.Panics(t, func() { CrossEntropy(Zeros(Float32, 2, 0), FromInt32([]int32{0, 0}, 2), CrossEntropyOptions{}) })
}

func ExampleCrossEntropy() {
	logits := FromFloat32([]float32{
		2, 0, 0,
		0, 0, 0,
		9, 9, 9, // padding: its target is the ignore index
	}, 3, 3)
	targets := FromInt32([]int32{0, 2, DefaultIgnoreIndex}, 3)
	tp := NewTape()
	defer tp.Release()
	loss := CrossEntropy(tp.Watch(logits), targets, CrossEntropyOptions{})
	tp.Backward(loss)
	fmt.Printf("loss %.4f\n", loss.Item()) // mean of two rows
	fmt.Printf("grad %.4f\n", tp.Grad(logits).Float32s())
	// Output:
	// loss 0.6691
	// grad [-0.1065 0.0533 0.0533 0.1667 0.1667 -0.3333 0.0000 0.0000 0.0000]
}
