// Package shaders holds the Metal Shading Language sources of every kernel, embedded
// so the binary compiles them at start. It has no Go logic.
//
// Conventions, which both Metal (metal/mtl) and the simulator (metal/sim) rely on:
//
//   - common.metal holds helpers only (inline functions, constant tables) and is
//     compiled in front of every other file; each other file is a library of its
//     own, so a file that fails to compile disables only its kernels.
//   - The portable subset: no double, no lambdas, no vector constructors or casts
//     (float4(...), (int4)v: use helpers such as make_float4), no
//     thread_elements(), no #include but <metal_stdlib>; function constants are
//     `constant T name [[function_constant(i)]];` with T bool, int, uint or float.
//   - Every kernel parameter has an attribute: [[buffer(i)]] (a pointer or a
//     `constant T&`; read-only ones are const), [[threadgroup(i)]], or a built-in
//     such as [[thread_position_in_grid]] of type uint/ushort or their vectors.
//   - Every lane of a threadgroup reaches every threadgroup_barrier (no early
//     return before one); simdgroup_matrix calls run in all 32 lanes of a SIMD
//     group; threadgroup memory stays within 32 KB; shared tiles are padded.
//   - Parameter structs hold 32-bit fields only, so Go's metal.Params lays them
//     out as MSL does.
//
// The Go side of each kernel (binding buffers, constants and the grid) lives in
// package metal (device_kernels.go) and is shared by both devices.
package shaders

import "embed"

// Sources holds every *.metal file of the package.
//
//go:embed *.metal
var Sources embed.FS
