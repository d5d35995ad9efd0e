// Package metal owns storage and devices: host memory in a size-class buffer pool,
// the device interface that Metal (metal/mtl) and the simulator implement, the
// kernel registry that picks each op's implementation (the fallback chain), the
// worker pool that CPU kernels split their work across, and the run-time settings
// read from MLXTRAIN_* environment variables.
//
// Everything above this package allocates through [Pool] and chooses kernels
// through [Registry]; nothing here knows what a tensor is.
package metal
