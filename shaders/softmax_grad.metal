// Log-softmax and the backward passes of softmax and log-softmax over rows,
// float32: one threadgroup per row; threads stride over the columns.

// SOFTMAX_LOG: the backward of log-softmax (true) or of softmax (false).
constant bool SOFTMAX_LOG [[function_constant(0)]];

struct SoftmaxRowsParams {
  uint rows;
  uint cols;
};

// logsoftmax_rows_f32: out = x − max − ln Σ exp(x − max), per row.
kernel void logsoftmax_rows_f32(device float* out [[buffer(0)]],
                                const device float* x [[buffer(1)]],
                                constant SoftmaxRowsParams& p [[buffer(2)]],
                                uint row [[threadgroup_position_in_grid]],
                                uint tid [[thread_index_in_threadgroup]],
                                uint nthreads [[threads_per_threadgroup]],
                                uint lane [[thread_index_in_simdgroup]],
                                uint sg [[simdgroup_index_in_threadgroup]]) {
  threadgroup float scratch[32];
  const device float* xr = x + row * p.cols;
  device float* yr = out + row * p.cols;
  float m = -INFINITY;
  for (uint j = tid; j < p.cols; j += nthreads) {
    m = max(m, xr[j]);
  }
  m = threadgroup_max(m, scratch, lane, sg, nthreads);
  float s = 0.0f;
  for (uint j = tid; j < p.cols; j += nthreads) {
    s += exp(xr[j] - m);
  }
  s = threadgroup_sum(s, scratch, lane, sg, nthreads);
  float shift = m + log(s);
  for (uint j = tid; j < p.cols; j += nthreads) {
    yr[j] = xr[j] - shift;
  }
}

// softmax_bwd_rows_f32: given the forward's output y and the upstream gradient g,
//   softmax:     dx = y · (g − Σ g·y)
//   log-softmax: dx = g − exp(y) · Σ g
kernel void softmax_bwd_rows_f32(device float* dx [[buffer(0)]],
                                 const device float* g [[buffer(1)]],
                                 const device float* y [[buffer(2)]],
                                 constant SoftmaxRowsParams& p [[buffer(3)]],
                                 uint row [[threadgroup_position_in_grid]],
                                 uint tid [[thread_index_in_threadgroup]],
                                 uint nthreads [[threads_per_threadgroup]],
                                 uint lane [[thread_index_in_simdgroup]],
                                 uint sg [[simdgroup_index_in_threadgroup]]) {
  threadgroup float scratch[32];
  uint base = row * p.cols;
  float s = 0.0f;
  for (uint j = tid; j < p.cols; j += nthreads) {
    s += SOFTMAX_LOG ? g[base + j] : g[base + j] * y[base + j];
  }
  s = threadgroup_sum(s, scratch, lane, sg, nthreads);
  for (uint j = tid; j < p.cols; j += nthreads) {
    float gj = g[base + j];
    float yj = y[base + j];
    dx[base + j] = SOFTMAX_LOG ? gj - exp(yj) * s : yj * (gj - s);
  }
}
