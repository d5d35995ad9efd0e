package sim

import (
	"testing"

	"github.com/mlxtrain/mlxtrain/internal/kerneltest"
)

func TestMoEKernels(t *testing.T) { kerneltest.MoE(t, device(t)) }

func TestMoERoutingKernels(t *testing.T) { kerneltest.MoERouting(t, device(t)) }
