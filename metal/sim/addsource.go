package sim

import (
	"fmt"
	"sort"
	"testing/fstest"
)

// AddSource compiles src, MSL with the common file's helpers in front, as a
// library of its own named name (a file name without ".metal"), and makes its
// kernels launchable on d: the way kernels defined outside package shaders
// (metal.AddSource, autodiff.CustomKernel) reach the simulator. Adding the same
// source under the same name again does nothing; a kernel name already
// launchable on d, or a source that does not compile, is an error.
func (d *Device) AddSource(name, src string) error {
	d.extraMu.Lock()
	defer d.extraMu.Unlock()
	if prev, ok := d.added[name]; ok {
		if prev == src {
			return nil
		}
		return fmt.Errorf("sim: library %s was added with another source", name)
	}
	file := name + ".metal"
	files := fstest.MapFS{file: {Data: []byte(src)}}
	common := ""
	if d.common != "" {
		common = "common.metal"
		if file == common {
			return fmt.Errorf("sim: library name %s is taken by the common file", name)
		}
		files[common] = &fstest.MapFile{Data: []byte(d.common)}
	}
	lib, err := loadLibrary(files, common)
	if err != nil {
		return err
	}
	if e := lib.b.errs[file]; e != nil {
		return fmt.Errorf("sim: %w", e)
	}
	var names []string
	for k := range lib.b.kernels {
		if d.lib.b.kernels[k] != nil || d.extra[k] != nil {
			return fmt.Errorf("sim: %s: kernel %s is already defined on the device", file, k)
		}
		names = append(names, k)
	}
	if len(names) == 0 {
		return fmt.Errorf("sim: %s defines no kernel", file)
	}
	sort.Strings(names)
	for _, k := range names {
		d.extra[k] = lib
	}
	d.added[name] = src
	return nil
}

// libraryOf returns the library holding kernel name: an added one, else the
// device's own.
func (d *Device) libraryOf(name string) *library {
	d.extraMu.Lock()
	defer d.extraMu.Unlock()
	if l := d.extra[name]; l != nil {
		return l
	}
	return d.lib
}
