package checkpoints

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
)

// StateVersion is the newest trainer_state.json format this package writes.
// Readers accept it and every older version they know; a newer one is an error,
// since its fields may change what resuming means.
//
// Version 2 added loss_scale (float16 training). A state without it is written
// as version 1, so older builds keep reading every checkpoint they can resume,
// and refuse a float16 run's with the "newer version" message instead of an
// unknown field.
const StateVersion = 2

// lossScaleVersion is the first version with loss_scale.
const lossScaleVersion = 2

// TrainerState is everything besides tensors that a run needs to continue exactly
// where it stopped. It is stored as trainer_state.json.
type TrainerState struct {
	// Step is the number of training steps completed.
	Step int64
	// OptimizerStep is the optimizer's update count (bias correction uses it), and
	// ScheduleStep the learning-rate schedule's position; both usually equal Step.
	OptimizerStep int64
	ScheduleStep  int64
	// LearningRate is the last learning rate applied, for reports.
	LearningRate float64
	// TokensSeen counts the training tokens consumed.
	TokensSeen int64
	// DataPosition is where the data stream stands, in the data package's own
	// JSON; this package stores it as it is and reads it back compacted (so
	// compact JSON comes back byte for byte). Nil when there is none.
	DataPosition json.RawMessage
	// RNG is the state of the counter-based random generator.
	RNG RNGState
	// Metrics holds the latest values of any named metrics (losses, accuracy,
	// throughput). NaN and ±Inf are kept.
	Metrics map[string]float64
	// ValLoss is the validation loss of the weights in this checkpoint, nil when
	// they were not evaluated. [Retain] keeps the checkpoint where it is lowest.
	ValLoss *float64
	// BestValLoss and BestStep are the lowest validation loss of the run so far and
	// the step it was measured at; nil and 0 when there has been none.
	BestValLoss *float64
	BestStep    int64
	// Files lists the other files of a checkpoint directory with their sizes in
	// bytes. [SaveDir] fills it and [LoadDir] checks it.
	Files map[string]int64
	// LossScale is the dynamic loss scaler's state in float16 training; nil
	// otherwise.
	LossScale *LossScaleState
}

// LossScaleState is a dynamic loss scaler's whole state: the current scale and
// the finite steps counted towards its next growth.
type LossScaleState struct {
	Scale     float64 `json:"scale"`
	GoodSteps int64   `json:"good_steps"`
}

// RNGState is a counter-based generator's whole state: the seed and how many
// values have been drawn.
type RNGState struct {
	Seed   uint64 `json:"seed"`
	Offset uint64 `json:"offset"`
}

// stateJSON is the file layout of TrainerState.
type stateJSON struct {
	Version       int               `json:"format_version"`
	Step          int64             `json:"step"`
	OptimizerStep int64             `json:"optimizer_step"`
	ScheduleStep  int64             `json:"schedule_step"`
	LearningRate  number            `json:"learning_rate"`
	TokensSeen    int64             `json:"tokens_seen"`
	DataPosition  json.RawMessage   `json:"data_position,omitempty"`
	RNG           RNGState          `json:"rng"`
	Metrics       map[string]number `json:"metrics,omitempty"`
	ValLoss       *number           `json:"val_loss,omitempty"`
	BestValLoss   *number           `json:"best_val_loss,omitempty"`
	BestStep      int64             `json:"best_step,omitempty"`
	Files         map[string]int64  `json:"files,omitempty"`
	LossScale     *LossScaleState   `json:"loss_scale,omitempty"`
}

// number is a float64 that survives JSON whatever its value: finite values are
// JSON numbers (shortest form that reads back exactly), the rest the strings
// "NaN", "+Inf" and "-Inf", which plain JSON has no numbers for.
type number float64

func (n number) MarshalJSON() ([]byte, error) {
	v := float64(n)
	switch {
	case math.IsNaN(v):
		return []byte(`"NaN"`), nil
	case math.IsInf(v, 1):
		return []byte(`"+Inf"`), nil
	case math.IsInf(v, -1):
		return []byte(`"-Inf"`), nil
	}
	return strconv.AppendFloat(nil, v, 'g', -1, 64), nil
}

func (n *number) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case `"NaN"`:
		*n = number(math.NaN())
		return nil
	case `"+Inf"`:
		*n = number(math.Inf(1))
		return nil
	case `"-Inf"`:
		*n = number(math.Inf(-1))
		return nil
	}
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil || len(b) == 0 || b[0] == '"' {
		return fmt.Errorf("%s is not a number", clip(b))
	}
	*n = number(v)
	return nil
}

func numberPtr(p *float64) *number {
	if p == nil {
		return nil
	}
	n := number(*p)
	return &n
}

func floatPtr(p *number) *float64 {
	if p == nil {
		return nil
	}
	v := float64(*p)
	return &v
}

// MarshalJSON writes the state in the trainer_state.json layout, with
// format_version the oldest version that holds it (see [StateVersion]).
func (s TrainerState) MarshalJSON() ([]byte, error) {
	version := 1
	if s.LossScale != nil {
		version = lossScaleVersion
	}
	j := stateJSON{
		Version:       version,
		Step:          s.Step,
		OptimizerStep: s.OptimizerStep,
		ScheduleStep:  s.ScheduleStep,
		LearningRate:  number(s.LearningRate),
		TokensSeen:    s.TokensSeen,
		DataPosition:  s.DataPosition,
		RNG:           s.RNG,
		ValLoss:       numberPtr(s.ValLoss),
		BestValLoss:   numberPtr(s.BestValLoss),
		BestStep:      s.BestStep,
		Files:         s.Files,
		LossScale:     s.LossScale,
	}
	if len(s.DataPosition) > 0 && !json.Valid(s.DataPosition) {
		return nil, fmt.Errorf("data_position %s is not valid JSON", clip(s.DataPosition))
	}
	if len(s.Metrics) > 0 {
		j.Metrics = make(map[string]number, len(s.Metrics))
		for k, v := range s.Metrics {
			j.Metrics[k] = number(v)
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(j); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// UnmarshalJSON reads trainer_state.json. It refuses a missing or newer
// format_version, unknown fields, and trailing data.
func (s *TrainerState) UnmarshalJSON(b []byte) error {
	var v struct {
		Version *int `json:"format_version"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	switch {
	case v.Version == nil:
		return errors.New("no format_version: not a trainer state")
	case *v.Version > StateVersion:
		return fmt.Errorf("format_version %d is newer than this build of mlxtrain reads (%d): upgrade mlxtrain to resume from it", *v.Version, StateVersion)
	case *v.Version < 1:
		return fmt.Errorf("format_version %d is not a valid version", *v.Version)
	}
	var j stateJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	if j.Step < 0 || j.OptimizerStep < 0 || j.ScheduleStep < 0 || j.TokensSeen < 0 || j.BestStep < 0 {
		return errors.New("negative step or token count")
	}
	if ls := j.LossScale; ls != nil && (!(ls.Scale > 0) || math.IsInf(ls.Scale, 0) || ls.GoodSteps < 0) {
		return fmt.Errorf("loss_scale: scale %g and good_steps %d: want a finite positive scale and a count ≥ 0", ls.Scale, ls.GoodSteps)
	}
	for name, size := range j.Files {
		if size < 0 {
			return fmt.Errorf("files: %q has negative size %d", name, size)
		}
	}
	if len(j.DataPosition) > 0 {
		var c bytes.Buffer
		if err := json.Compact(&c, j.DataPosition); err != nil {
			return fmt.Errorf("data_position: %w", err)
		}
		j.DataPosition = c.Bytes()
	}
	*s = TrainerState{
		Step:          j.Step,
		OptimizerStep: j.OptimizerStep,
		ScheduleStep:  j.ScheduleStep,
		LearningRate:  float64(j.LearningRate),
		TokensSeen:    j.TokensSeen,
		DataPosition:  j.DataPosition,
		RNG:           j.RNG,
		ValLoss:       floatPtr(j.ValLoss),
		BestValLoss:   floatPtr(j.BestValLoss),
		BestStep:      j.BestStep,
		Files:         j.Files,
		LossScale:     j.LossScale,
	}
	if len(j.Metrics) > 0 {
		s.Metrics = make(map[string]float64, len(j.Metrics))
		for k, v := range j.Metrics {
			s.Metrics[k] = float64(v)
		}
	}
	return nil
}

// SaveState writes a trainer_state.json file atomically (temporary file, sync,
// rename).
func SaveState(path string, s TrainerState) error {
	b, err := s.MarshalJSON() // not json.Marshal, which would drop the indentation
	if err != nil {
		return fmt.Errorf("trainer state %s: %w", path, err)
	}
	if err := writeAtomic(path, func(w io.Writer) error { _, err := w.Write(b); return err }); err != nil {
		return fmt.Errorf("trainer state %s: %w", path, err)
	}
	return nil
}

// LoadState reads a trainer_state.json file.
func LoadState(path string) (TrainerState, error) {
	var s TrainerState
	b, err := os.ReadFile(path)
	if err != nil {
		return s, fmt.Errorf("trainer state: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("trainer state %s: %w", path, err)
	}
	return s, nil
}
