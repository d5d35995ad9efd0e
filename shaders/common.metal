// Shared helpers for every kernel. Written in the portable subset that both Metal
// and the C++ simulator accept (see DESIGN.md): no double, no lambdas, no vector
// casts or constructors (build vectors with the helpers below).
//
// This file is compiled in front of every other .metal file (each file is its own
// library), so everything here is `inline` or `constant`.
#include <metal_stdlib>
using namespace metal;

inline float2 make_float2(float x, float y) {
  float2 v;
  v.x = x;
  v.y = y;
  return v;
}

inline float4 make_float4(float x, float y, float z, float w) {
  float4 v;
  v.x = x;
  v.y = y;
  v.z = z;
  v.w = w;
  return v;
}

// Chebyshev coefficients of erf(x)/x in t = 2x²-1 on |x| ≤ 1, and of log(erfc(x))
// in t = (2x-5)/3 on 1 ≤ x ≤ 4 (interpolation at Chebyshev nodes; Metal has no erf).
// The result is within 2e-7 of erf everywhere.
constant float ERF_SMALL[8] = {9.754769206e-01f, -1.422612071e-01f, 1.003558189e-02f, -5.768764531e-04f,
                               2.741993194e-05f, -1.104317562e-06f, 3.848873575e-08f, -1.180059273e-09f};
constant float ERFC_LOG[13] = {-8.864298820e+00f, -8.058625221e+00f, -1.055968404e+00f, -1.023351308e-02f,
                               1.544484054e-03f, -2.242767951e-04f, 3.013450441e-05f, -3.553178431e-06f,
                               3.231768346e-07f, -9.885415153e-09f, -4.623220029e-09f, 1.501046509e-09f,
                               -2.985494629e-10f};

inline float erf_f32(float x) {
  float ax = fabs(x);
  if (ax >= 4.0f) {
    return copysign(1.0f, x);
  }
  float b1 = 0.0f;
  float b2 = 0.0f;
  if (ax <= 1.0f) {
    float t = 2.0f * ax * ax - 1.0f;
    for (int j = 7; j >= 1; j--) {
      float b0 = 2.0f * t * b1 - b2 + ERF_SMALL[j];
      b2 = b1;
      b1 = b0;
    }
    return x * (t * b1 - b2 + ERF_SMALL[0]);
  }
  float t = (2.0f * ax - 5.0f) / 3.0f;
  for (int j = 12; j >= 1; j--) {
    float b0 = 2.0f * t * b1 - b2 + ERFC_LOG[j];
    b2 = b1;
    b1 = b0;
  }
  return copysign(1.0f - exp(t * b1 - b2 + ERFC_LOG[0]), x);
}

// Threadgroup-wide reductions: every thread passes its value and gets the result.
// scratch holds one float per SIMD group (32 suffice for 1024 threads); all
// threads of the group must call, and the scratch may be reused right after.
inline float threadgroup_max(float v, threadgroup float* scratch, uint lane, uint sg, uint nthreads) {
  v = simd_max(v);
  if (lane == 0) {
    scratch[sg] = v;
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);
  uint groups = (nthreads + 31) / 32;
  v = lane < groups ? scratch[lane] : -INFINITY;
  v = simd_max(v);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  return v;
}

inline float threadgroup_sum(float v, threadgroup float* scratch, uint lane, uint sg, uint nthreads) {
  v = simd_sum(v);
  if (lane == 0) {
    scratch[sg] = v;
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);
  uint groups = (nthreads + 31) / 32;
  v = lane < groups ? scratch[lane] : 0.0f;
  v = simd_sum(v);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  return v;
}
