// Self-test kernels of the simulator: 16-bit float storage and atomics.
#include <metal_stdlib>
using namespace metal;

// out[3i] = float(half(x)), out[3i+1] = float(bfloat(x)), out[3i+2] = float(h[i]) + float(b[i])
kernel void convert16(device float* out [[buffer(0)]],
                      const device float* x [[buffer(1)]],
                      const device half* h [[buffer(2)]],
                      const device bfloat* b [[buffer(3)]],
                      uint i [[thread_position_in_grid]]) {
  out[3 * i] = float(half(x[i]));
  out[3 * i + 1] = float(bfloat(x[i]));
  out[3 * i + 2] = float(h[i]) + float(b[i]);
}

// Every thread adds one to a counter and its index to a sum.
kernel void count_atomically(device atomic_uint* counter [[buffer(0)]], uint i [[thread_position_in_grid]]) {
  atomic_fetch_add_explicit(&counter[0], 1u, memory_order_relaxed);
  atomic_fetch_add_explicit(&counter[1], i, memory_order_relaxed);
  atomic_fetch_max_explicit(&counter[2], i, memory_order_relaxed);
}
