// Self-test kernels of the simulator: barriers, poison and the errors it reports.
#include <metal_stdlib>
using namespace metal;

// out[i] = x[(i+1) mod n] within one threadgroup, through threadgroup memory.
kernel void rotate_with_barrier(device float* out [[buffer(0)]],
                                const device float* x [[buffer(1)]],
                                uint gid [[thread_position_in_grid]],
                                uint tid [[thread_index_in_threadgroup]],
                                uint n [[threads_per_threadgroup]]) {
  threadgroup float tile[256];
  tile[tid] = x[gid];
  threadgroup_barrier(mem_flags::mem_threadgroup);
  out[gid] = tile[(tid + 1) % n];
}

// The same without the barrier: a lane reads a slot its neighbour has not written.
kernel void rotate_missing_barrier(device float* out [[buffer(0)]],
                                   const device float* x [[buffer(1)]],
                                   uint gid [[thread_position_in_grid]],
                                   uint tid [[thread_index_in_threadgroup]],
                                   uint n [[threads_per_threadgroup]]) {
  threadgroup float tile[256];
  tile[tid] = x[gid];
  out[gid] = tile[(tid + 1) % n];
}

// Rotates twice; the barrier between reading the tile and overwriting it is
// missing, so early lanes overwrite slots later lanes have yet to read.
kernel void rotate_twice_missing_barrier(device float* out [[buffer(0)]],
                                         const device float* x [[buffer(1)]],
                                         uint tid [[thread_index_in_threadgroup]],
                                         uint n [[threads_per_threadgroup]]) {
  threadgroup float tile[256];
  tile[tid] = x[tid];
  threadgroup_barrier(mem_flags::mem_threadgroup);
  float v = tile[(tid + 1) % n];
  tile[tid] = v;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  out[tid] = tile[(tid + 1) % n];
}

// Writes only the even elements: the odd ones must read as NaN.
kernel void write_even(device float* out [[buffer(0)]], uint i [[thread_position_in_grid]]) {
  if (i % 2 == 0) {
    out[i] = 1.0f;
  }
}

// Adds one in place.
kernel void add_one(device float* x [[buffer(0)]], uint i [[thread_position_in_grid]]) {
  x[i] = x[i] + 1.0f;
}

// Lanes at or past 10 return before a barrier the others wait at.
kernel void return_before_barrier(device float* out [[buffer(0)]], uint tid [[thread_index_in_threadgroup]]) {
  threadgroup float t[64];
  if (tid >= 10) {
    return;
  }
  t[tid] = 1.0f;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  out[tid] = t[0];
}

// Odd and even lanes wait at different barriers.
kernel void split_barriers(device float* out [[buffer(0)]], uint tid [[thread_index_in_threadgroup]]) {
  if (tid % 2 == 1) {
    threadgroup_barrier(mem_flags::mem_threadgroup);
  } else {
    threadgroup_barrier(mem_flags::mem_threadgroup);
  }
  out[tid] = 0.0f;
}

// 36000 bytes of threadgroup memory: over Apple's 32 KB.
kernel void too_much_threadgroup_memory(device float* out [[buffer(0)]], uint tid [[thread_index_in_threadgroup]]) {
  threadgroup float big[9000];
  big[tid] = 1.0f;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  out[tid] = big[0];
}

// Dynamic threadgroup memory: out[i] = scratch[i] before and after writing it.
kernel void dynamic_scratch(device float* out [[buffer(0)]],
                            threadgroup float* scratch [[threadgroup(0)]],
                            uint tid [[thread_index_in_threadgroup]]) {
  out[2 * tid] = scratch[tid];
  threadgroup_barrier(mem_flags::mem_threadgroup);
  scratch[tid] = float(tid);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  out[2 * tid + 1] = scratch[tid];
}

constant bool NEGATE [[function_constant(2)]];
constant float SCALE [[function_constant(3)]];

// out[i] = ±SCALE·x[i].
kernel void scale_constants(device float* out [[buffer(0)]],
                            const device float* x [[buffer(1)]],
                            uint i [[thread_position_in_grid]]) {
  float v = x[i] * SCALE;
  out[i] = NEGATE ? -v : v;
}

// Writes one element per thread with no bounds check.
kernel void write_unchecked(device float* out [[buffer(0)]], uint i [[thread_position_in_grid]]) {
  out[i] = 1.0f;
}
