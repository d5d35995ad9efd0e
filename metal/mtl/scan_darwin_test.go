//go:build darwin

package mtl

import (
	"testing"

	"github.com/mlxtrain/mlxtrain/internal/kerneltest"
)

func TestConv1dKernels(t *testing.T) {
	d := open(t)
	defer d.Close()
	kerneltest.Conv1d(t, d)
}

func TestSSMKernels(t *testing.T) {
	d := open(t)
	defer d.Close()
	kerneltest.SSM(t, d)
}

func TestScanKernels(t *testing.T) {
	d := open(t)
	defer d.Close()
	kerneltest.Scan(t, d)
	kerneltest.ScanLong(t, d)
	kerneltest.LinearScan(t, d)
}

func TestStepKernels(t *testing.T) {
	d := open(t)
	defer d.Close()
	kerneltest.Steps(t, d)
	kerneltest.Conv1dContinue(t, d)
}
