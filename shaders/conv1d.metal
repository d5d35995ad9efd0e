// Causal depthwise 1-D convolution over time (Mamba's short convolution): x and
// y are (batch, length, channels), w (channels, k), bias (channels):
//   y[b,t,c] = bias[c] + Σ_{j<k} w[c,j]·x[b, t−(k−1)+j, c]   (x before t = 0 is 0)

struct Conv1dParams {
  uint batch;
  uint length;
  uint channels;
  uint k;
  uint has_bias; // 0: no bias (the bias buffer is a placeholder)
};

// conv1d_fwd_f32: a thread per (channel, row b·length + t).
// Grid: ceil(channels/threads) × batch·length groups.
kernel void conv1d_fwd_f32(device float* y [[buffer(0)]],
                           const device float* x [[buffer(1)]],
                           const device float* w [[buffer(2)]],
                           const device float* bias [[buffer(3)]],
                           constant Conv1dParams& p [[buffer(4)]],
                           uint2 gid [[thread_position_in_grid]]) {
  uint c = gid.x;
  uint r = gid.y;
  if (c >= p.channels) {
    return;
  }
  uint b = r / p.length;
  uint t = r % p.length;
  float acc = p.has_bias != 0 ? bias[c] : 0.0f;
  for (uint j = 0; j < p.k; j++) {
    int s = (int)t - (int)(p.k - 1) + (int)j;
    if (s >= 0) {
      acc = fma(w[c * p.k + j], x[(b * p.length + (uint)s) * p.channels + c], acc);
    }
  }
  y[r * p.channels + c] = acc;
}

// conv1d_bwd_dx_f32: dx[b,s,c] = Σ_j w[c,j]·g[b, s+(k−1)−j, c] over the taps
// that saw x[b,s]. Grid as conv1d_fwd_f32.
kernel void conv1d_bwd_dx_f32(device float* dx [[buffer(0)]],
                              const device float* g [[buffer(1)]],
                              const device float* w [[buffer(2)]],
                              constant Conv1dParams& p [[buffer(3)]],
                              uint2 gid [[thread_position_in_grid]]) {
  uint c = gid.x;
  uint r = gid.y;
  if (c >= p.channels) {
    return;
  }
  uint b = r / p.length;
  uint s = r % p.length;
  float acc = 0.0f;
  for (uint j = 0; j < p.k; j++) {
    uint t = s + (p.k - 1) - j;
    if (t < p.length) {
      acc = fma(w[c * p.k + j], g[(b * p.length + t) * p.channels + c], acc);
    }
  }
  dx[r * p.channels + c] = acc;
}

// CONV1D_MAX_K is the widest kernel conv1d_bwd_dw_f32 takes.
constant uint CONV1D_MAX_K = 16;

// conv1d_bwd_dw_f32: dw[c,j] = Σ_{b,t} g[b,t,c]·x[b, t−(k−1)+j, c] and
// db[c] = Σ_{b,t} g[b,t,c]. A threadgroup per channel: each thread sums a
// strided share of the rows for every tap in registers, then the group adds
// the shares (SIMD groups, then threadgroup memory).
// Grid: channels groups of 256 threads.
kernel void conv1d_bwd_dw_f32(device float* dw [[buffer(0)]],
                              device float* db [[buffer(1)]],
                              const device float* g [[buffer(2)]],
                              const device float* x [[buffer(3)]],
                              constant Conv1dParams& p [[buffer(4)]],
                              uint c [[threadgroup_position_in_grid]],
                              uint tid [[thread_index_in_threadgroup]],
                              uint lane [[thread_index_in_simdgroup]],
                              uint sg [[simdgroup_index_in_threadgroup]],
                              uint nthreads [[threads_per_threadgroup]]) {
  threadgroup float scratch[32];
  float acc[CONV1D_MAX_K];
  for (uint j = 0; j < CONV1D_MAX_K; j++) {
    acc[j] = 0.0f;
  }
  float accb = 0.0f;
  uint rows = p.batch * p.length;
  for (uint r = tid; r < rows; r += nthreads) {
    uint b = r / p.length;
    uint t = r % p.length;
    float gv = g[r * p.channels + c];
    accb += gv;
    for (uint j = 0; j < p.k; j++) {
      int s = (int)t - (int)(p.k - 1) + (int)j;
      if (s >= 0) {
        acc[j] = fma(gv, x[(b * p.length + (uint)s) * p.channels + c], acc[j]);
      }
    }
  }
  for (uint j = 0; j < p.k; j++) {
    float v = threadgroup_sum(acc[j], scratch, lane, sg, nthreads);
    if (tid == 0) {
      dw[c * p.k + j] = v;
    }
  }
  float vb = threadgroup_sum(accb, scratch, lane, sg, nthreads);
  if (tid == 0) {
    db[c] = vb;
  }
}

// conv1d_step_f32: one decoding step. x and y are (batch, channels), state
// (batch, k−1, channels) the k−1 previous inputs, oldest first:
//   y[b,c] = bias[c] + w[c,k−1]·x[b,c] + Σ_{j<k−1} w[c,j]·state[b,j,c]
// and the state then moves on by one input (in place: each thread owns its
// (b, c) column). A thread per (channel, batch row); grid as conv1d_fwd_f32
// with batch rows.
kernel void conv1d_step_f32(device float* y [[buffer(0)]],
                            device float* state [[buffer(1)]],
                            const device float* x [[buffer(2)]],
                            const device float* w [[buffer(3)]],
                            const device float* bias [[buffer(4)]],
                            constant Conv1dParams& p [[buffer(5)]],
                            uint2 gid [[thread_position_in_grid]]) {
  uint c = gid.x;
  uint b = gid.y;
  if (c >= p.channels) {
    return;
  }
  uint C = p.channels;
  uint base = b * (p.k - 1) * C + c;
  float xv = x[b * C + c];
  float acc = p.has_bias != 0 ? bias[c] : 0.0f;
  acc = fma(w[c * p.k + p.k - 1], xv, acc);
  for (uint j = 0; j + 1 < p.k; j++) {
    acc = fma(w[c * p.k + j], state[base + j * C], acc);
  }
  y[b * C + c] = acc;
  if (p.k > 1) {
    for (uint j = 0; j + 2 < p.k; j++) {
      state[base + j * C] = state[base + (j + 1) * C];
    }
    state[base + (p.k - 2) * C] = xv;
  }
}

// conv1d_fwd_prev_f32: conv1d_fwd_f32 continuing a sequence: the k−1 inputs
// before x[b,0] come from prev (batch, k−1, channels), oldest first, instead
// of zeros. Grid as conv1d_fwd_f32.
kernel void conv1d_fwd_prev_f32(device float* y [[buffer(0)]],
                                const device float* x [[buffer(1)]],
                                const device float* w [[buffer(2)]],
                                const device float* bias [[buffer(3)]],
                                constant Conv1dParams& p [[buffer(4)]],
                                const device float* prev [[buffer(5)]],
                                uint2 gid [[thread_position_in_grid]]) {
  uint c = gid.x;
  uint r = gid.y;
  if (c >= p.channels) {
    return;
  }
  uint b = r / p.length;
  uint t = r % p.length;
  float acc = p.has_bias != 0 ? bias[c] : 0.0f;
  for (uint j = 0; j < p.k; j++) {
    int s = (int)t - (int)(p.k - 1) + (int)j;
    float xv = s >= 0 ? x[(b * p.length + (uint)s) * p.channels + c]
                      : prev[(b * (p.k - 1) + (uint)((int)(p.k - 1) + s)) * p.channels + c];
    acc = fma(w[c * p.k + j], xv, acc);
  }
  y[r * p.channels + c] = acc;
}

// conv1d_advance_f32: moves a decoding state (batch, k−1, channels) past the
// inputs x (batch, length, channels): it then holds the last k−1 of the old
// state followed by x. In place, a thread per (channel, batch row) owning its
// column (entry i takes entry length+i of old state ++ x, which is not yet
// overwritten as i rises). Grid as conv1d_fwd_f32 with batch rows.
kernel void conv1d_advance_f32(device float* state [[buffer(0)]],
                               const device float* x [[buffer(1)]],
                               constant Conv1dParams& p [[buffer(2)]],
                               uint2 gid [[thread_position_in_grid]]) {
  uint c = gid.x;
  uint b = gid.y;
  if (c >= p.channels) {
    return;
  }
  uint C = p.channels;
  uint keep = p.k - 1;
  for (uint i = 0; i < keep; i++) {
    uint q = p.length + i; // in old state ++ x
    float v = q < keep ? state[(b * keep + q) * C + c] : x[(b * p.length + q - keep) * C + c];
    state[(b * keep + i) * C + c] = v;
  }
}
