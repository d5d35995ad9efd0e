package sim

import (
	"testing"

	"github.com/mlxtrain/mlxtrain/internal/kerneltest"
)

func TestConv1dKernels(t *testing.T) { kerneltest.Conv1d(t, device(t)) }

func TestSSMKernels(t *testing.T) { kerneltest.SSM(t, device(t)) }

func TestScanKernels(t *testing.T) { kerneltest.Scan(t, device(t)) }

func TestScanKernelsLong(t *testing.T) {
	if testing.Short() {
		t.Skip("a million-element row")
	}
	kerneltest.ScanLong(t, device(t))
}

func TestLinearScanKernels(t *testing.T) { kerneltest.LinearScan(t, device(t)) }

func TestStepKernels(t *testing.T) {
	kerneltest.Steps(t, device(t))
	kerneltest.Conv1dContinue(t, device(t))
}
