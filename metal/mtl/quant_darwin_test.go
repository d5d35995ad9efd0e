//go:build darwin

package mtl

import (
	"testing"

	"github.com/mlxtrain/mlxtrain/internal/kerneltest"
)

func TestQuantKernels(t *testing.T) {
	d := open(t)
	defer d.Close()
	kerneltest.Quant(t, d)
}

func TestQuantExpertKernels(t *testing.T) {
	d := open(t)
	defer d.Close()
	kerneltest.QuantExperts(t, d)
}
