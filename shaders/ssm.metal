// The selective scan of Mamba (S6), forward and backward, for x, dt (batch,
// length, inner), A (inner, state), B, C (batch, length, state), D (inner):
//   h_t = exp(Δ_t·A_d)∘h_{t−1} + Δ_t·x_t·B_t,   y_t = ⟨C_t, h_t⟩ + D_d·x_t
// A SIMD group carries one channel (b, d); its lanes hold the state, lane l the
// entries l, l+32, ... (state ≤ SSM_MAX_STATE), so ⟨C_t, h_t⟩ is a simd_sum.
// The forward keeps the state at the start of every chunk of `chunk` steps; the
// backward runs a launch per chunk, last first, recomputing the chunk's states
// from its checkpoint into scratch, then walking the adjoint back through them.

constant uint SSM_MAX_STATE = 128;
constant uint SSM_SLOTS = 4; // SSM_MAX_STATE / 32

struct SSMParams {
  uint batch;
  uint len;
  uint inner;
  uint state;
  uint chunk;
  uint nchunks;
  uint flags;  // 1: D, 2: h0, 4: checkpoints, 8: final state, 16: h0 is the final state's buffer (in place)
  uint c;      // the backward's chunk
  uint ck;     // the backward: steps per chunk in the scratch (min(chunk, len))
  uint nblk;   // the backward: channel blocks per batch row
};

// ssm_fwd_f32: grid ceil(batch·inner / 8) groups of 256 threads.
kernel void ssm_fwd_f32(device float* y [[buffer(0)]],
                        device float* ckpt [[buffer(1)]],
                        device float* final_h [[buffer(2)]],
                        const device float* x [[buffer(3)]],
                        const device float* dt [[buffer(4)]],
                        const device float* a [[buffer(5)]],
                        const device float* bm [[buffer(6)]],
                        const device float* cm [[buffer(7)]],
                        const device float* dskip [[buffer(8)]],
                        const device float* h0 [[buffer(9)]],
                        constant SSMParams& p [[buffer(10)]],
                        uint group [[threadgroup_position_in_grid]],
                        uint sg [[simdgroup_index_in_threadgroup]],
                        uint lane [[thread_index_in_simdgroup]]) {
  uint u = group * 8 + sg;
  if (u >= p.batch * p.inner) {
    return; // the whole SIMD group: no barrier below
  }
  uint b = u / p.inner;
  uint d = u % p.inner;
  uint N = p.state;
  float h[SSM_SLOTS];
  const device float* hsrc = (p.flags & 16u) != 0 ? final_h : h0;
  for (uint i = 0; i < SSM_SLOTS; i++) {
    uint n = lane + 32 * i;
    h[i] = ((p.flags & 2u) != 0 && n < N) ? hsrc[(b * p.inner + d) * N + n] : 0.0f;
  }
  float skip = (p.flags & 1u) != 0 ? dskip[d] : 0.0f;
  for (uint t = 0; t < p.len; t++) {
    if ((p.flags & 4u) != 0 && t % p.chunk == 0) {
      for (uint i = 0; i < SSM_SLOTS; i++) {
        uint n = lane + 32 * i;
        if (n < N) {
          ckpt[((b * p.nchunks + t / p.chunk) * p.inner + d) * N + n] = h[i];
        }
      }
    }
    uint row = (b * p.len + t) * p.inner + d;
    float dl = dt[row];
    float xv = x[row];
    float dlx = dl * xv;
    float acc = 0.0f;
    for (uint i = 0; i < SSM_SLOTS; i++) {
      uint n = lane + 32 * i;
      if (n < N) {
        float e = exp(dl * a[d * N + n]);
        h[i] = e * h[i] + dlx * bm[(b * p.len + t) * N + n];
        acc += cm[(b * p.len + t) * N + n] * h[i];
      }
    }
    acc = simd_sum(acc);
    if (lane == 0) {
      y[row] = acc + skip * xv;
    }
  }
  if ((p.flags & 8u) != 0) {
    for (uint i = 0; i < SSM_SLOTS; i++) {
      uint n = lane + 32 * i;
      if (n < N) {
        final_h[(b * p.inner + d) * N + n] = h[i];
      }
    }
  }
}

// ssm_bwd_chunk_f32: the backward over chunk p.c for a block of 8 channels of
// one batch row (grid: nblk × batch groups of 256 threads). It recomputes the
// chunk's states into hs ((batch·inner, ck+1, state)), then for each step from
// the last: λ = μ + g·C_t, s = λ∘e∘h_{t−1}; ∂L/∂Δ_t = ⟨s, A⟩ + x·⟨λ, B_t⟩,
// ∂L/∂x_t = Δ·⟨λ, B_t⟩ + g·D; ∂L/∂A and ∂L/∂D accumulate per channel in dapart
// and ddpart; the block's shares of ∂L/∂B_t (Δ·x·λ) and ∂L/∂C_t (g·h_t) are
// summed in threadgroup memory into part ((batch, nblk, ck, 2, state)); μ moves
// back a step (e∘λ) and is kept in mu for the previous chunk.
kernel void ssm_bwd_chunk_f32(device float* gx [[buffer(0)]],
                              device float* gdt [[buffer(1)]],
                              device float* dapart [[buffer(2)]],
                              device float* ddpart [[buffer(3)]],
                              device float* part [[buffer(4)]],
                              device float* mu [[buffer(5)]],
                              device float* hs [[buffer(6)]],
                              const device float* g [[buffer(7)]],
                              const device float* ckpt [[buffer(8)]],
                              const device float* x [[buffer(9)]],
                              const device float* dt [[buffer(10)]],
                              const device float* a [[buffer(11)]],
                              const device float* bm [[buffer(12)]],
                              const device float* cm [[buffer(13)]],
                              const device float* dskip [[buffer(14)]],
                              constant SSMParams& p [[buffer(15)]],
                              uint2 group [[threadgroup_position_in_grid]],
                              uint tid [[thread_index_in_threadgroup]],
                              uint sg [[simdgroup_index_in_threadgroup]],
                              uint lane [[thread_index_in_simdgroup]]) {
  threadgroup float tb[8][SSM_MAX_STATE];
  threadgroup float tc[8][SSM_MAX_STATE];
  uint blk = group.x;
  uint b = group.y;
  uint d = blk * 8 + sg;
  bool active = d < p.inner;
  uint N = p.state;
  uint t0 = p.c * p.chunk;
  uint t1 = min(p.len, t0 + p.chunk);
  uint ch = b * p.inner + d;
  float h[SSM_SLOTS];
  float m[SSM_SLOTS];
  float da[SSM_SLOTS];
  // recompute the chunk's states
  for (uint i = 0; i < SSM_SLOTS; i++) {
    uint n = lane + 32 * i;
    h[i] = 0.0f;
    m[i] = 0.0f;
    da[i] = 0.0f;
    if (active && n < N) {
      h[i] = ckpt[((b * p.nchunks + p.c) * p.inner + d) * N + n];
      hs[(ch * (p.ck + 1)) * N + n] = h[i];
      if (p.c + 1 < p.nchunks) {
        m[i] = mu[ch * N + n];
      }
    }
  }
  if (active) {
    for (uint t = t0; t < t1; t++) {
      uint row = (b * p.len + t) * p.inner + d;
      float dl = dt[row];
      float dlx = dl * x[row];
      for (uint i = 0; i < SSM_SLOTS; i++) {
        uint n = lane + 32 * i;
        if (n < N) {
          h[i] = exp(dl * a[d * N + n]) * h[i] + dlx * bm[(b * p.len + t) * N + n];
          hs[(ch * (p.ck + 1) + (t - t0 + 1)) * N + n] = h[i];
        }
      }
    }
  }
  float skip = (active && (p.flags & 1u) != 0) ? dskip[d] : 0.0f;
  float dd = 0.0f;
  for (uint tt = t1; tt > t0; tt--) {
    uint t = tt - 1;
    uint i0 = t - t0;
    float sdt = 0.0f;
    float sb = 0.0f;
    float gy = 0.0f;
    float dl = 0.0f;
    float xv = 0.0f;
    uint row = (b * p.len + t) * p.inner + d;
    if (active) {
      gy = g[row];
      dl = dt[row];
      xv = x[row];
    }
    for (uint i = 0; i < SSM_SLOTS; i++) {
      uint n = lane + 32 * i;
      float pbv = 0.0f;
      float pcv = 0.0f;
      if (active && n < N) {
        uint bn = (b * p.len + t) * N + n;
        float an = a[d * N + n];
        float e = exp(dl * an);
        float hprev = hs[(ch * (p.ck + 1) + i0) * N + n];
        float hcur = hs[(ch * (p.ck + 1) + i0 + 1) * N + n];
        float lam = m[i] + gy * cm[bn];
        pcv = gy * hcur;
        float s = lam * e * hprev;
        da[i] += dl * s;
        sdt += s * an;
        sb += lam * bm[bn];
        pbv = dl * xv * lam;
        m[i] = e * lam;
      }
      if (n < SSM_MAX_STATE) {
        tb[sg][n] = pbv;
        tc[sg][n] = pcv;
      }
    }
    sdt = simd_sum(sdt);
    sb = simd_sum(sb);
    if (active && lane == 0) {
      gdt[row] = sdt + xv * sb;
      gx[row] = dl * sb + gy * skip;
      dd += gy * xv;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (tid < N) {
      float vb = 0.0f;
      float vc = 0.0f;
      for (uint k = 0; k < 8; k++) {
        vb += tb[k][tid];
        vc += tc[k][tid];
      }
      uint off = (((b * p.nblk + blk) * p.ck + i0) * 2) * N;
      part[off + tid] = vb;
      part[off + N + tid] = vc;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
  }
  if (active) {
    for (uint i = 0; i < SSM_SLOTS; i++) {
      uint n = lane + 32 * i;
      if (n < N) {
        mu[ch * N + n] = m[i];
        dapart[ch * N + n] += da[i];
      }
    }
    if (lane == 0) {
      ddpart[ch] += dd;
    }
  }
}

// ssm_bwd_bc_f32: ∂L/∂B_t and ∂L/∂C_t of chunk p.c, the sums of the blocks'
// parts in block order. Grid: ceil(state·steps/256) × batch groups of 256.
kernel void ssm_bwd_bc_f32(device float* gb [[buffer(0)]],
                           device float* gc [[buffer(1)]],
                           const device float* part [[buffer(2)]],
                           constant SSMParams& p [[buffer(3)]],
                           uint2 gid [[thread_position_in_grid]]) {
  uint t0 = p.c * p.chunk;
  uint steps = min(p.len, t0 + p.chunk) - t0;
  uint k = gid.x;
  uint b = gid.y;
  if (k >= steps * p.state) {
    return;
  }
  uint i0 = k / p.state;
  uint n = k % p.state;
  float vb = 0.0f;
  float vc = 0.0f;
  for (uint blk = 0; blk < p.nblk; blk++) {
    uint off = (((b * p.nblk + blk) * p.ck + i0) * 2) * p.state;
    vb += part[off + n];
    vc += part[off + p.state + n];
  }
  gb[(b * p.len + t0 + i0) * p.state + n] = vb;
  gc[(b * p.len + t0 + i0) * p.state + n] = vc;
}
