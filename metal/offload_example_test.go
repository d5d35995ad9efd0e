package metal_test

import (
	"fmt"

	"github.com/mlxtrain/mlxtrain/metal"
)

// An op registers its device implementation first: available when an
// accelerator is open, thresholds from the tuning table (by GPU family), and a
// self-test that runs once, at the first call that would take it.
func ExampleDeviceImpl() {
	r := &metal.Registry{}
	op := r.Register("scale_rows", []string{"rows", "cols"},
		metal.DeviceImpl("scale_rows", func() error { return nil }),
		&metal.Impl{Path: metal.PathGo},
	)
	// Without MLXTRAIN_DEVICE=metal (on a Mac) or sim, there is no accelerator:
	fmt.Println(op.Pick(4096, 4096).Path, op.OnMetal(4096, 4096))
	// Output: go false
}

func ExampleTuning() {
	t := metal.Tuning{0: {64, 256}, 9: {32, 128}} // the default, and M3 and later
	fmt.Println(t.For(7), t.For(8), t.For(10))
	// Output: [64 256] [64 256] [32 128]
}
