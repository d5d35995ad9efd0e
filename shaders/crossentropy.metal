// Fused softmax cross-entropy over rows of logits, float32, with an ignore index
// and label smoothing as PyTorch defines them: the target distribution of a row
// with class t is (1−ε)·onehot(t) + ε/V. One threadgroup per row.

struct CrossEntropyParams {
  uint rows;
  uint vocab;
  int ignore;         // rows whose target is this get loss 0, lse 0, gradient 0
  float smoothing;    // ε
  float grad_mul;     // backward: multiplies the upstream gradient (1/count for a mean)
  uint grad_stride;   // backward: 0 when one upstream value serves every row, else 1
};

// xent_fwd_f32: lse[i] = ln Σⱼ exp(x[i,j]) and
//   loss[i] = lse[i] − (1−ε)·x[i,tᵢ] − (ε/V)·Σⱼ x[i,j].
// A target outside [0, V) that is not the ignore index gives NaN (callers check
// targets first; NaN makes a missed check loud).
kernel void xent_fwd_f32(device float* loss [[buffer(0)]],
                         device float* lse [[buffer(1)]],
                         const device float* logits [[buffer(2)]],
                         const device int* targets [[buffer(3)]],
                         constant CrossEntropyParams& p [[buffer(4)]],
                         uint row [[threadgroup_position_in_grid]],
                         uint tid [[thread_index_in_threadgroup]],
                         uint nthreads [[threads_per_threadgroup]],
                         uint lane [[thread_index_in_simdgroup]],
                         uint sg [[simdgroup_index_in_threadgroup]]) {
  threadgroup float scratch[32];
  int t = targets[row];
  if (t == p.ignore) {
    // the whole group returns here: no barrier is skipped by some lanes only
    if (tid == 0) {
      loss[row] = 0.0f;
      lse[row] = 0.0f;
    }
    return;
  }
  const device float* xr = logits + row * p.vocab;
  float m = -INFINITY;
  for (uint j = tid; j < p.vocab; j += nthreads) {
    m = max(m, xr[j]);
  }
  m = threadgroup_max(m, scratch, lane, sg, nthreads);
  float s = 0.0f;
  float sx = 0.0f;
  for (uint j = tid; j < p.vocab; j += nthreads) {
    float v = xr[j];
    s += exp(v - m);
    sx += v;
  }
  s = threadgroup_sum(s, scratch, lane, sg, nthreads);
  if (p.smoothing != 0.0f) {
    sx = threadgroup_sum(sx, scratch, lane, sg, nthreads);
  }
  if (tid == 0) {
    float l = m + log(s);
    float li = NAN;
    if (t >= 0 && uint(t) < p.vocab) {
      li = l - (1.0f - p.smoothing) * xr[t];
      if (p.smoothing != 0.0f) {
        li -= p.smoothing / float(p.vocab) * sx;
      }
    }
    loss[row] = li;
    lse[row] = l;
  }
}

// xent_bwd_f32: dlogits[i,j] = sᵢ·(exp(x[i,j] − lse[i]) − (1−ε)·[j = tᵢ] − ε/V) with
// sᵢ = g[i·grad_stride]·grad_mul; ignored rows get zeros.
kernel void xent_bwd_f32(device float* dlogits [[buffer(0)]],
                         const device float* logits [[buffer(1)]],
                         const device int* targets [[buffer(2)]],
                         const device float* lse [[buffer(3)]],
                         const device float* g [[buffer(4)]],
                         constant CrossEntropyParams& p [[buffer(5)]],
                         uint row [[threadgroup_position_in_grid]],
                         uint tid [[thread_index_in_threadgroup]],
                         uint nthreads [[threads_per_threadgroup]]) {
  int t = targets[row];
  device float* dr = dlogits + row * p.vocab;
  if (t == p.ignore) {
    for (uint j = tid; j < p.vocab; j += nthreads) {
      dr[j] = 0.0f;
    }
    return;
  }
  const device float* xr = logits + row * p.vocab;
  float l = lse[row];
  float sc = g[row * p.grad_stride] * p.grad_mul;
  float off = sc * (p.smoothing / float(p.vocab));
  float hit = sc * (1.0f - p.smoothing);
  for (uint j = tid; j < p.vocab; j += nthreads) {
    float v = exp(xr[j] - l) * sc - off;
    if (int(j) == t) {
      v -= hit;
    }
    dr[j] = v;
  }
}
