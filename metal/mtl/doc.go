// Package mtl is Metal on macOS through purego and its objc package (no cgo): the
// system's GPU as a [metal.Compute] device, registered as metal.DeviceMetal when
// the package is imported on darwin. On other systems the package is empty.
//
// Kernels come from package shaders: each .metal file (with common.metal in
// front) is compiled at Open with newLibraryWithSource, MSL 3.1 and safe math.
// Buffers are shared-storage MTLBuffers whose contents are the Go slice of a
// [metal.Buffer]; launches are encoded into one command buffer until a CPU read
// (a wait on a buffer), Flush, Synchronize or a full batch commits it, and the
// command buffer's completion handler (an Objective-C block made by purego's objc
// package) marks the buffers free. Every Metal call runs on one goroutine locked
// to its OS thread, each inside its own autorelease pool (the open batch's command
// buffer and encoder are retained across them). Any failure is an error, so the
// caller can fall back to the CPU.
//
// # Testing on a Mac
//
// The tests run every kernel on the GPU against the Go references, the same
// checks the simulator passes in CI. From the repository, on an Apple Silicon Mac:
//
//	go test ./metal/mtl/
//
// or cross-build the test binary elsewhere and copy it over:
//
//	GOOS=darwin GOARCH=arm64 CGO_ENABLED=0 go test -c -o mtl.test ./metal/mtl/
//	./mtl.test -test.v
package mtl
