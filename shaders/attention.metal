// Flash attention, float32, forward and backward, on (batch, seq, heads, dim)
// tensors read through strides (BSHD or BHSD), with causal and sliding-window
// masks and grouped-query attention (query head h reads key/value head
// h / (qheads/kvheads)). Conventions are those of the CPU package attention:
// query i sits at position pos = klen − qlen + i, key j at j, and row i attends
//   causal:               keys j ≤ pos
//   causal, window W:     pos − W < j ≤ pos
//   window W, not causal: |pos − j| < W
// A row that sees no key outputs zeros, its log-sum-exp is −inf and its
// gradients are zero. The log-sum-exp of each row is laid out (batch, qheads,
// qlen); the backward recomputes the probabilities from it, so no T×T matrix is
// ever stored.
//
// Every kernel runs 128 threads (four SIMD groups) and works in teams of 8 lanes
// (inside one SIMD group) that own one query row or one key: lane `sub` of a
// team owns the columns sub, sub + 8, ... of the row's vectors, at most 16 of
// them (head dims up to 128). Tiles of q, k, v and dO live in threadgroup memory
// with rows padded to 132 floats against bank conflicts; every kernel stays
// under 28 KB.
//
// Launches: forward flash_fwd_f32 (grid ceil(qlen/16) × qheads × batch); backward
// flash_bwd_delta_f32 (D = rowsum(dO∘O)), then flash_bwd_dkdv_f32 (grid
// ceil(klen/16) × kvheads × batch) and flash_bwd_dq_f32 (grid ceil(qlen/16) ×
// qheads × batch), which are independent of each other.

#define FA_THREADS 128
#define FA_TEAM 8
#define FA_COLS 16   // columns per lane: FA_MAXD / FA_TEAM
#define FA_MAXD 128
#define FA_DP 132    // padded tile row
#define FA_FWD_Q 16  // forward: query rows per group
#define FA_FWD_K 32  // forward: keys per block
#define FA_KV_K 16   // dK/dV: keys per group
#define FA_KV_Q 8    // dK/dV: query rows per block
#define FA_DQ_Q 16   // dQ: query rows per group
#define FA_DQ_K 8    // dQ: keys per block

struct AttnParams {
  uint batch;
  uint qlen;
  uint klen;
  uint qheads;
  uint kvheads;
  uint dim;   // of q and k
  uint vdim;  // of v and the output
  uint causal;
  uint window;  // 0: none
  float scale;
  // element strides of the batch, seq and head axes (the last axis has stride 1)
  uint q_b, q_s, q_h;
  uint k_b, k_s, k_h;
  uint v_b, v_s, v_h;
  uint o_b, o_s, o_h;
};

// attn_span sets the keys [lo, hi) that query row i attends; lo == hi when none.
// Both ends are non-decreasing in i.
inline void attn_span(constant AttnParams& p, int i, thread int& lo, thread int& hi) {
  int keys = int(p.klen);
  int pos = keys - int(p.qlen) + i;
  int w = int(p.window);
  lo = 0;
  hi = keys;
  if (p.causal != 0) {
    hi = min(hi, pos + 1);
  }
  if (w > 0) {
    lo = max(lo, pos - w + 1);
    if (p.causal == 0) {
      hi = min(hi, pos + w);
    }
  }
  lo = min(lo, keys);
  hi = max(hi, lo);
}

// team_max and team_sum combine a value over the 8 lanes of a team (lanes that
// differ in their low three bits). The butterfly leaves every lane of the team
// with the same bits, since each step adds the same two numbers on both sides.
inline float team_max(float v) {
  v = max(v, simd_shuffle_xor(v, ushort(4)));
  v = max(v, simd_shuffle_xor(v, ushort(2)));
  v = max(v, simd_shuffle_xor(v, ushort(1)));
  return v;
}

inline float team_sum(float v) {
  v += simd_shuffle_xor(v, ushort(4));
  v += simd_shuffle_xor(v, ushort(2));
  v += simd_shuffle_xor(v, ushort(1));
  return v;
}

// flash_fwd_f32: out = softmax(scale·q·kᵀ, masked)·v and lse per row. A group
// owns 16 query rows of one (batch, head); team r (8 lanes) owns row r. Per key
// block of 32 keys, each lane scores 4 keys against its row, the team updates the
// running maximum m and sum l (online softmax), and then accumulates p·v into its
// 16 output columns, rescaled when m grows. The k tile is reused for v.
kernel void flash_fwd_f32(device float* out [[buffer(0)]],
                          device float* lse [[buffer(1)]],
                          const device float* q [[buffer(2)]],
                          const device float* k [[buffer(3)]],
                          const device float* v [[buffer(4)]],
                          constant AttnParams& p [[buffer(5)]],
                          uint3 group [[threadgroup_position_in_grid]],
                          uint tid [[thread_index_in_threadgroup]]) {
  threadgroup float tq[FA_FWD_Q][FA_DP];
  threadgroup float tkv[FA_FWD_K][FA_DP];
  threadgroup float tp[FA_FWD_Q][FA_FWD_K + 1];
  uint h = group.y;
  uint b = group.z;
  uint hk = h / (p.qheads / p.kvheads);
  int i0 = int(group.x) * FA_FWD_Q;
  int ilast = min(i0 + FA_FWD_Q, int(p.qlen)) - 1;
  uint r = tid / FA_TEAM;
  uint sub = tid % FA_TEAM;
  int i = i0 + int(r);
  bool row_ok = i < int(p.qlen);

  for (uint e = tid; e < FA_FWD_Q * p.dim; e += FA_THREADS) {
    uint rr = e / p.dim;
    uint c = e % p.dim;
    int ii = i0 + int(rr);
    tq[rr][c] = ii < int(p.qlen) ? q[b * p.q_b + uint(ii) * p.q_s + h * p.q_h + c] : 0.0f;
  }
  int lo = 0;
  int hi = 0;
  if (row_ok) {
    attn_span(p, i, lo, hi);
  }
  // the keys any row of the group attends: from the first row's lo to the last row's hi
  int glo;
  int ghi;
  int unused;
  attn_span(p, i0, glo, unused);
  attn_span(p, ilast, unused, ghi);

  float m = -INFINITY;
  float l = 0.0f;
  float acc[FA_COLS];
  for (uint c = 0; c < FA_COLS; c++) {
    acc[c] = 0.0f;
  }
  for (int j0 = glo; j0 < ghi; j0 += FA_FWD_K) {
    threadgroup_barrier(mem_flags::mem_threadgroup);  // the last block's v and p are used
    for (uint e = tid; e < FA_FWD_K * p.dim; e += FA_THREADS) {
      uint kk = e / p.dim;
      uint c = e % p.dim;
      int j = j0 + int(kk);
      tkv[kk][c] = j < ghi ? k[b * p.k_b + uint(j) * p.k_s + hk * p.k_h + c] : 0.0f;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    float s[FA_FWD_K / FA_TEAM];
    float bmax = -INFINITY;
    for (uint t = 0; t < FA_FWD_K / FA_TEAM; t++) {
      uint kk = sub + FA_TEAM * t;
      int j = j0 + int(kk);
      float sc = -INFINITY;
      if (j >= lo && j < hi) {
        float dot = 0.0f;
        for (uint c = 0; c < p.dim; c++) {
          dot = fma(tq[r][c], tkv[kk][c], dot);
        }
        sc = dot * p.scale;
      }
      s[t] = sc;
      bmax = max(bmax, sc);
    }
    bmax = team_max(bmax);
    float mnew = max(m, bmax);
    // rows that have seen no key yet keep m = −inf and add nothing
    float alpha = mnew == -INFINITY ? 1.0f : exp(m - mnew);
    float psum = 0.0f;
    for (uint t = 0; t < FA_FWD_K / FA_TEAM; t++) {
      float pt = s[t] == -INFINITY ? 0.0f : exp(s[t] - mnew);
      tp[r][sub + FA_TEAM * t] = pt;
      psum += pt;
    }
    psum = team_sum(psum);
    l = l * alpha + psum;
    m = mnew;
    for (uint c = 0; c < FA_COLS; c++) {
      acc[c] *= alpha;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);  // every lane is done with k
    for (uint e = tid; e < FA_FWD_K * p.vdim; e += FA_THREADS) {
      uint kk = e / p.vdim;
      uint c = e % p.vdim;
      int j = j0 + int(kk);
      tkv[kk][c] = j < ghi ? v[b * p.v_b + uint(j) * p.v_s + hk * p.v_h + c] : 0.0f;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint kk = 0; kk < FA_FWD_K; kk++) {
      float pk = tp[r][kk];
      for (uint c = 0; c < FA_COLS; c++) {
        uint col = sub + FA_TEAM * c;
        if (col < p.vdim) {
          acc[c] = fma(pk, tkv[kk][col], acc[c]);
        }
      }
    }
  }
  if (row_ok) {
    float inv = l > 0.0f ? 1.0f / l : 0.0f;
    uint ob = b * p.o_b + uint(i) * p.o_s + h * p.o_h;
    for (uint c = 0; c < FA_COLS; c++) {
      uint col = sub + FA_TEAM * c;
      if (col < p.vdim) {
        out[ob + col] = acc[c] * inv;
      }
    }
    if (sub == 0) {
      lse[(b * p.qheads + h) * p.qlen + uint(i)] = l > 0.0f ? m + log(l) : -INFINITY;
    }
  }
}

// flash_bwd_delta_f32: delta[row] = Σ_c dO[row, c]·O[row, c], laid out like lse.
// One SIMD group per row, eight rows per group of 256 threads.
kernel void flash_bwd_delta_f32(device float* delta [[buffer(0)]],
                                const device float* o [[buffer(1)]],
                                const device float* dout [[buffer(2)]],
                                constant AttnParams& p [[buffer(3)]],
                                uint group [[threadgroup_position_in_grid]],
                                uint lane [[thread_index_in_simdgroup]],
                                uint sg [[simdgroup_index_in_threadgroup]]) {
  uint row = group * 8 + sg;
  uint rows = p.batch * p.qheads * p.qlen;
  if (row >= rows) {
    return;  // the whole SIMD group leaves together
  }
  uint i = row % p.qlen;
  uint h = (row / p.qlen) % p.qheads;
  uint b = row / (p.qlen * p.qheads);
  uint ob = b * p.o_b + i * p.o_s + h * p.o_h;
  float s = 0.0f;
  for (uint c = lane; c < p.vdim; c += 32) {
    s = fma(dout[ob + c], o[ob + c], s);
  }
  s = simd_sum(s);
  if (lane == 0) {
    delta[row] = s;
  }
}

// flash_bwd_dkdv_f32: dK and dV of 16 keys of one (batch, kv head) per group,
// summed over the query heads that share the kv head and over every query block
// of 8 rows that sees one of the keys:
//   P = exp(scale·q·kᵀ − lse), dP = dO·vᵀ, dS = P∘(dP − delta)
//   dV += Pᵀ·dO, dK += scale·dSᵀ·q
// Each thread forms one entry (query, key) of P and dS per block; team c (8
// lanes) owns key c and accumulates its dK and dV columns in registers.
kernel void flash_bwd_dkdv_f32(device float* dk [[buffer(0)]],
                               device float* dv [[buffer(1)]],
                               const device float* q [[buffer(2)]],
                               const device float* k [[buffer(3)]],
                               const device float* v [[buffer(4)]],
                               const device float* dout [[buffer(5)]],
                               const device float* lse [[buffer(6)]],
                               const device float* delta [[buffer(7)]],
                               constant AttnParams& p [[buffer(8)]],
                               uint3 group [[threadgroup_position_in_grid]],
                               uint tid [[thread_index_in_threadgroup]]) {
  threadgroup float tk[FA_KV_K][FA_DP];
  threadgroup float tv[FA_KV_K][FA_DP];
  threadgroup float tq[FA_KV_Q][FA_DP];
  threadgroup float tdo[FA_KV_Q][FA_DP];
  threadgroup float tp[FA_KV_Q][FA_KV_K + 1];
  threadgroup float tds[FA_KV_Q][FA_KV_K + 1];
  threadgroup float tlse[FA_KV_Q];
  threadgroup float tdelta[FA_KV_Q];
  uint hk = group.y;
  uint b = group.z;
  uint ratio = p.qheads / p.kvheads;
  int j0 = int(group.x) * FA_KV_K;
  int j1 = min(j0 + FA_KV_K, int(p.klen));
  for (uint e = tid; e < FA_KV_K * p.dim; e += FA_THREADS) {
    uint kk = e / p.dim;
    uint c = e % p.dim;
    int j = j0 + int(kk);
    tk[kk][c] = j < j1 ? k[b * p.k_b + uint(j) * p.k_s + hk * p.k_h + c] : 0.0f;
  }
  for (uint e = tid; e < FA_KV_K * p.vdim; e += FA_THREADS) {
    uint kk = e / p.vdim;
    uint c = e % p.vdim;
    int j = j0 + int(kk);
    tv[kk][c] = j < j1 ? v[b * p.v_b + uint(j) * p.v_s + hk * p.v_h + c] : 0.0f;
  }
  // the (query, key) entry this thread forms
  uint eq = tid / FA_KV_K;
  uint ek = tid % FA_KV_K;
  int ej = j0 + int(ek);
  // the key and columns this thread accumulates
  uint kc = tid / FA_TEAM;
  uint sub = tid % FA_TEAM;
  float adk[FA_COLS];
  float adv[FA_COLS];
  for (uint c = 0; c < FA_COLS; c++) {
    adk[c] = 0.0f;
    adv[c] = 0.0f;
  }
  for (uint h = hk * ratio; h < (hk + 1) * ratio; h++) {
    for (int i0 = 0; i0 < int(p.qlen); i0 += FA_KV_Q) {
      int ilast = min(i0 + FA_KV_Q, int(p.qlen)) - 1;
      int lo0;
      int hi0;
      int lo1;
      int hi1;
      attn_span(p, i0, lo0, hi0);
      attn_span(p, ilast, lo1, hi1);
      if (hi1 <= j0 || lo0 >= j1) {
        continue;  // no row of the block sees these keys (the same for every lane)
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);  // the last block's tiles are used
      for (uint e = tid; e < FA_KV_Q * p.dim; e += FA_THREADS) {
        uint rr = e / p.dim;
        uint c = e % p.dim;
        int ii = i0 + int(rr);
        tq[rr][c] = ii <= ilast ? q[b * p.q_b + uint(ii) * p.q_s + h * p.q_h + c] : 0.0f;
      }
      for (uint e = tid; e < FA_KV_Q * p.vdim; e += FA_THREADS) {
        uint rr = e / p.vdim;
        uint c = e % p.vdim;
        int ii = i0 + int(rr);
        tdo[rr][c] = ii <= ilast ? dout[b * p.o_b + uint(ii) * p.o_s + h * p.o_h + c] : 0.0f;
      }
      if (tid < FA_KV_Q) {
        int ii = i0 + int(tid);
        uint at = (b * p.qheads + h) * p.qlen + uint(ii);
        tlse[tid] = ii <= ilast ? lse[at] : 0.0f;
        tdelta[tid] = ii <= ilast ? delta[at] : 0.0f;
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);
      int ei = i0 + int(eq);
      float pe = 0.0f;
      float dse = 0.0f;
      if (ei <= ilast && ej < j1) {
        int lo;
        int hi;
        attn_span(p, ei, lo, hi);
        if (ej >= lo && ej < hi) {
          float s = 0.0f;
          for (uint c = 0; c < p.dim; c++) {
            s = fma(tq[eq][c], tk[ek][c], s);
          }
          pe = exp(s * p.scale - tlse[eq]);
          float dp = 0.0f;
          for (uint c = 0; c < p.vdim; c++) {
            dp = fma(tdo[eq][c], tv[ek][c], dp);
          }
          dse = pe * (dp - tdelta[eq]);
        }
      }
      tp[eq][ek] = pe;
      tds[eq][ek] = dse;
      threadgroup_barrier(mem_flags::mem_threadgroup);
      for (uint rr = 0; rr < FA_KV_Q; rr++) {
        float pr = tp[rr][kc];
        float dsr = tds[rr][kc];
        for (uint c = 0; c < FA_COLS; c++) {
          uint col = sub + FA_TEAM * c;
          if (col < p.vdim) {
            adv[c] = fma(pr, tdo[rr][col], adv[c]);
          }
          if (col < p.dim) {
            adk[c] = fma(dsr, tq[rr][col], adk[c]);
          }
        }
      }
    }
  }
  int j = j0 + int(kc);
  if (j < j1) {
    uint kb = b * p.k_b + uint(j) * p.k_s + hk * p.k_h;
    uint vb = b * p.v_b + uint(j) * p.v_s + hk * p.v_h;
    for (uint c = 0; c < FA_COLS; c++) {
      uint col = sub + FA_TEAM * c;
      if (col < p.dim) {
        dk[kb + col] = adk[c] * p.scale;
      }
      if (col < p.vdim) {
        dv[vb + col] = adv[c];
      }
    }
  }
}

// flash_bwd_dq_f32: dQ of 16 query rows of one (batch, head) per group, over the
// key blocks of 8 that the rows see: dQ += scale·dS·k. Team r owns row r; lane
// sub forms the entry (r, key sub) of each block and accumulates its dQ columns.
kernel void flash_bwd_dq_f32(device float* dq [[buffer(0)]],
                             const device float* q [[buffer(1)]],
                             const device float* k [[buffer(2)]],
                             const device float* v [[buffer(3)]],
                             const device float* dout [[buffer(4)]],
                             const device float* lse [[buffer(5)]],
                             const device float* delta [[buffer(6)]],
                             constant AttnParams& p [[buffer(7)]],
                             uint3 group [[threadgroup_position_in_grid]],
                             uint tid [[thread_index_in_threadgroup]]) {
  threadgroup float tq[FA_DQ_Q][FA_DP];
  threadgroup float tdo[FA_DQ_Q][FA_DP];
  threadgroup float tk[FA_DQ_K][FA_DP];
  threadgroup float tv[FA_DQ_K][FA_DP];
  threadgroup float tds[FA_DQ_Q][FA_DQ_K + 1];
  uint h = group.y;
  uint b = group.z;
  uint hk = h / (p.qheads / p.kvheads);
  int i0 = int(group.x) * FA_DQ_Q;
  int ilast = min(i0 + FA_DQ_Q, int(p.qlen)) - 1;
  uint r = tid / FA_TEAM;
  uint sub = tid % FA_TEAM;
  int i = i0 + int(r);
  bool row_ok = i <= ilast;
  for (uint e = tid; e < FA_DQ_Q * p.dim; e += FA_THREADS) {
    uint rr = e / p.dim;
    uint c = e % p.dim;
    int ii = i0 + int(rr);
    tq[rr][c] = ii <= ilast ? q[b * p.q_b + uint(ii) * p.q_s + h * p.q_h + c] : 0.0f;
  }
  for (uint e = tid; e < FA_DQ_Q * p.vdim; e += FA_THREADS) {
    uint rr = e / p.vdim;
    uint c = e % p.vdim;
    int ii = i0 + int(rr);
    tdo[rr][c] = ii <= ilast ? dout[b * p.o_b + uint(ii) * p.o_s + h * p.o_h + c] : 0.0f;
  }
  float row_lse = 0.0f;
  float row_delta = 0.0f;
  int lo = 0;
  int hi = 0;
  if (row_ok) {
    uint at = (b * p.qheads + h) * p.qlen + uint(i);
    row_lse = lse[at];
    row_delta = delta[at];
    attn_span(p, i, lo, hi);
  }
  int glo;
  int ghi;
  int unused;
  attn_span(p, i0, glo, unused);
  attn_span(p, ilast, unused, ghi);
  float adq[FA_COLS];
  for (uint c = 0; c < FA_COLS; c++) {
    adq[c] = 0.0f;
  }
  for (int j0 = glo; j0 < ghi; j0 += FA_DQ_K) {
    threadgroup_barrier(mem_flags::mem_threadgroup);  // the last block's tiles are used
    for (uint e = tid; e < FA_DQ_K * p.dim; e += FA_THREADS) {
      uint kk = e / p.dim;
      uint c = e % p.dim;
      int j = j0 + int(kk);
      tk[kk][c] = j < ghi ? k[b * p.k_b + uint(j) * p.k_s + hk * p.k_h + c] : 0.0f;
    }
    for (uint e = tid; e < FA_DQ_K * p.vdim; e += FA_THREADS) {
      uint kk = e / p.vdim;
      uint c = e % p.vdim;
      int j = j0 + int(kk);
      tv[kk][c] = j < ghi ? v[b * p.v_b + uint(j) * p.v_s + hk * p.v_h + c] : 0.0f;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    int j = j0 + int(sub);
    float dse = 0.0f;
    if (j >= lo && j < hi) {
      float s = 0.0f;
      for (uint c = 0; c < p.dim; c++) {
        s = fma(tq[r][c], tk[sub][c], s);
      }
      float pe = exp(s * p.scale - row_lse);
      float dp = 0.0f;
      for (uint c = 0; c < p.vdim; c++) {
        dp = fma(tdo[r][c], tv[sub][c], dp);
      }
      dse = pe * (dp - row_delta);
    }
    tds[r][sub] = dse;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint kk = 0; kk < FA_DQ_K; kk++) {
      float d = tds[r][kk];
      for (uint c = 0; c < FA_COLS; c++) {
        uint col = sub + FA_TEAM * c;
        if (col < p.dim) {
          adq[c] = fma(d, tk[kk][col], adq[c]);
        }
      }
    }
  }
  if (row_ok) {
    uint qb = b * p.q_b + uint(i) * p.q_s + h * p.q_h;
    for (uint c = 0; c < FA_COLS; c++) {
      uint col = sub + FA_TEAM * c;
      if (col < p.dim) {
        dq[qb + col] = adq[c] * p.scale;
      }
    }
  }
}
