package sim

import (
	"os"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/internal/kerneltest"
)

// requireClang skips a test that needs clang when there is none, unless
// MLXTRAIN_REQUIRE_CLANG=1 (CI sets it), which turns the skip into a failure.
func requireClang(t testing.TB) {
	t.Helper()
	if _, err := FindCompiler(); err != nil {
		if os.Getenv("MLXTRAIN_REQUIRE_CLANG") == "1" {
			t.Fatalf("MLXTRAIN_REQUIRE_CLANG=1 but the simulator cannot build: %v", err)
		}
		t.Skipf("skipping the shader simulator: %v (set MLXTRAIN_REQUIRE_CLANG=1 to make this a failure)", err)
	}
}

var (
	sharedOnce sync.Once
	shared     *Device
	sharedErr  error
)

// device returns the simulator of package shaders, opened once for the test binary.
func device(t testing.TB) *Device {
	t.Helper()
	requireClang(t)
	sharedOnce.Do(func() { shared, sharedErr = Open() })
	require.NoError(t, sharedErr)
	require.Empty(t, shared.Errors(), "every shader must build")
	return shared
}

func TestKernelsMatchReferences(t *testing.T) {
	kerneltest.RunKernels(t, device(t))
}
