//go:build darwin

package mtl

import (
	"testing"

	"github.com/mlxtrain/mlxtrain/internal/kerneltest"
)

func TestMoEKernels(t *testing.T) {
	d := open(t)
	defer d.Close()
	kerneltest.MoE(t, d)
}

func TestMoERoutingKernels(t *testing.T) {
	d := open(t)
	defer d.Close()
	kerneltest.MoERouting(t, d)
}
