// RMSNorm and LayerNorm over the last axis, float32, forward and backward.
//
//   RMSNorm:   r = 1/√(mean(x²) + eps),          y = x·r·w
//   LayerNorm: μ = mean(x), r = 1/√(var(x) + eps), y = (x−μ)·r·w + b
//
// The forward saves r (and μ) per row for the backward, which computes dx per row
// (norm_bwd_f32) and dw as a column reduction (norm_wgrad_f32; db is a plain
// column sum of the upstream gradient).

// NORM_LAYER: LayerNorm (true) or RMSNorm (false), for the backward kernels.
constant bool NORM_LAYER [[function_constant(0)]];
// HAS_WEIGHT: w is bound and scales the normalised rows; else the scale is 1.
constant bool HAS_WEIGHT [[function_constant(1)]];
// HAS_BIAS: LayerNorm's b is bound; else the shift is 0.
constant bool HAS_BIAS [[function_constant(2)]];

struct NormParams {
  uint rows;
  uint cols;
  float eps;
  uint rows_per_chunk;  // norm_wgrad_f32: rows each grid row (chunk) reduces
};

// rmsnorm_fwd_f32: one threadgroup per row.
kernel void rmsnorm_fwd_f32(device float* out [[buffer(0)]],
                            device float* rstd [[buffer(1)]],
                            const device float* x [[buffer(2)]],
                            const device float* w [[buffer(3)]],
                            constant NormParams& p [[buffer(4)]],
                            uint row [[threadgroup_position_in_grid]],
                            uint tid [[thread_index_in_threadgroup]],
                            uint nthreads [[threads_per_threadgroup]],
                            uint lane [[thread_index_in_simdgroup]],
                            uint sg [[simdgroup_index_in_threadgroup]]) {
  threadgroup float scratch[32];
  const device float* xr = x + row * p.cols;
  device float* yr = out + row * p.cols;
  float ss = 0.0f;
  for (uint j = tid; j < p.cols; j += nthreads) {
    float v = xr[j];
    ss = fma(v, v, ss);
  }
  ss = threadgroup_sum(ss, scratch, lane, sg, nthreads);
  float r = rsqrt(ss / float(p.cols) + p.eps);
  for (uint j = tid; j < p.cols; j += nthreads) {
    float v = xr[j] * r;
    yr[j] = HAS_WEIGHT ? v * w[j] : v;
  }
  if (tid == 0) {
    rstd[row] = r;
  }
}

// layernorm_fwd_f32: one threadgroup per row; the variance is taken about the
// mean in a second sweep (no cancellation from E[x²] − E[x]²).
kernel void layernorm_fwd_f32(device float* out [[buffer(0)]],
                              device float* mean [[buffer(1)]],
                              device float* rstd [[buffer(2)]],
                              const device float* x [[buffer(3)]],
                              const device float* w [[buffer(4)]],
                              const device float* b [[buffer(5)]],
                              constant NormParams& p [[buffer(6)]],
                              uint row [[threadgroup_position_in_grid]],
                              uint tid [[thread_index_in_threadgroup]],
                              uint nthreads [[threads_per_threadgroup]],
                              uint lane [[thread_index_in_simdgroup]],
                              uint sg [[simdgroup_index_in_threadgroup]]) {
  threadgroup float scratch[32];
  const device float* xr = x + row * p.cols;
  device float* yr = out + row * p.cols;
  float n = float(p.cols);
  float s = 0.0f;
  for (uint j = tid; j < p.cols; j += nthreads) {
    s += xr[j];
  }
  float mu = threadgroup_sum(s, scratch, lane, sg, nthreads) / n;
  float ss = 0.0f;
  for (uint j = tid; j < p.cols; j += nthreads) {
    float d = xr[j] - mu;
    ss = fma(d, d, ss);
  }
  ss = threadgroup_sum(ss, scratch, lane, sg, nthreads);
  float r = rsqrt(ss / n + p.eps);
  for (uint j = tid; j < p.cols; j += nthreads) {
    float v = (xr[j] - mu) * r;
    if (HAS_WEIGHT) {
      v *= w[j];
    }
    if (HAS_BIAS) {
      v += b[j];
    }
    yr[j] = v;
  }
  if (tid == 0) {
    mean[row] = mu;
    rstd[row] = r;
  }
}

// norm_bwd_f32: dx of one row per threadgroup, with x̂ = (x − μ)·r (μ = 0 for
// RMSNorm) and gw = g·w:
//   RMSNorm:   dx = r·(gw − x̂·mean(gw·x̂))
//   LayerNorm: dx = r·(gw − mean(gw) − x̂·mean(gw·x̂))
kernel void norm_bwd_f32(device float* dx [[buffer(0)]],
                         const device float* g [[buffer(1)]],
                         const device float* x [[buffer(2)]],
                         const device float* w [[buffer(3)]],
                         const device float* mean [[buffer(4)]],
                         const device float* rstd [[buffer(5)]],
                         constant NormParams& p [[buffer(6)]],
                         uint row [[threadgroup_position_in_grid]],
                         uint tid [[thread_index_in_threadgroup]],
                         uint nthreads [[threads_per_threadgroup]],
                         uint lane [[thread_index_in_simdgroup]],
                         uint sg [[simdgroup_index_in_threadgroup]]) {
  threadgroup float scratch[32];
  uint base = row * p.cols;
  float mu = NORM_LAYER ? mean[row] : 0.0f;
  float r = rstd[row];
  float n = float(p.cols);
  float sgx = 0.0f;
  float sg1 = 0.0f;
  for (uint j = tid; j < p.cols; j += nthreads) {
    float gw = HAS_WEIGHT ? g[base + j] * w[j] : g[base + j];
    float xh = (x[base + j] - mu) * r;
    sgx = fma(gw, xh, sgx);
    sg1 += gw;
  }
  sgx = threadgroup_sum(sgx, scratch, lane, sg, nthreads) / n;
  if (NORM_LAYER) {
    sg1 = threadgroup_sum(sg1, scratch, lane, sg, nthreads) / n;
  } else {
    sg1 = 0.0f;
  }
  for (uint j = tid; j < p.cols; j += nthreads) {
    float gw = HAS_WEIGHT ? g[base + j] * w[j] : g[base + j];
    float xh = (x[base + j] - mu) * r;
    dx[base + j] = r * (gw - sg1 - xh * sgx);
  }
}

// norm_wgrad_f32: dw[chunk, c] = Σ over the chunk's rows of g[r, c]·x̂[r, c], laid
// out like reduce_cols_f32 (32×8 threads, grid ceil(cols/32) × chunks); with more
// than one chunk a reduce_cols_f32 pass sums the chunks.
kernel void norm_wgrad_f32(device float* dw [[buffer(0)]],
                           const device float* g [[buffer(1)]],
                           const device float* x [[buffer(2)]],
                           const device float* mean [[buffer(3)]],
                           const device float* rstd [[buffer(4)]],
                           constant NormParams& p [[buffer(5)]],
                           uint2 group [[threadgroup_position_in_grid]],
                           uint2 t [[thread_position_in_threadgroup]]) {
  threadgroup float part[8][33];
  uint c = group.x * 32 + t.x;
  uint r0 = group.y * p.rows_per_chunk;
  uint r1 = min(r0 + p.rows_per_chunk, p.rows);
  float acc = 0.0f;
  if (c < p.cols) {
    for (uint r = r0 + t.y; r < r1; r += 8) {
      float mu = NORM_LAYER ? mean[r] : 0.0f;
      float xh = (x[r * p.cols + c] - mu) * rstd[r];
      acc = fma(g[r * p.cols + c], xh, acc);
    }
  }
  part[t.y][t.x] = acc;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  if (t.y == 0 && c < p.cols) {
    float s = part[0][t.x];
    for (uint k = 1; k < 8; k++) {
      s += part[k][t.x];
    }
    dw[group.y * p.cols + c] = s;
  }
}
