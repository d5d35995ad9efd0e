package checkpoints

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func ptr(v float64) *float64 { return &v }

func fullState() TrainerState {
	return TrainerState{
		Step:          1200,
		OptimizerStep: 1199,
		ScheduleStep:  1200,
		LearningRate:  3e-4,
		TokensSeen:    1 << 40,
		DataPosition:  json.RawMessage(`{"epoch":2,"order_seed":7,"next":[3,1,4]}`),
		RNG:           RNGState{Seed: math.MaxUint64, Offset: 1<<63 + 5},
		Metrics: map[string]float64{
			"train_loss": 1.2345678901234567, "tiny": 5e-324, "neg_zero": math.Copysign(0, -1),
			"ppl": math.Inf(1), "floor": math.Inf(-1), "broken": math.NaN(),
		},
		ValLoss:     ptr(0.1 + 0.2),
		BestValLoss: ptr(0.25),
		BestStep:    1000,
		Files:       map[string]int64{ModelFile: 123},
		LossScale:   &LossScaleState{Scale: 0x1p-3 * 3, GoodSteps: 17},
	}
}

func TestStateRoundTripsExactly(t *testing.T) {
	want := fullState()
	path := filepath.Join(t.TempDir(), StateFile)
	require.NoError(t, SaveState(path, want))
	got, err := LoadState(path)
	require.NoError(t, err)

	// Floats compare by bits: NaN, -0 and the smallest subnormal must survive.
	require.Len(t, got.Metrics, len(want.Metrics))
	for k, v := range want.Metrics {
		assert.Equal(t, math.Float64bits(v), math.Float64bits(got.Metrics[k]), k)
	}
	assert.Equal(t, math.Float64bits(*want.ValLoss), math.Float64bits(*got.ValLoss))
	got.Metrics, want.Metrics = nil, nil
	assert.Equal(t, want, got, "compact data_position comes back byte for byte")
}

func TestStateFileLayout(t *testing.T) {
	b, err := TrainerState{Step: 3, RNG: RNGState{Seed: 1, Offset: 2}, Metrics: map[string]float64{"acc": 0.5, "x": math.NaN()}}.MarshalJSON()
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	assert.Equal(t, map[string]any{
		"format_version": 1.0, "step": 3.0, "optimizer_step": 0.0, "schedule_step": 0.0,
		"learning_rate": 0.0, "tokens_seen": 0.0, "rng": map[string]any{"seed": 1.0, "offset": 2.0},
		"metrics": map[string]any{"acc": 0.5, "x": "NaN"},
	}, m)
	assert.True(t, strings.HasPrefix(string(b), "{\n  \"format_version\": 1,"), "readable, version first:\n%s", b)
}

func TestEmptyStateRoundTrips(t *testing.T) {
	b, err := TrainerState{}.MarshalJSON()
	require.NoError(t, err)
	var got TrainerState
	require.NoError(t, json.Unmarshal(b, &got))
	assert.Equal(t, TrainerState{}, got)
}

func TestStateRejects(t *testing.T) {
	for _, tc := range []struct {
		name, json, want string
	}{
		{"newer version", `{"format_version":3,"step":1,"something_new":true}`, "format_version 3 is newer than this build of mlxtrain reads (2)"},
		{"no version", `{"step":1}`, "no format_version"},
		{"zero version", `{"format_version":0}`, "format_version 0 is not a valid version"},
		{"unknown field", `{"format_version":1,"stepp":1}`, `unknown field "stepp"`},
		{"unknown rng field", `{"format_version":1,"rng":{"seed":1,"state":2}}`, `unknown field "state"`},
		{"negative step", `{"format_version":1,"step":-1}`, "negative"},
		{"negative size", `{"format_version":1,"files":{"model.safetensors":-1}}`, "negative size"},
		{"metric as string", `{"format_version":1,"metrics":{"a":"1.5"}}`, "is not a number"},
		{"metric null", `{"format_version":1,"metrics":{"a":null}}`, "is not a number"},
		{"seed negative", `{"format_version":1,"rng":{"seed":-1}}`, "seed"},
		{"zero loss scale", `{"format_version":1,"loss_scale":{"scale":0,"good_steps":1}}`, "loss_scale"},
		{"negative good steps", `{"format_version":1,"loss_scale":{"scale":2,"good_steps":-1}}`, "loss_scale"},
		{"not json", `{"format_version":1,`, "unexpected end of JSON input"},
		{"array", `[1]`, "invalid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s TrainerState
			assert.ErrorContains(t, json.Unmarshal([]byte(tc.json), &s), tc.want)
		})
	}
}

func TestLoadStateErrorsNameTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), StateFile)
	require.NoError(t, os.WriteFile(path, []byte(`{"format_version":9}`), 0o644))
	_, err := LoadState(path)
	assert.ErrorContains(t, err, "trainer state "+path+": format_version 9 is newer")
}

func TestDataPositionComesBackCompact(t *testing.T) {
	b, err := TrainerState{DataPosition: json.RawMessage("{ \"a\" : [1, 2] }")}.MarshalJSON()
	require.NoError(t, err)
	var s TrainerState
	require.NoError(t, json.Unmarshal(b, &s))
	assert.Equal(t, `{"a":[1,2]}`, string(s.DataPosition))
}

func TestStateRefusesInvalidDataPosition(t *testing.T) {
	err := SaveState(filepath.Join(t.TempDir(), StateFile), TrainerState{DataPosition: json.RawMessage(`{oops`)})
	assert.ErrorContains(t, err, "data_position")
}

// FuzzState: the trainer state reader must never panic, and what it accepts must
// write back and read back the same.
func FuzzState(f *testing.F) {
	b, _ := fullState().MarshalJSON()
	f.Add(b)
	f.Add([]byte(`{"format_version":1}`))
	f.Add([]byte(`{"format_version":2}`))
	f.Add([]byte(`{"format_version":1,"metrics":{"a":"+Inf"},"data_position":[1,{"x":null}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s TrainerState
		if json.Unmarshal(b, &s) != nil {
			return
		}
		out, err := s.MarshalJSON()
		if err != nil {
			t.Fatalf("accepted state does not write back: %v", err)
		}
		var back TrainerState
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("written state does not read back: %v\n%s", err, out)
		}
		again, err := back.MarshalJSON()
		if err != nil || string(again) != string(out) {
			t.Fatalf("state changed on a second round trip:\n%s\n%s", out, again)
		}
	})
}

// TestStateVersionFollowsContent: a float16 run's state (loss_scale) is version
// 2, every other state version 1, so builds that predate loss_scale still read
// what they can resume and refuse the rest by its version.
func TestStateVersionFollowsContent(t *testing.T) {
	for _, tc := range []struct {
		s    TrainerState
		want float64
	}{
		{TrainerState{Step: 1}, 1},
		{TrainerState{Step: 1, LossScale: &LossScaleState{Scale: 65536, GoodSteps: 3}}, 2},
	} {
		b, err := tc.s.MarshalJSON()
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(b, &m))
		assert.Equal(t, tc.want, m["format_version"])
		var got TrainerState
		require.NoError(t, json.Unmarshal(b, &got))
		assert.Equal(t, tc.s, got)
	}
}
