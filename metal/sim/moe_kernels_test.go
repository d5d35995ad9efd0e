package sim

import (
	"testing"

	"github.com/mlxtrain/mlxtrain/internal/kerneltest"
)

func TestMoEKernels(t *testing.T) { kerneltest.MoE(t, device(t)) }
