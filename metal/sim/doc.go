// Package sim runs the project's Metal shaders on the CPU, so that every kernel
// is checked in CI on machines without a GPU. It implements [metal.Compute] like
// Metal itself (metal/mtl), and the same Go dispatch code drives both;
// MLXTRAIN_DEVICE=sim selects it through [metal.Accelerator].
//
// # How a shader runs
//
// Each .metal file (with common.metal in front) goes through a source pass that
// refuses what is not portable MSL (double, lambdas, vector constructors and
// casts, thread_elements), rewrites threadgroup declarations and function
// constants, reads each kernel's signature and generates its launcher. clang (16
// or later: _Float16) then compiles it as C++20 against a shim header standing
// in for <metal_stdlib> (csrc/msl_shim.h); known attribute names map to
// clang::annotate, so -Werror=unknown-attributes rejects misspelt ones. The
// objects are linked into one shared library, cached under [CacheDir] keyed by
// a hash of everything that went in, and loaded with purego (no cgo).
//
// A launch runs its threadgroups one after another. The lanes of a group are
// cooperative fibers: the scheduler runs lane 0, 1, ... each until it blocks at a
// barrier or a SIMD-group function, then resolves what they wait for. Nothing
// depends on timing, so results are the same on every run, and a lane that reads
// threadgroup memory another lane has not written yet (a missing barrier) reads
// poison every time: threadgroup memory is NaN at the start of each group, and
// Write arguments are NaN before each launch, so an unwritten element is never
// a plausible number. Device memory is mapped outside the Go heap and ends at a
// guard page: writing past a buffer's end faults, and the crash names the kernel.
//
// Errors the simulator finds: arguments that do not match the signature (an
// unbound or extra buffer, a const buffer bound for writing, constant data too
// short for its struct, a missing function constant), a lane returning before a
// barrier others wait at, lanes at different barriers, simdgroup_matrix calls
// without all 32 lanes or with different arguments per lane, over 32 KB of
// threadgroup memory, and the CPU writing a buffer that a pending launch uses.
// Launch errors come back from Synchronize.
//
// SIMD-group functions: the lanes of a SIMD group waiting at one call are its
// active set; when they wait at different calls (divergent branches), the
// earliest call in the source goes first, so lanes that skipped a branch meet
// the others again at the next shared call. Results of reductions follow lane
// order; reading an inactive lane or one past the group's end gives NaN.
//
// What it cannot check: Metal's own compiler (the portable subset and the strict
// pass are the defence), timing and performance, float rounding of the GPU's
// math functions, bfloat arithmetic rounding (computed in float here).
//
// Environment: MLXTRAIN_CLANG names the compiler, MLXTRAIN_SIM_CACHE the cache
// directory; tests that need clang skip without it, unless
// MLXTRAIN_REQUIRE_CLANG=1 (CI) makes that a failure.
package sim
