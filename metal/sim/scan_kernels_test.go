package sim

import (
	"testing"

	"github.com/mlxtrain/mlxtrain/internal/kerneltest"
)

func TestConv1dKernels(t *testing.T) { kerneltest.Conv1d(t, device(t)) }

func TestSSMKernels(t *testing.T) { kerneltest.SSM(t, device(t)) }
