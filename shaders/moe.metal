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

// The grouped linear layers of the experts (rows in expert order, expert e's
// rows [offsets[e], offsets[e+1]), one weight matrix per expert): MLX's
// gather_mm as one launch over every expert. A threadgroup computes a 16×16
// tile of one expert's rows; it finds its expert from its row tile (expert e
// has ⌈n_e/16⌉ tiles, in expert order), so the grid needs no host-side list.

struct MoEMMParams {
  uint rows;    // rows of a and c (the kept pairs)
  uint n;       // columns of c
  uint k;       // the reduction
  uint experts;
  uint b_rs;    // op(W_e)[kk, j] = W_e[kk·b_rs + j·b_cs]
  uint b_cs;
  uint flags;   // 1: bias, 2: GELU (erf), 4: keep GELU′ in deriv
  uint pad;
};

// moe_mm_tile returns this lane's element (row0 + ty, col0 + tx) of A·B, with
// A[i, kk] = a[i·a_rs + kk·a_cs] (M × K) and B[kk, j] = b[kk·b_rs + j·b_cs]
// (K × N); zero outside. Lane (tx, ty) of the 16×16 group: every lane must call it.
inline float moe_mm_tile(const device float* a, uint a_rs, uint a_cs,
                         const device float* b, uint b_rs, uint b_cs,
                         uint M, uint N, uint K, uint row0, uint col0,
                         threadgroup float* ta, threadgroup float* tb, uint tx, uint ty) {
  uint row = row0 + ty;
  uint col = col0 + tx;
  float acc = 0.0f;
  for (uint k0 = 0; k0 < K; k0 += 16) {
    uint ka = k0 + tx;
    ta[ty * 17 + tx] = (row < M && ka < K) ? a[row * a_rs + ka * a_cs] : 0.0f;
    uint kb = k0 + ty;
    tb[ty * 17 + tx] = (kb < K && col < N) ? b[kb * b_rs + col * b_cs] : 0.0f;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint kk = 0; kk < 16; kk++) {
      acc = fma(ta[ty * 17 + kk], tb[kk * 17 + tx], acc);
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
  }
  return acc;
}

// moe_epilogue returns element (row, col) of expert e's product v after the
// flags' bias and GELU, writing GELU′ to deriv when asked.
inline float moe_epilogue(float v, const device float* bias, device float* deriv, constant MoEMMParams& p,
                          uint e, uint row, uint col) {
  if ((p.flags & 1u) != 0) {
    v += bias[e * p.n + col];
  }
  if ((p.flags & 2u) != 0) {
    float phi = 0.5f * (1.0f + erf_f32(v * 0.70710678118654752f));
    if ((p.flags & 4u) != 0) {
      deriv[row * p.n + col] = phi + v * 0.39894228040143268f * exp(-0.5f * v * v);
    }
    v = v * phi;
  }
  return v;
}

// moe_gather_mm_f32: c[r] = a[r]·op(W_e) for each row r of expert e, then (flags)
// the expert's bias and GELU, keeping GELU′ in deriv. The forward (a = x, op(W_e)
// = W_eᵀ) and dx (a = dy, op(W_e) = W_e) are this kernel with other strides.
// Grid ⌈n/16⌉ × (⌈rows/16⌉ + experts) groups of 16×16 (the tiles of every
// expert fit; the groups past the last tile return).
kernel void moe_gather_mm_f32(device float* c [[buffer(0)]],
                              const device float* a [[buffer(1)]],
                              const device float* w [[buffer(2)]],
                              const device int* offsets [[buffer(3)]],
                              const device float* bias [[buffer(4)]],
                              device float* deriv [[buffer(5)]],
                              constant MoEMMParams& p [[buffer(6)]],
                              uint2 group [[threadgroup_position_in_grid]],
                              uint2 t [[thread_position_in_threadgroup]]) {
  threadgroup float ta[16 * 17];
  threadgroup float tb[16 * 17];
  uint seen = 0;
  uint e = p.experts;
  uint lo = 0;
  uint hi = 0;
  for (uint x = 0; x < p.experts; x++) {
    uint l = (uint)offsets[x];
    uint h = (uint)offsets[x + 1];
    uint tiles = (h - l + 15) / 16;
    if (group.y < seen + tiles) {
      e = x;
      lo = l + (group.y - seen) * 16;
      hi = h;
      break;
    }
    seen += tiles;
  }
  if (e == p.experts) {
    return; // the whole group: past the last tile
  }
  float v = moe_mm_tile(a + lo * p.k, p.k, 1, w + e * p.n * p.k, p.b_rs, p.b_cs,
                        hi - lo, p.n, p.k, 0, group.x * 16, ta, tb, t.x, t.y);
  uint row = lo + t.y;
  uint col = group.x * 16 + t.x;
  if (row >= hi || col >= p.n) {
    return;
  }
  c[row * p.n + col] = moe_epilogue(v, bias, deriv, p, e, row, col);
}

// moe_gather_mm_dw_f32: dW_e = dy_eᵀ·x_e over expert e's rows (zeros for an
// empty expert): dw (experts × out × in), p.n = in, p.k = out. Grid ⌈in/16⌉ ×
// ⌈out/16⌉ × experts groups of 16×16.
kernel void moe_gather_mm_dw_f32(device float* dw [[buffer(0)]],
                                 const device float* dy [[buffer(1)]],
                                 const device float* x [[buffer(2)]],
                                 const device int* offsets [[buffer(3)]],
                                 constant MoEMMParams& p [[buffer(4)]],
                                 uint3 group [[threadgroup_position_in_grid]],
                                 uint3 t [[thread_position_in_threadgroup]]) {
  threadgroup float ta[16 * 17];
  threadgroup float tb[16 * 17];
  uint e = group.z;
  uint lo = (uint)offsets[e];
  uint hi = (uint)offsets[e + 1];
  uint out = p.k;
  uint in = p.n;
  float v = moe_mm_tile(dy + lo * out, 1, out, x + lo * in, in, 1,
                        out, in, hi - lo, group.y * 16, group.x * 16, ta, tb, t.x, t.y);
  uint row = group.y * 16 + t.y;
  uint col = group.x * 16 + t.x;
  if (row < out && col < in) {
    dw[(e * out + row) * in + col] = v;
  }
}

// The same products with simdgroup_matrix 8×8 blocks (Apple7 and later):
// 128 lanes (four SIMD groups, 2×2) compute a 32×32 tile, each SIMD group a
// 16×16 quarter as 2×2 blocks of 8×8; the k loop stages 32×16 of A (rows padded
// to 20) and 16×32 of B (padded to 36), zero past the edges; the tile goes to tc
// (32 × 36) for an epilogue that stores only what is in range.
inline void moe_mm_tile_sg8(const device float* a, uint a_rs, uint a_cs,
                            const device float* b, uint b_rs, uint b_cs,
                            uint M, uint N, uint K, uint row0, uint col0,
                            threadgroup float* ta, threadgroup float* tb, threadgroup float* tc,
                            uint tid, uint sg) {
  uint sr = (sg / 2) * 16;
  uint sc = (sg % 2) * 16;
  simdgroup_float8x8 acc00 = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);
  simdgroup_float8x8 acc01 = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);
  simdgroup_float8x8 acc10 = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);
  simdgroup_float8x8 acc11 = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);
  simdgroup_float8x8 a0;
  simdgroup_float8x8 a1;
  simdgroup_float8x8 b0;
  simdgroup_float8x8 b1;
  for (uint k0 = 0; k0 < K; k0 += 16) {
    for (uint e = tid; e < 32 * 16; e += 128) {
      uint r = e / 16;
      uint kk = e % 16;
      uint gr = row0 + r;
      uint gk = k0 + kk;
      ta[r * 20 + kk] = (gr < M && gk < K) ? a[gr * a_rs + gk * a_cs] : 0.0f;
    }
    for (uint e = tid; e < 16 * 32; e += 128) {
      uint kk = e / 32;
      uint cc = e % 32;
      uint gk = k0 + kk;
      uint gc = col0 + cc;
      tb[kk * 36 + cc] = (gk < K && gc < N) ? b[gk * b_rs + gc * b_cs] : 0.0f;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint kk = 0; kk < 16; kk += 8) {
      simdgroup_load(a0, ta + sr * 20 + kk, 20);
      simdgroup_load(a1, ta + (sr + 8) * 20 + kk, 20);
      simdgroup_load(b0, tb + kk * 36 + sc, 36);
      simdgroup_load(b1, tb + kk * 36 + sc + 8, 36);
      simdgroup_multiply_accumulate(acc00, a0, b0, acc00);
      simdgroup_multiply_accumulate(acc01, a0, b1, acc01);
      simdgroup_multiply_accumulate(acc10, a1, b0, acc10);
      simdgroup_multiply_accumulate(acc11, a1, b1, acc11);
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
  }
  simdgroup_store(acc00, tc + sr * 36 + sc, 36);
  simdgroup_store(acc01, tc + sr * 36 + sc + 8, 36);
  simdgroup_store(acc10, tc + (sr + 8) * 36 + sc, 36);
  simdgroup_store(acc11, tc + (sr + 8) * 36 + sc + 8, 36);
  threadgroup_barrier(mem_flags::mem_threadgroup);
}

// moe_gather_mm_sg8_f32: moe_gather_mm_f32 on 32×32 tiles. Grid ⌈n/32⌉ ×
// (⌈rows/32⌉ + experts) groups of 128.
kernel void moe_gather_mm_sg8_f32(device float* c [[buffer(0)]],
                                  const device float* a [[buffer(1)]],
                                  const device float* w [[buffer(2)]],
                                  const device int* offsets [[buffer(3)]],
                                  const device float* bias [[buffer(4)]],
                                  device float* deriv [[buffer(5)]],
                                  constant MoEMMParams& p [[buffer(6)]],
                                  uint2 group [[threadgroup_position_in_grid]],
                                  uint tid [[thread_index_in_threadgroup]],
                                  uint sg [[simdgroup_index_in_threadgroup]]) {
  threadgroup float ta[32 * 20];
  threadgroup float tb[16 * 36];
  threadgroup float tc[32 * 36];
  uint seen = 0;
  uint e = p.experts;
  uint lo = 0;
  uint hi = 0;
  for (uint x = 0; x < p.experts; x++) {
    uint l = (uint)offsets[x];
    uint h = (uint)offsets[x + 1];
    uint tiles = (h - l + 31) / 32;
    if (group.y < seen + tiles) {
      e = x;
      lo = l + (group.y - seen) * 32;
      hi = h;
      break;
    }
    seen += tiles;
  }
  if (e == p.experts) {
    return; // the whole group: past the last tile
  }
  uint col0 = group.x * 32;
  moe_mm_tile_sg8(a + lo * p.k, p.k, 1, w + e * p.n * p.k, p.b_rs, p.b_cs,
                  hi - lo, p.n, p.k, 0, col0, ta, tb, tc, tid, sg);
  for (uint i = tid; i < 32 * 32; i += 128) {
    uint row = lo + i / 32;
    uint col = col0 + i % 32;
    if (row >= hi || col >= p.n) {
      continue;
    }
    c[row * p.n + col] = moe_epilogue(tc[(i / 32) * 36 + i % 32], bias, deriv, p, e, row, col);
  }
}

// moe_gather_mm_dw_sg8_f32: moe_gather_mm_dw_f32 on 32×32 tiles. Grid ⌈in/32⌉ ×
// ⌈out/32⌉ × experts groups of 128.
kernel void moe_gather_mm_dw_sg8_f32(device float* dw [[buffer(0)]],
                                     const device float* dy [[buffer(1)]],
                                     const device float* x [[buffer(2)]],
                                     const device int* offsets [[buffer(3)]],
                                     constant MoEMMParams& p [[buffer(4)]],
                                     uint3 group [[threadgroup_position_in_grid]],
                                     uint tid [[thread_index_in_threadgroup]],
                                     uint sg [[simdgroup_index_in_threadgroup]]) {
  threadgroup float ta[32 * 20];
  threadgroup float tb[16 * 36];
  threadgroup float tc[32 * 36];
  uint e = group.z;
  uint lo = (uint)offsets[e];
  uint hi = (uint)offsets[e + 1];
  uint out = p.k;
  uint in = p.n;
  uint row0 = group.y * 32;
  uint col0 = group.x * 32;
  moe_mm_tile_sg8(dy + lo * out, 1, out, x + lo * in, in, 1,
                  out, in, hi - lo, row0, col0, ta, tb, tc, tid, sg);
  for (uint i = tid; i < 32 * 32; i += 128) {
    uint row = row0 + i / 32;
    uint col = col0 + i % 32;
    if (row < out && col < in) {
      dw[(e * out + row) * in + col] = tc[(i / 32) * 36 + i % 32];
    }
  }
}

struct MoEGroupParams {
  uint rows;
  uint out;
  uint experts;
  uint flags;
};

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
