package metal

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSelfTestFailureDisablesWithOneWarning(t *testing.T) {
	var warnings bytes.Buffer
	defer SetWarnings(SetWarnings(&warnings))
	r := &Registry{ops: map[string]*Op{}}
	runs := 0
	yes := func() bool { return true }
	bad := r.Register("selftest_bad", []string{"N"},
		&Impl{Path: PathMetal, Available: yes, SelfTest: func() error { runs++; return errors.New("element 3 is NaN") }},
		&Impl{Path: PathGo},
	)
	panicky := r.Register("selftest_panics", []string{"N"},
		&Impl{Path: PathMetal, Available: yes, SelfTest: func() error { panic("index out of range") }},
		&Impl{Path: PathGo},
	)
	good := r.Register("selftest_good", []string{"N"},
		&Impl{Path: PathMetal, Available: yes, SelfTest: func() error { return nil }},
		&Impl{Path: PathGo},
	)
	before := r.List()
	assert.Empty(t, SelfTestReport(before), "List does not run self-tests")

	for range 3 {
		assert.Equal(t, PathGo, bad.Pick(100).Path)
		assert.False(t, bad.OnMetal(100))
	}
	assert.Equal(t, 1, runs, "a self-test runs once")
	assert.Equal(t, PathGo, panicky.Pick(100).Path)
	assert.True(t, good.OnMetal(100))
	assert.Equal(t, 2, bytes.Count(warnings.Bytes(), []byte("\n")), "one line per failed kernel: %s", warnings.String())
	assert.Contains(t, warnings.String(), "selftest_bad: the metal kernel failed its self-test and is disabled (element 3 is NaN)")
	assert.Contains(t, warnings.String(), "panic: index out of range")

	report := SelfTestReport(r.SelfTest())
	assert.Equal(t, []string{"selftest_bad: element 3 is NaN", "selftest_good: passed", "selftest_panics: panic: index out of range"}, report)
	info := r.List()
	require.Len(t, info, 3)
	assert.Equal(t, "self-test failed: element 3 is NaN", info[0].Impls[0].Disabled)
}

func TestMetalMinSetsEveryDeviceThreshold(t *testing.T) {
	t.Setenv("MLXTRAIN_METAL_MIN", "0")
	t.Setenv("MLXTRAIN_TUNED_MIN_K_METAL", "7")
	r := &Registry{ops: map[string]*Op{}}
	op := r.Register("tuned", []string{"N", "K"},
		&Impl{Path: PathMetal, Min: []int{100, 100}, Tuning: Tuning{0: {50, 50}}},
		&Impl{Path: PathAsm, Min: []int{10, 10}},
		&Impl{Path: PathGo},
	)
	assert.Equal(t, []int{0, 7}, op.Impls[0].Min, "the per-op variable wins over MLXTRAIN_METAL_MIN")
	assert.Equal(t, []bool{true, true}, op.Impls[0].fixed, "the tuning table does not override them")
	assert.Equal(t, []int{10, 10}, op.Impls[1].Min, "CPU paths keep theirs")
	assert.Equal(t, PathMetal, op.Pick(1, 7).Path)
	assert.Equal(t, PathGo, op.Pick(10, 6).Path, "K below 7 (metal) and 10 (asm)")
}

func TestTuningByFamily(t *testing.T) {
	tu := Tuning{0: {64}, 9: {32}, 10: {16}}
	assert.Equal(t, []int{64}, tu.For(7))
	assert.Equal(t, []int{64}, tu.For(0))
	assert.Equal(t, []int{32}, tu.For(9))
	assert.Equal(t, []int{16}, tu.For(12))
	assert.Nil(t, Tuning{9: {1}}.For(8), "no entry at or below the family")
	for name, tu := range Tunings {
		assert.NotNil(t, tu.For(7), "%s has a default", name)
	}
}

func TestNoAcceleratorMeansHostStorage(t *testing.T) {
	// The test binary links no device and MLXTRAIN_DEVICE is unset: tensors
	// live in the host pool and no device implementation is available.
	if Settings().Device != DeviceAuto && Settings().Device != DeviceCPU {
		t.Skip("MLXTRAIN_DEVICE is set")
	}
	assert.False(t, Offloading())
	b := Storage(100)
	defer b.Release()
	assert.Nil(t, b.Handle())
	z := StorageZeroed(40)
	defer z.Release()
	assert.Equal(t, make([]byte, 40), z.Bytes())
	assert.False(t, DeviceImpl("binary", nil).Available())
	assert.Same(t, HostPool, StoragePool())
}

func TestDisableDevice(t *testing.T) {
	r := &Registry{}
	yes := func() bool { return true }
	a := r.Register("dd_a", []string{"N"}, &Impl{Path: PathMetal, Available: yes}, &Impl{Path: PathGo})
	b := r.Register("dd_b", []string{"N"}, &Impl{Path: PathMetal, Available: yes}, &Impl{Path: PathAsm}, &Impl{Path: PathGo})
	require.True(t, a.OnMetal(1))
	r.DisableDevice("device failure: boom")
	assert.Equal(t, PathGo, a.Pick(1).Path)
	assert.Equal(t, PathAsm, b.Pick(1).Path)
	assert.Equal(t, "device failure: boom", r.List()[1].Impls[0].Disabled)
	assert.NoError(t, CheckAccelerator(), "no accelerator, nothing to check")
}
