// Mixture-of-experts routing, float32 router logits (rows × experts):
//   moe_router_gates_f32: top-k experts of each row (best first, ties to the
//     lower expert, NaN counts as largest) and their gate weights;
//   moe_router_gates_backward_f32: its gradient with respect to the logits;
//   moe_router_probs_f32 / moe_router_sums_f32: each row's router probabilities
//     and logsumexp, then per-expert sums, for the load-balancing and z losses;
//   moe_load_balance_backward_f32, moe_router_z_backward_f32: their gradients;
//   moe_route_sort: the stable counting sort of the (token, slot) pairs by
//     expert, with the capacity, in one threadgroup.
// The gate math runs in float; package advanced's Go kernels are the reference.

#define MOE_MAX_K 16

struct MoERouterParams {
  uint rows;
  uint experts;
  uint k;
  uint mode; // bit 0: sigmoid scores; bits 1–2: 0 softmax_topk, 1 renormalize, 2 scores
};

// moe_before: a ranks strictly before b (larger, or NaN against a number).
inline bool moe_before(float a, float b) {
  return a > b || (a != a && b == b);
}

inline float moe_sigmoid(float x) {
  if (x >= 0.0f) {
    return 1.0f / (1.0f + exp(-x));
  }
  float e = exp(x);
  return e / (1.0f + e);
}

// moe_router_gates_f32: a thread per row. Grid ⌈rows/64⌉ groups of 64.
kernel void moe_router_gates_f32(device float* gates [[buffer(0)]],
                                 device int* experts [[buffer(1)]],
                                 const device float* logits [[buffer(2)]],
                                 constant MoERouterParams& p [[buffer(3)]],
                                 uint n [[thread_position_in_grid]]) {
  if (n >= p.rows) {
    return;
  }
  uint E = p.experts;
  uint K = p.k;
  const device float* row = logits + n * E;
  int ids[MOE_MAX_K];
  uint have = 0;
  for (uint e = 0; e < E; e++) {
    float v = row[e];
    if (have == K && !moe_before(v, row[ids[K - 1]])) {
      continue;
    }
    uint i = min(have, K - 1);
    while (i > 0 && moe_before(v, row[ids[i - 1]])) {
      ids[i] = ids[i - 1];
      i--;
    }
    ids[i] = (int)e;
    have = min(have + 1, K);
  }
  bool sig = (p.mode & 1u) != 0;
  uint norm = (p.mode >> 1) & 3u;
  device float* w = gates + n * K;
  float top = row[ids[0]];
  float sum = 0.0f;
  if (norm == 0u || (norm == 1u && !sig)) {
    for (uint j = 0; j < K; j++) {
      w[j] = exp(row[ids[j]] - top);
      sum += w[j];
    }
    for (uint j = 0; j < K; j++) {
      w[j] = w[j] / sum;
    }
  } else if (norm == 1u) {
    for (uint j = 0; j < K; j++) {
      w[j] = moe_sigmoid(row[ids[j]]);
      sum += w[j];
    }
    for (uint j = 0; j < K; j++) {
      w[j] = w[j] / sum;
    }
  } else if (!sig) {
    for (uint e = 0; e < E; e++) {
      sum += exp(row[e] - top);
    }
    for (uint j = 0; j < K; j++) {
      w[j] = exp(row[ids[j]] - top) / sum;
    }
  } else {
    for (uint j = 0; j < K; j++) {
      w[j] = moe_sigmoid(row[ids[j]]);
    }
  }
  for (uint j = 0; j < K; j++) {
    experts[n * K + j] = ids[j];
  }
}

// moe_router_gates_backward_f32: dlogits (rows × E, overwritten) from dgates,
// the forward's gates and experts. A thread per row.
kernel void moe_router_gates_backward_f32(device float* dl [[buffer(0)]],
                                          const device float* dg [[buffer(1)]],
                                          const device float* gates [[buffer(2)]],
                                          const device int* experts [[buffer(3)]],
                                          const device float* logits [[buffer(4)]],
                                          constant MoERouterParams& p [[buffer(5)]],
                                          uint n [[thread_position_in_grid]]) {
  if (n >= p.rows) {
    return;
  }
  uint E = p.experts;
  uint K = p.k;
  const device float* row = logits + n * E;
  const device float* g = dg + n * K;
  const device float* w = gates + n * K;
  const device int* ids = experts + n * K;
  device float* d = dl + n * E;
  bool sig = (p.mode & 1u) != 0;
  uint norm = (p.mode >> 1) & 3u;
  float dot = 0.0f;
  for (uint j = 0; j < K; j++) {
    dot += g[j] * w[j];
  }
  for (uint e = 0; e < E; e++) {
    d[e] = 0.0f;
  }
  if (norm == 0u || (norm == 1u && !sig)) {
    for (uint j = 0; j < K; j++) {
      d[ids[j]] += w[j] * (g[j] - dot);
    }
  } else if (norm == 1u) {
    float sum = 0.0f;
    for (uint j = 0; j < K; j++) {
      sum += moe_sigmoid(row[ids[j]]);
    }
    for (uint j = 0; j < K; j++) {
      float s = moe_sigmoid(row[ids[j]]);
      d[ids[j]] += (g[j] - dot) / sum * s * (1.0f - s);
    }
  } else if (!sig) {
    float top = row[ids[0]];
    float sum = 0.0f;
    for (uint e = 0; e < E; e++) {
      sum += exp(row[e] - top);
    }
    for (uint e = 0; e < E; e++) {
      d[e] -= exp(row[e] - top) / sum * dot;
    }
    for (uint j = 0; j < K; j++) {
      d[ids[j]] += g[j] * w[j];
    }
  } else {
    for (uint j = 0; j < K; j++) {
      d[ids[j]] += g[j] * w[j] * (1.0f - w[j]);
    }
  }
}

// moe_router_norm returns a row's normaliser: Σ exp(l − max) with softmax
// scores (max in top), Σ σ(l) with sigmoid ones.
inline float moe_router_norm(const device float* row, uint E, bool sig, thread float& top) {
  top = -INFINITY;
  float sum = 0.0f;
  if (sig) {
    for (uint e = 0; e < E; e++) {
      sum += moe_sigmoid(row[e]);
    }
    return sum;
  }
  for (uint e = 0; e < E; e++) {
    top = max(top, row[e]);
  }
  for (uint e = 0; e < E; e++) {
    sum += exp(row[e] - top);
  }
  return sum;
}

// moe_router_probs_f32: probs[n] = the row's router probabilities (softmax,
// or σ normalised to sum 1) and lse[n] = logsumexp of the row. A thread per row.
kernel void moe_router_probs_f32(device float* probs [[buffer(0)]],
                                 device float* lse [[buffer(1)]],
                                 const device float* logits [[buffer(2)]],
                                 constant MoERouterParams& p [[buffer(3)]],
                                 uint n [[thread_position_in_grid]]) {
  if (n >= p.rows) {
    return;
  }
  uint E = p.experts;
  const device float* row = logits + n * E;
  bool sig = (p.mode & 1u) != 0;
  float top;
  float sum = moe_router_norm(row, E, sig, top);
  for (uint e = 0; e < E; e++) {
    probs[n * E + e] = sig ? moe_sigmoid(row[e]) / sum : exp(row[e] - top) / sum;
  }
  float m = -INFINITY;
  for (uint e = 0; e < E; e++) {
    m = max(m, row[e]);
  }
  float s = 0.0f;
  for (uint e = 0; e < E; e++) {
    s += exp(row[e] - m);
  }
  lse[n] = m + log(s);
}

// moe_router_sums_f32: group e < E writes sums[e] = Σ_n probs[n, e] and
// sums[E + e] = the pairs routed to e; group E writes sums[2E] = Σ_n lse[n]².
// Grid E + 1 groups of 256.
kernel void moe_router_sums_f32(device float* sums [[buffer(0)]],
                                const device float* probs [[buffer(1)]],
                                const device float* lse [[buffer(2)]],
                                const device int* experts [[buffer(3)]],
                                constant MoERouterParams& p [[buffer(4)]],
                                uint e [[threadgroup_position_in_grid]],
                                uint tid [[thread_index_in_threadgroup]],
                                uint nt [[threads_per_threadgroup]],
                                uint lane [[thread_index_in_simdgroup]],
                                uint sg [[simdgroup_index_in_threadgroup]]) {
  threadgroup float scratch[32];
  uint E = p.experts;
  float a = 0.0f;
  float c = 0.0f;
  if (e < E) {
    for (uint n = tid; n < p.rows; n += nt) {
      a += probs[n * E + e];
    }
    for (uint i = tid; i < p.rows * p.k; i += nt) {
      c += experts[i] == (int)e ? 1.0f : 0.0f;
    }
  } else {
    for (uint n = tid; n < p.rows; n += nt) {
      a += lse[n] * lse[n];
    }
  }
  a = threadgroup_sum(a, scratch, lane, sg, nt);
  c = threadgroup_sum(c, scratch, lane, sg, nt);
  if (tid == 0) {
    if (e < E) {
      sums[e] = a;
      sums[E + e] = c;
    } else {
      sums[2 * E] = a;
    }
  }
}

struct MoELossParams {
  uint rows;
  uint experts;
  uint k;
  uint mode; // bit 0: sigmoid scores
};

// moe_load_balance_backward_f32: dl[n, e] = ∂(g·E·Σ_e f_e·P_e)/∂l[n, e], f_e =
// sums[E + e]/rows (sums from moe_router_sums_f32), g = g[0]. A thread per row;
// dl is overwritten.
kernel void moe_load_balance_backward_f32(device float* dl [[buffer(0)]],
                                          const device float* g [[buffer(1)]],
                                          const device float* logits [[buffer(2)]],
                                          const device float* sums [[buffer(3)]],
                                          constant MoELossParams& p [[buffer(4)]],
                                          uint n [[thread_position_in_grid]]) {
  if (n >= p.rows) {
    return;
  }
  uint E = p.experts;
  const device float* row = logits + n * E;
  bool sig = (p.mode & 1u) != 0;
  float scale = g[0] * (float)E / ((float)p.rows * (float)p.rows); // c_e = scale·count_e
  float top;
  float sum = moe_router_norm(row, E, sig, top);
  float cp = 0.0f;
  for (uint e = 0; e < E; e++) {
    float pe = sig ? moe_sigmoid(row[e]) / sum : exp(row[e] - top) / sum;
    cp += scale * sums[E + e] * pe;
  }
  for (uint e = 0; e < E; e++) {
    float ce = scale * sums[E + e];
    float d;
    if (sig) {
      float s = moe_sigmoid(row[e]);
      d = (ce - cp) / sum * s * (1.0f - s);
    } else {
      d = exp(row[e] - top) / sum * (ce - cp);
    }
    dl[n * E + e] = d;
  }
}

// moe_router_z_backward_f32: dl[n, e] = 2·g[0]/rows · lse[n]·softmax(row n)[e].
// A thread per row; dl is overwritten.
kernel void moe_router_z_backward_f32(device float* dl [[buffer(0)]],
                                      const device float* g [[buffer(1)]],
                                      const device float* logits [[buffer(2)]],
                                      const device float* lse [[buffer(3)]],
                                      constant MoELossParams& p [[buffer(4)]],
                                      uint n [[thread_position_in_grid]]) {
  if (n >= p.rows) {
    return;
  }
  uint E = p.experts;
  float c = 2.0f * g[0] / (float)p.rows * lse[n];
  for (uint e = 0; e < E; e++) {
    dl[n * E + e] = c * exp(logits[n * E + e] - lse[n]);
  }
}

struct MoESortParams {
  uint pairs;    // tokens·k
  uint k;
  uint experts;
  uint capacity; // 0: no limit
};

#define MOE_SORT_SHARED 6144

// moe_route_sort: a stable counting sort of the pairs by expert, in one
// threadgroup of nt lanes (nt·experts + experts + 1 ≤ MOE_SORT_SHARED). Lane t
// takes a contiguous chunk of pairs: it counts each expert in its chunk; a
// scan over the lanes (per expert) gives each chunk's first rank, a scan over
// the experts the offsets; then each lane places its pairs in order. Pairs
// ranked at or past the capacity are dropped (pos −1). info receives
// offsets (E + 1), routed (E) and the dropped count.
kernel void moe_route_sort(device int* pos [[buffer(0)]],
                           device int* token [[buffer(1)]],
                           device int* info [[buffer(2)]],
                           const device int* experts [[buffer(3)]],
                           constant MoESortParams& p [[buffer(4)]],
                           uint tid [[thread_index_in_threadgroup]],
                           uint nt [[threads_per_threadgroup]]) {
  threadgroup int sh[MOE_SORT_SHARED];
  int E = (int)p.experts;
  uint chunk = (p.pairs + nt - 1) / nt;
  uint lo = min(tid * chunk, p.pairs);
  uint hi = min(lo + chunk, p.pairs);
  uint mine = tid * (uint)E;
  uint off = nt * (uint)E; // off[0 … E]
  for (int e = 0; e < E; e++) {
    sh[mine + (uint)e] = 0;
  }
  for (uint i = lo; i < hi; i++) {
    int e = experts[i];
    if (e >= 0 && e < E) {
      sh[mine + (uint)e] += 1;
    }
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);
  for (uint e = tid; e < (uint)E; e += nt) {
    int run = 0;
    for (uint t = 0; t < nt; t++) {
      int c = sh[t * (uint)E + e];
      sh[t * (uint)E + e] = run;
      run += c;
    }
    sh[off + e + 1] = run; // the expert's total, until lane 0 scans them
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);
  if (tid == 0) {
    int acc = 0;
    int dropped = 0;
    for (int e = 0; e < E; e++) {
      int total = sh[off + (uint)e + 1];
      int kept = (p.capacity > 0 && total > (int)p.capacity) ? (int)p.capacity : total;
      info[E + 1 + e] = total;
      info[e] = acc;
      sh[off + (uint)e] = acc;
      acc += kept;
      dropped += total - kept;
    }
    sh[off + (uint)E] = acc;
    info[E] = acc;
    info[2 * E + 1] = dropped;
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);
  for (uint i = lo; i < hi; i++) {
    int e = experts[i];
    if (e < 0 || e >= E) {
      pos[i] = -1;
      continue;
    }
    int r = sh[mine + (uint)e];
    sh[mine + (uint)e] = r + 1;
    int first = sh[off + (uint)e];
    if (r < sh[off + (uint)e + 1] - first) {
      pos[i] = first + r;
      token[first + r] = (int)(i / p.k);
    } else {
      pos[i] = -1;
    }
  }
}
