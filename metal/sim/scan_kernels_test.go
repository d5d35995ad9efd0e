package sim

import (
	"testing"

	"github.com/mlxtrain/mlxtrain/internal/kerneltest"
)

func TestConv1dKernels(t *testing.T) { kerneltest.Conv1d(t, device(t)) }
