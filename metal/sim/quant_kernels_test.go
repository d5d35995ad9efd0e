package sim

import (
	"testing"

	"github.com/mlxtrain/mlxtrain/internal/kerneltest"
)

func TestQuantKernels(t *testing.T) { kerneltest.Quant(t, device(t)) }
