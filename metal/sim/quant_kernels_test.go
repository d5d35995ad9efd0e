package sim

import (
	"testing"

	"github.com/mlxtrain/mlxtrain/internal/kerneltest"
)

func TestQuantKernels(t *testing.T) { kerneltest.Quant(t, device(t)) }

func TestQuantExpertKernels(t *testing.T) { kerneltest.QuantExperts(t, device(t)) }
