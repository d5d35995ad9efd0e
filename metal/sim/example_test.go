package sim_test

import (
	"fmt"
	"unsafe"

	"github.com/mlxtrain/mlxtrain/metal"
	"github.com/mlxtrain/mlxtrain/metal/sim"
)

// Example runs the elementwise kernel of package shaders on the simulator. It
// needs clang 16 or later, so it has no checked output.
func Example() {
	d, err := sim.Open()
	if err != nil {
		fmt.Println("no simulator:", err)
		return
	}
	a, _ := d.NewBuffer(4 * 4)
	b, _ := d.NewBuffer(4 * 2)
	out, _ := d.NewBuffer(4 * 4)
	copy(unsafe.Slice((*float32)(a.Pointer()), 4), []float32{1, 2, 3, 4})
	copy(unsafe.Slice((*float32)(b.Pointer()), 2), []float32{10, 20})
	// out = a + b, with b a row repeated over a's two rows
	if err := metal.RunBinary(d, metal.BinaryAdd, out, a, b, 4, 2); err != nil {
		fmt.Println(err)
		return
	}
	out.Wait() // submits the launch and waits for it
	fmt.Println(unsafe.Slice((*float32)(out.Pointer()), 4))
	if err := d.Synchronize(); err != nil {
		fmt.Println(err)
	}
	// [11 22 13 24]
}
