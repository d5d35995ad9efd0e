// Mixture-of-experts dispatch and combine, float32 rows of width dim:
//   dispatch: xs[i] = x[token[i]]                      (gather into expert order)
//   its backward: dx[n] = Σ_j dxs[pos[n·k+j]]          (kept pairs: pos ≥ 0, slot order)
//   combine: y[n] = Σ_j gates[n·k+j]·ys[pos[n·k+j]]    (weighted scatter back)
//   its backward: dys[pos[i]] = gates[i]·dy[n], dgates[i] = ⟨dy[n], ys[pos[i]]⟩
// Every output element has one writer: no atomics, and sums run in slot order.

struct MoEParams {
  uint tokens; // rows of x / y
  uint k;      // slots per token
  uint rows;   // kept rows (xs / ys)
  uint dim;
};

// moe_gather_f32: grid ceil(dim/256) × rows groups of 256.
kernel void moe_gather_f32(device float* xs [[buffer(0)]],
                           const device float* x [[buffer(1)]],
                           const device int* token [[buffer(2)]],
                           constant MoEParams& p [[buffer(3)]],
                           uint2 gid [[thread_position_in_grid]]) {
  uint c = gid.x;
  uint i = gid.y;
  if (c < p.dim) {
    xs[i * p.dim + c] = x[(uint)token[i] * p.dim + c];
  }
}

// moe_scatter_f32: the dispatch's backward. Grid ceil(dim/256) × tokens.
kernel void moe_scatter_f32(device float* dx [[buffer(0)]],
                            const device float* dxs [[buffer(1)]],
                            const device int* pos [[buffer(2)]],
                            constant MoEParams& p [[buffer(3)]],
                            uint2 gid [[thread_position_in_grid]]) {
  uint c = gid.x;
  uint n = gid.y;
  if (c >= p.dim) {
    return;
  }
  float acc = 0.0f;
  for (uint j = 0; j < p.k; j++) {
    int q = pos[n * p.k + j];
    if (q >= 0) {
      acc += dxs[(uint)q * p.dim + c];
    }
  }
  dx[n * p.dim + c] = acc;
}

// moe_combine_f32: grid ceil(dim/256) × tokens.
kernel void moe_combine_f32(device float* y [[buffer(0)]],
                            const device float* ys [[buffer(1)]],
                            const device float* gates [[buffer(2)]],
                            const device int* pos [[buffer(3)]],
                            constant MoEParams& p [[buffer(4)]],
                            uint2 gid [[thread_position_in_grid]]) {
  uint c = gid.x;
  uint n = gid.y;
  if (c >= p.dim) {
    return;
  }
  float acc = 0.0f;
  for (uint j = 0; j < p.k; j++) {
    int q = pos[n * p.k + j];
    if (q >= 0) {
      acc = fma(gates[n * p.k + j], ys[(uint)q * p.dim + c], acc);
    }
  }
  y[n * p.dim + c] = acc;
}

// moe_combine_dys_f32: dys[pos[i]] = gates[i]·dy[n] for the kept pairs (each
// kept row of ys is one pair's). Grid ceil(dim/256) × tokens·k.
kernel void moe_combine_dys_f32(device float* dys [[buffer(0)]],
                                const device float* dy [[buffer(1)]],
                                const device float* gates [[buffer(2)]],
                                const device int* pos [[buffer(3)]],
                                constant MoEParams& p [[buffer(4)]],
                                uint2 gid [[thread_position_in_grid]]) {
  uint c = gid.x;
  uint i = gid.y;
  int q = pos[i];
  if (c < p.dim && q >= 0) {
    dys[(uint)q * p.dim + c] = gates[i] * dy[(i / p.k) * p.dim + c];
  }
}

// moe_combine_dgates_f32: dgates[i] = ⟨dy[n], ys[pos[i]]⟩ (0 for a dropped
// pair), a SIMD group per pair. Grid ceil(tokens·k/8) groups of 256.
kernel void moe_combine_dgates_f32(device float* dgates [[buffer(0)]],
                                   const device float* dy [[buffer(1)]],
                                   const device float* ys [[buffer(2)]],
                                   const device int* pos [[buffer(3)]],
                                   constant MoEParams& p [[buffer(4)]],
                                   uint group [[threadgroup_position_in_grid]],
                                   uint sg [[simdgroup_index_in_threadgroup]],
                                   uint lane [[thread_index_in_simdgroup]]) {
  uint i = group * 8 + sg;
  if (i >= p.tokens * p.k) {
    return; // the whole SIMD group
  }
  int q = pos[i];
  float acc = 0.0f;
  if (q >= 0) {
    uint n = i / p.k;
    for (uint c = lane; c < p.dim; c += 32) {
      acc = fma(dy[n * p.dim + c], ys[(uint)q * p.dim + c], acc);
    }
  }
  acc = simd_sum(acc);
  if (lane == 0) {
    dgates[i] = acc;
  }
}

// The grouped linear layers of the experts (rows in expert order, one weight
// matrix per expert: the products are metal's matmul kernels on each group's
// rows) need a per-group bias and activation, its gradient, and zeros.

struct MoEGroupParams {
  uint rows;
  uint out;
  uint experts;
  uint flags; // 1: bias, 2: GELU, 4: keep GELU's derivative
};

// moe_bias_act_f32: y[i] = act(y[i] + b[expert[i]]) in place, with GELU (the
// exact erf form) keeping GELU′ in deriv. Grid ceil(out/256) × rows.
kernel void moe_bias_act_f32(device float* y [[buffer(0)]],
                             device float* deriv [[buffer(1)]],
                             const device float* b [[buffer(2)]],
                             const device int* expert [[buffer(3)]],
                             constant MoEGroupParams& p [[buffer(4)]],
                             uint2 gid [[thread_position_in_grid]]) {
  uint c = gid.x;
  uint i = gid.y;
  if (c >= p.out) {
    return;
  }
  float v = y[i * p.out + c];
  if ((p.flags & 1u) != 0) {
    v += b[(uint)expert[i] * p.out + c];
  }
  if ((p.flags & 2u) != 0) {
    float phi = 0.5f * (1.0f + erf_f32(v * 0.70710678118654752f));
    if ((p.flags & 4u) != 0) {
      deriv[i * p.out + c] = phi + v * 0.39894228040143268f * exp(-0.5f * v * v);
    }
    v = v * phi;
  }
  y[i * p.out + c] = v;
}

// moe_group_colsum_f32: db[e] = Σ of dy's rows [offsets[e], offsets[e+1]), in
// row order. Grid ceil(out/256) × experts.
kernel void moe_group_colsum_f32(device float* db [[buffer(0)]],
                                 const device float* dy [[buffer(1)]],
                                 const device int* offsets [[buffer(2)]],
                                 constant MoEGroupParams& p [[buffer(3)]],
                                 uint2 gid [[thread_position_in_grid]]) {
  uint c = gid.x;
  uint e = gid.y;
  if (c >= p.out) {
    return;
  }
  float acc = 0.0f;
  for (int r = offsets[e]; r < offsets[e + 1]; r++) {
    acc += dy[(uint)r * p.out + c];
  }
  db[e * p.out + c] = acc;
}

// moe_zero_f32: out[i] = 0 for i < n (an empty group's weight gradient).
kernel void moe_zero_f32(device float* out [[buffer(0)]],
                         constant uint& n [[buffer(1)]],
                         uint i [[thread_position_in_grid]]) {
  if (i < n) {
    out[i] = 0.0f;
  }
}
