// Package simtest reruns a package's device tests on the shader simulator
// (package metal/sim) from its ordinary test run. The test binary must link the
// simulator (import _ "github.com/mlxtrain/mlxtrain/metal/sim").
package simtest

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/metal"
	"github.com/mlxtrain/mlxtrain/metal/sim"
)

// Rerun runs tests (names of tests or examples of the calling test binary) in
// a child process on the simulator with every threshold at 0
// (MLXTRAIN_DEVICE=sim, MLXTRAIN_METAL_MIN=0): each must pass and nothing may
// warn. It skips when this process already runs on a device, and without clang
// unless MLXTRAIN_REQUIRE_CLANG=1.
func Rerun(t *testing.T, tests ...string) {
	t.Helper()
	if metal.Offloading() {
		t.Skip("this process already runs on a device")
	}
	if _, err := sim.FindCompiler(); err != nil {
		if os.Getenv("MLXTRAIN_REQUIRE_CLANG") == "1" {
			t.Fatalf("MLXTRAIN_REQUIRE_CLANG=1 but the simulator cannot build: %v", err)
		}
		t.Skipf("skipping the shader simulator: %v (set MLXTRAIN_REQUIRE_CLANG=1 to make this a failure)", err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^("+strings.Join(tests, "|")+")$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "MLXTRAIN_DEVICE=sim", "MLXTRAIN_METAL_MIN=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, name := range tests {
		assert.Contains(t, string(out), "--- PASS: "+name+" ", "%s", out)
	}
	assert.NotContains(t, string(out), "warning", "%s", out)
}
