package advanced

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	ad "github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// TestMambaStepPaths profiles a float32 prefill and decoding step: the
// convolution continuing from the state and both step ops are recorded, on the
// Metal path when an accelerator takes them (with the thresholds at 0,
// TestAdvancedOnSimulator), else on the CPU's; the values are
// TestMambaStepReproducesForward's to check.
func TestMambaStepPaths(t *testing.T) {
	onDevice := metal.Offloading() && convStepOp.OnMetal(1) && ssmStepOp.OnMetal(1, 1) && convContinueOp.OnMetal(1, 1)
	m, err := NewMamba(ad.NewRNG(5), ad.Float32, MambaConfig{DModel: 8, DState: 16})
	require.NoError(t, err)
	st := m.NewState(2)
	defer st.Release()
	x, prompt := ad.Zeros(ad.Float32, 2, 8), ad.Zeros(ad.Float32, 2, 3, 8)
	defer x.Release()
	defer prompt.Release()
	metal.ResetProfile()
	metal.SetProfiling(true)
	m.Prefill(nil, prompt, st).Release()
	m.Step(nil, x, st).Release()
	metal.SetProfiling(false)
	paths := map[string]metal.Path{}
	for _, e := range metal.ProfileSnapshot() {
		paths[e.Op] = e.Path
	}
	metal.ResetProfile()
	want := metal.PathGo
	if onDevice {
		want = metal.PathMetal
	}
	for _, op := range []string{"causal_conv1d_continue", "causal_conv1d_step", "selective_scan_step"} {
		assert.Equal(t, want, paths[op], op)
	}
}
