package optim

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSchedulesMatchFormulas(t *testing.T) {
	cases := []struct {
		name  string
		s     Schedule
		steps []int
		want  func(step int) float64
	}{
		{"constant", Constant(3e-4), []int{-1, 0, 1, 1000}, func(int) float64 { return 3e-4 }},
		{"warmup", LinearWarmup{Init: 0, Peak: 1e-3, Steps: 10}, []int{-5, 0, 1, 5, 9, 10, 11, 1000},
			func(s int) float64 { return 1e-3 * float64(min(max(s, 0), 10)) / 10 }},
		{"warmup from init", LinearWarmup{Init: 1e-4, Peak: 5e-4, Steps: 4}, []int{0, 1, 2, 3, 4, 5},
			func(s int) float64 { return []float64{1e-4, 2e-4, 3e-4, 4e-4, 5e-4, 5e-4}[s] }},
		{"warmup zero steps", LinearWarmup{Init: 0, Peak: 2, Steps: 0}, []int{-1, 0, 3}, func(int) float64 { return 2 }},
		{"linear decay", LinearDecay{Init: 1, Final: 0.1, Steps: 9}, []int{0, 1, 3, 8, 9, 10},
			func(s int) float64 { return 1 - 0.1*float64(min(s, 9)) }},
		{"cosine", CosineDecay{Init: 1e-3, Final: 1e-4, Steps: 100}, []int{0, 1, 25, 50, 75, 99, 100, 101, 500},
			func(s int) float64 {
				s = min(s, 100)
				return 1e-4 + (1e-3-1e-4)*(1+math.Cos(math.Pi*float64(s)/100))/2
			}},
		{"cosine to zero", CosineDecay{Init: 2, Steps: 4}, []int{0, 1, 2, 3, 4, 5},
			func(s int) float64 { return []float64{2, 1 + math.Sqrt2/2, 1, 1 - math.Sqrt2/2, 0, 0}[s] }},
		{"cosine zero steps", CosineDecay{Init: 2, Final: 0.5}, []int{-1, 0, 9}, func(int) float64 { return 0.5 }},
		{"step decay", StepDecay{Init: 0.1, Gamma: 0.5, Every: 3}, []int{-1, 0, 2, 3, 5, 6, 9, 30},
			func(s int) float64 {
				if s < 0 {
					return 0.1
				}
				return 0.1 * math.Pow(0.5, float64(s/3))
			}},
		{"step decay every 0", StepDecay{Init: 0.1, Gamma: 0.5}, []int{0, 7}, func(int) float64 { return 0.1 }},
		{"func", ScheduleFunc(func(s int) float64 { return float64(s) * 2 }), []int{0, 4},
			func(s int) float64 { return float64(s) * 2 }},
	}
	for _, c := range cases {
		for _, step := range c.steps {
			assert.InDelta(t, c.want(step), c.s.LR(step), 1e-15, "%s at %d", c.name, step)
		}
	}
	// The ends are reached exactly, not within rounding.
	assert.Equal(t, 3e-4, LinearWarmup{Init: 1e-7, Peak: 3e-4, Steps: 7}.LR(7))
	assert.Equal(t, 3e-5, CosineDecay{Init: 3e-4, Final: 3e-5, Steps: 7}.LR(7))
	assert.Equal(t, 3e-4, CosineDecay{Init: 3e-4, Final: 3e-5, Steps: 7}.LR(0))
}

func TestJoin(t *testing.T) {
	warm := LinearWarmup{Init: 0, Peak: 1e-3, Steps: 10}
	cos := CosineDecay{Init: 1e-3, Final: 1e-4, Steps: 90}
	s, err := Join([]Schedule{warm, cos}, []int{10})
	require.NoError(t, err)
	for _, step := range []int{0, 1, 5, 9} {
		assert.Equal(t, 1e-3*float64(step)/10, s.LR(step), step)
	}
	// At the boundary the second schedule starts at its own step 0.
	assert.Equal(t, 1e-3, s.LR(10))
	assert.InDelta(t, 1e-4+(9e-4)*(1+math.Cos(math.Pi*40/90))/2, s.LR(50), 1e-18)
	assert.Equal(t, 1e-4, s.LR(100))
	assert.Equal(t, 1e-4, s.LR(1000))

	// Three pieces: constant, then a step decay, then a constant floor.
	s3, err := Join([]Schedule{Constant(1), StepDecay{Init: 0.5, Gamma: 0.1, Every: 2}, Constant(0.01)}, []int{3, 7})
	require.NoError(t, err)
	want := []float64{1, 1, 1, 0.5, 0.5, 0.05, 0.05, 0.01, 0.01}
	for step, w := range want {
		assert.InDelta(t, w, s3.LR(step), 1e-15, step)
	}
	// Equal boundaries skip a schedule entirely.
	s4, err := Join([]Schedule{Constant(1), Constant(2), Constant(3)}, []int{2, 2})
	require.NoError(t, err)
	assert.Equal(t, []float64{1, 1, 3, 3}, []float64{s4.LR(0), s4.LR(1), s4.LR(2), s4.LR(3)})

	single, err := Join([]Schedule{Constant(4)}, nil)
	require.NoError(t, err)
	assert.Equal(t, 4.0, single.LR(9))

	for _, bad := range []struct {
		s []Schedule
		b []int
	}{
		{nil, nil},
		{[]Schedule{warm, cos}, nil},
		{[]Schedule{warm, cos}, []int{1, 2}},
		{[]Schedule{warm, nil}, []int{1}},
		{[]Schedule{warm, cos}, []int{-1}},
		{[]Schedule{warm, cos, warm}, []int{5, 4}},
	} {
		_, err := Join(bad.s, bad.b)
		assert.Error(t, err, "%v", bad.b)
	}
}
