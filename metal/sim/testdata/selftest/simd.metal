// Self-test kernels of the simulator: SIMD-group functions and simdgroup_matrix.
#include <metal_stdlib>
using namespace metal;

struct SimdParams {
  uint mask;
  uint delta;
};

// Each thread writes 14 results: out[tid*14 + k].
kernel void simd_ops(device float* out [[buffer(0)]],
                     const device float* x [[buffer(1)]],
                     constant SimdParams& p [[buffer(2)]],
                     uint tid [[thread_index_in_threadgroup]],
                     uint lane [[thread_index_in_simdgroup]]) {
  float v = x[tid];
  device float* o = out + tid * 14;
  o[0] = simd_sum(v);
  o[1] = simd_max(v);
  o[2] = simd_min(v);
  o[3] = simd_shuffle(v, (lane + 5) % 32);
  o[4] = simd_shuffle_xor(v, p.mask);
  o[5] = simd_shuffle_up(v, p.delta);
  o[6] = simd_shuffle_down(v, p.delta);
  o[7] = simd_prefix_inclusive_sum(v);
  o[8] = simd_prefix_exclusive_sum(v);
  o[9] = simd_broadcast(v, 2);
  float e = -1.0f;
  if (lane % 2 == 0) {
    e = simd_sum(v);
  }
  o[10] = e;
  o[11] = float(simd_sum(int(lane)));
  float2 w;
  w.x = v;
  w.y = 1.0f;
  w = simd_sum(w);
  o[12] = w.y;
  o[13] = simd_is_first() ? 1.0f : 0.0f;
}

// d = a·b + c for 8×8 row-major matrices; a is read with a row stride of 12.
kernel void sg_matmul8(device float* d [[buffer(0)]],
                       const device float* a [[buffer(1)]],
                       const device float* b [[buffer(2)]],
                       const device float* c [[buffer(3)]]) {
  simdgroup_float8x8 ma;
  simdgroup_float8x8 mb;
  simdgroup_float8x8 mc;
  simdgroup_float8x8 md;
  simdgroup_load(ma, a, 12);
  simdgroup_load(mb, b, 8);
  simdgroup_load(mc, c, 8);
  simdgroup_multiply_accumulate(md, ma, mb, mc);
  simdgroup_store(md, d, 8);
}

// Half the SIMD group stores a matrix: simdgroup_matrix needs all 32 lanes.
kernel void sg_diverge(device float* d [[buffer(0)]], uint lane [[thread_index_in_simdgroup]]) {
  simdgroup_float8x8 m = make_filled_simdgroup_matrix<float, 8, 8>(1.0f);
  if (lane < 16) {
    simdgroup_store(m, d, 8);
  }
}

// Stores a matrix never loaded: the simulator's registers start as NaN.
kernel void sg_uninitialised(device float* d [[buffer(0)]]) {
  simdgroup_float8x8 m;
  simdgroup_store(m, d, 8);
}
