// Row softmax, float32: one threadgroup per row; threads stride over the columns.

struct SoftmaxParams {
  uint rows;
  uint cols;
};

kernel void softmax_rows_f32(device float* out [[buffer(0)]],
                             const device float* x [[buffer(1)]],
                             constant SoftmaxParams& p [[buffer(2)]],
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
  float inv = 1.0f / s;
  for (uint j = tid; j < p.cols; j += nthreads) {
    yr[j] = exp(xr[j] - m) * inv;
  }
}
