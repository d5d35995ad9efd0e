package optim

import (
	"fmt"
	"math"
)

// Schedule gives the learning rate for a step, counted from 0. An optimizer asks
// it at its step counter before each update, so step 0 is the first update.
// Schedules clamp: a step before 0 counts as 0, one past a schedule's end keeps
// its final value.
type Schedule interface {
	LR(step int) float64
}

// ScheduleFunc adapts a function to a Schedule.
type ScheduleFunc func(step int) float64

// LR calls f.
func (f ScheduleFunc) LR(step int) float64 { return f(step) }

// Constant is a fixed learning rate.
type Constant float64

// LR returns c at every step.
func (c Constant) LR(int) float64 { return float64(c) }

// LinearWarmup rises linearly from Init at step 0 to Peak at step Steps and stays
// there (MLX's linear_schedule). Steps ≤ 0 means no warmup: Peak throughout.
type LinearWarmup struct {
	Init, Peak float64
	Steps      int
}

// LR returns Init + (Peak−Init)·min(step, Steps)/Steps.
func (s LinearWarmup) LR(step int) float64 { return linear(s.Init, s.Peak, s.Steps, step) }

// LinearDecay falls linearly from Init at step 0 to Final at step Steps and stays
// there. It is LinearWarmup's formula read the other way; Steps ≤ 0 means Final
// throughout.
type LinearDecay struct {
	Init, Final float64
	Steps       int
}

// LR returns Init + (Final−Init)·min(step, Steps)/Steps.
func (s LinearDecay) LR(step int) float64 { return linear(s.Init, s.Final, s.Steps, step) }

func linear(from, to float64, steps, step int) float64 {
	if step >= steps || steps <= 0 {
		return to
	}
	step = max(step, 0)
	return from + (to-from)*(float64(step)/float64(steps))
}

// CosineDecay follows half a cosine from Init at step 0 down to Final at step
// Steps and stays at Final (MLX's cosine_decay(init, decay_steps, end)):
//
//	Final + (Init−Final) · ½(1 + cos(π·min(step, Steps)/Steps))
//
// Steps ≤ 0 means Final throughout.
type CosineDecay struct {
	Init, Final float64
	Steps       int
}

// LR evaluates the cosine at step.
func (s CosineDecay) LR(step int) float64 {
	if step >= s.Steps || s.Steps <= 0 {
		return s.Final
	}
	step = max(step, 0)
	decay := 0.5 * (1 + math.Cos(math.Pi*float64(step)/float64(s.Steps)))
	return s.Final + decay*(s.Init-s.Final)
}

// StepDecay multiplies Init by Gamma every Every steps (MLX's step_decay):
// Init·Gamma^⌊step/Every⌋. Every ≤ 0 means Init throughout.
type StepDecay struct {
	Init, Gamma float64
	Every       int
}

// LR returns Init·Gamma^⌊step/Every⌋.
func (s StepDecay) LR(step int) float64 {
	if s.Every <= 0 || step < s.Every {
		return s.Init
	}
	return s.Init * math.Pow(s.Gamma, float64(step/s.Every))
}

// Join runs schedules one after another (MLX's join_schedules): schedules[0]
// before boundaries[0], then schedules[k] from boundaries[k-1] on, each asked at
// the steps since its own start (step − boundaries[k-1]). Warmup then cosine:
//
//	Join([]Schedule{LinearWarmup{0, 3e-4, 100}, CosineDecay{3e-4, 3e-5, 900}}, []int{100})
//
// It needs one boundary fewer than schedules, non-negative and non-decreasing.
func Join(schedules []Schedule, boundaries []int) (Schedule, error) {
	if len(schedules) == 0 {
		return nil, fmt.Errorf("optim: Join: no schedules")
	}
	if len(boundaries) != len(schedules)-1 {
		return nil, fmt.Errorf("optim: Join: %d boundaries for %d schedules (want %d)", len(boundaries), len(schedules), len(schedules)-1)
	}
	for i, s := range schedules {
		if s == nil {
			return nil, fmt.Errorf("optim: Join: schedule %d is nil", i)
		}
	}
	for i, b := range boundaries {
		if b < 0 || i > 0 && b < boundaries[i-1] {
			return nil, fmt.Errorf("optim: Join: boundaries %v must be non-negative and non-decreasing", boundaries)
		}
	}
	return joined{append([]Schedule(nil), schedules...), append([]int(nil), boundaries...)}, nil
}

type joined struct {
	schedules  []Schedule
	boundaries []int
}

func (j joined) LR(step int) float64 {
	k, start := 0, 0
	for i, b := range j.boundaries {
		if step >= b {
			k, start = i+1, b
		}
	}
	return j.schedules[k].LR(step - start)
}
