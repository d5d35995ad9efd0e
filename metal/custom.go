package metal

import (
	"errors"
	"fmt"
)

// SourceAdder is a compute device that compiles MSL at run time: Metal
// (metal/mtl) and the simulator (metal/sim) both are. It is how kernels defined
// outside package shaders (autodiff.CustomKernel) reach a device.
type SourceAdder interface {
	// AddSource compiles src (with package shaders' common.metal helpers in
	// front) as a library named name and makes its kernels launchable. Adding
	// the same source under the same name again does nothing.
	AddSource(name, src string) error
}

// AddSource compiles src on d as a library of its own named name (see
// [SourceAdder]), and fails on a device that cannot compile at run time.
func AddSource(d Compute, name, src string) error {
	if d == nil {
		return errors.New("metal: AddSource: no device")
	}
	if c, ok := d.(interface{ Unwrap() Compute }); ok {
		d = c.Unwrap()
	}
	a, ok := d.(SourceAdder)
	if !ok {
		return fmt.Errorf("metal: %s cannot compile kernels at run time", d.Name())
	}
	return a.AddSource(name, src)
}

// Unwrap returns the device whose launches c counts.
func (c countingDevice) Unwrap() Compute { return c.Compute }
