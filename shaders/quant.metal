// Quantized matrices in MLX's affine layout: W (n × k) stands for
//   w[r][c] = scales[r][c / group] · q[r][c] + biases[r][c / group]
// where each row's q values (bits wide: 2, 3, 4, 5, 6 or 8) form one
// little-endian bit stream, value c at bits [c·bits, (c+1)·bits) of the row's
// stride = k·bits/32 uint32 words (a 3-, 5- or 6-bit value may straddle two
// words). The kernels dequantize as they go: in registers (qmv_t_f32,
// qgather_f32) or one 16×16 tile at a time in threadgroup memory (the tiled
// products); nothing is ever dequantized to device memory.

struct QuantParams {
  uint rows;   // rows of x (or g)
  uint n;      // rows of W: outputs
  uint k;      // columns of W
  uint bits;
  uint group;  // group size: a multiple of 16
  uint stride; // uint32 words per row of W
};

// q_at reads value c of a packed row.
inline uint q_at(const device uint* row, uint c, uint bits) {
  uint pos = c * bits;
  uint w = pos >> 5;
  uint s = pos & 31u;
  uint v = row[w] >> s;
  if (s + bits > 32u) {
    v |= row[w + 1] << (32u - s);
  }
  return v & ((1u << bits) - 1u);
}

// dq_at is w[r][c].
inline float dq_at(const device uint* packed, const device float* scales, const device float* biases,
                   uint stride, uint ngroups, uint group, uint bits, uint r, uint c) {
  uint gi = r * ngroups + c / group;
  return scales[gi] * (float)q_at(packed + r * stride, c, bits) + biases[gi];
}

// qmv_t_f32: y = x·Wᵀ for few rows of x (decode). A SIMD group per output
// (r, o): each lane takes every 32nd column, dequantizing in registers, with the
// group's scale and bias applied once per group of its columns:
//   Σ_c x_c·(s·q_c + b) = s·Σ x_c·q_c + b·Σ x_c.
// Grid: ceil(n/8) × rows groups of 256 threads (8 SIMD groups).
kernel void qmv_t_f32(device float* y [[buffer(0)]],
                      const device float* x [[buffer(1)]],
                      const device uint* packed [[buffer(2)]],
                      const device float* scales [[buffer(3)]],
                      const device float* biases [[buffer(4)]],
                      constant QuantParams& p [[buffer(5)]],
                      uint2 group [[threadgroup_position_in_grid]],
                      uint sg [[simdgroup_index_in_threadgroup]],
                      uint lane [[thread_index_in_simdgroup]]) {
  uint o = group.x * 8 + sg;
  uint r = group.y;
  float acc = 0.0f;
  if (o < p.n) {
    const device float* xr = x + r * p.k;
    const device uint* wr = packed + o * p.stride;
    uint ngroups = p.k / p.group;
    for (uint g = 0; g < ngroups; g++) {
      float sq = 0.0f;
      float sx = 0.0f;
      for (uint c = g * p.group + lane; c < (g + 1) * p.group; c += 32) {
        float xv = xr[c];
        sq = fma(xv, (float)q_at(wr, c, p.bits), sq);
        sx += xv;
      }
      acc = fma(scales[o * ngroups + g], sq, fma(biases[o * ngroups + g], sx, acc));
    }
  }
  acc = simd_sum(acc);
  if (o < p.n && lane == 0) {
    y[r * p.n + o] = acc;
  }
}

// qmm_t_f32: y = x·Wᵀ for batches. 16×16 threads compute a 16×16 tile of y;
// each step stages 16 columns of x and of the tile's 16 rows of W, dequantized
// (a 16-column step lies within one group). Grid: ceil(n/16) × ceil(rows/16).
kernel void qmm_t_f32(device float* y [[buffer(0)]],
                      const device float* x [[buffer(1)]],
                      const device uint* packed [[buffer(2)]],
                      const device float* scales [[buffer(3)]],
                      const device float* biases [[buffer(4)]],
                      constant QuantParams& p [[buffer(5)]],
                      uint2 group [[threadgroup_position_in_grid]],
                      uint2 t [[thread_position_in_threadgroup]]) {
  threadgroup float tx[16][17];
  threadgroup float tw[16][17];
  uint ngroups = p.k / p.group;
  uint row = group.y * 16 + t.y;
  uint col = group.x * 16 + t.x;
  uint wrow = group.x * 16 + t.y; // the row of W thread (y, x) stages
  float acc = 0.0f;
  for (uint k0 = 0; k0 < p.k; k0 += 16) {
    uint c = k0 + t.x;
    tx[t.y][t.x] = row < p.rows ? x[row * p.k + c] : 0.0f;
    tw[t.y][t.x] = wrow < p.n ? dq_at(packed, scales, biases, p.stride, ngroups, p.group, p.bits, wrow, c) : 0.0f;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint kk = 0; kk < 16; kk++) {
      acc = fma(tx[t.y][kk], tw[t.x][kk], acc);
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
  }
  if (row < p.rows && col < p.n) {
    y[row * p.n + col] = acc;
  }
}

// qmm_f32: dx = g·W, the input gradient of y = x·Wᵀ (g rows × n, dx rows × k).
// 16×16 threads compute a 16×16 tile of dx; each step stages 16 columns of g
// and the matching 16 rows of W's tile columns, dequantized.
// Grid: ceil(k/16) × ceil(rows/16).
kernel void qmm_f32(device float* dx [[buffer(0)]],
                    const device float* g [[buffer(1)]],
                    const device uint* packed [[buffer(2)]],
                    const device float* scales [[buffer(3)]],
                    const device float* biases [[buffer(4)]],
                    constant QuantParams& p [[buffer(5)]],
                    uint2 group [[threadgroup_position_in_grid]],
                    uint2 t [[thread_position_in_threadgroup]]) {
  threadgroup float tg[16][17];
  threadgroup float tw[16][17];
  uint ngroups = p.k / p.group;
  uint row = group.y * 16 + t.y;
  uint col = group.x * 16 + t.x; // < k: k is a multiple of 16
  float acc = 0.0f;
  for (uint o0 = 0; o0 < p.n; o0 += 16) {
    uint og = o0 + t.x;
    tg[t.y][t.x] = (row < p.rows && og < p.n) ? g[row * p.n + og] : 0.0f;
    uint ow = o0 + t.y;
    tw[t.y][t.x] = ow < p.n ? dq_at(packed, scales, biases, p.stride, ngroups, p.group, p.bits, ow, col) : 0.0f;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint oo = 0; oo < 16; oo++) {
      acc = fma(tg[t.y][oo], tw[oo][t.x], acc);
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
  }
  if (row < p.rows) {
    dx[row * p.k + col] = acc;
  }
}

// qgather_f32: out[i, :] = W[ids[i], :], the quantized embedding lookup; an id
// outside [0, n) gives a row of NaN. Grid: ceil(k/256) × tokens groups of 256.
kernel void qgather_f32(device float* out [[buffer(0)]],
                        const device int* ids [[buffer(1)]],
                        const device uint* packed [[buffer(2)]],
                        const device float* scales [[buffer(3)]],
                        const device float* biases [[buffer(4)]],
                        constant QuantParams& p [[buffer(5)]],
                        uint2 gid [[thread_position_in_grid]]) {
  uint c = gid.x;
  uint i = gid.y;
  if (c >= p.k) {
    return;
  }
  int id = ids[i];
  if (id < 0 || (uint)id >= p.n) {
    out[i * p.k + c] = NAN;
    return;
  }
  out[i * p.k + c] = dq_at(packed, scales, biases, p.stride, p.k / p.group, p.group, p.bits, (uint)id, c);
}

// The grouped products of a stack of quantized experts (MLX's gather_qmm over
// sorted rows), each as one launch over every expert: expert e's matrix is
// rows [e·n, (e+1)·n) of the stacked packed words, scales and biases, and its
// rows of x (or g) are [offsets[e], offsets[e+1]). A threadgroup computes a
// 16×16 tile of one expert's rows; it finds its expert from its row tile
// (expert e has ⌈n_e/16⌉ tiles, in expert order), so the grid needs no
// host-side list and the offsets stay on the device.
struct QuantGatherParams {
  uint rows;    // rows of x (or g), every expert's
  uint n;       // rows of each W_e: outputs
  uint k;       // columns of each W_e
  uint bits;
  uint group;   // group size: a multiple of 16
  uint stride;  // uint32 words per row of W_e
  uint experts;
  uint flags;   // 1: add bias[e]
};

// qgm_expert returns the expert of row tile ty and its tile's rows [lo, hi),
// or experts when ty is past the last tile.
inline uint qgm_expert(const device int* offsets, uint experts, uint ty, thread uint& lo, thread uint& hi) {
  uint seen = 0;
  for (uint x = 0; x < experts; x++) {
    uint l = (uint)offsets[x];
    uint h = (uint)offsets[x + 1];
    uint tiles = (h - l + 15) / 16;
    if (ty < seen + tiles) {
      lo = l + (ty - seen) * 16;
      hi = h;
      return x;
    }
    seen += tiles;
  }
  return experts;
}

// qgather_mm_t_f32: y[r] = x[r]·W_eᵀ (+ bias[e]) for each row r of expert e,
// as qmm_t_f32 stages it. Grid ⌈n/16⌉ × (⌈rows/16⌉ + experts) groups of 16×16
// (the groups past the last tile return).
kernel void qgather_mm_t_f32(device float* y [[buffer(0)]],
                             const device float* x [[buffer(1)]],
                             const device uint* packed [[buffer(2)]],
                             const device float* scales [[buffer(3)]],
                             const device float* biases [[buffer(4)]],
                             const device int* offsets [[buffer(5)]],
                             const device float* bias [[buffer(6)]],
                             constant QuantGatherParams& p [[buffer(7)]],
                             uint2 group [[threadgroup_position_in_grid]],
                             uint2 t [[thread_position_in_threadgroup]]) {
  threadgroup float tx[16][17];
  threadgroup float tw[16][17];
  uint lo = 0;
  uint hi = 0;
  uint e = qgm_expert(offsets, p.experts, group.y, lo, hi);
  if (e == p.experts) {
    return; // the whole group: past the last tile
  }
  uint ngroups = p.k / p.group;
  const device uint* pe = packed + e * p.n * p.stride;
  const device float* se = scales + e * p.n * ngroups;
  const device float* be = biases + e * p.n * ngroups;
  uint row = lo + t.y;
  uint col = group.x * 16 + t.x;
  uint wrow = group.x * 16 + t.y; // the row of W_e thread (y, x) stages
  float acc = 0.0f;
  for (uint k0 = 0; k0 < p.k; k0 += 16) {
    uint c = k0 + t.x;
    tx[t.y][t.x] = row < hi ? x[row * p.k + c] : 0.0f;
    tw[t.y][t.x] = wrow < p.n ? dq_at(pe, se, be, p.stride, ngroups, p.group, p.bits, wrow, c) : 0.0f;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint kk = 0; kk < 16; kk++) {
      acc = fma(tx[t.y][kk], tw[t.x][kk], acc);
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
  }
  if (row < hi && col < p.n) {
    if ((p.flags & 1u) != 0u) {
      acc += bias[e * p.n + col];
    }
    y[row * p.n + col] = acc;
  }
}

// qgather_mm_f32: dx[r] = g[r]·W_e for each row r of expert e, the input
// gradient of qgather_mm_t_f32, as qmm_f32 stages it. Grid ⌈k/16⌉ ×
// (⌈rows/16⌉ + experts) groups of 16×16.
kernel void qgather_mm_f32(device float* dx [[buffer(0)]],
                           const device float* g [[buffer(1)]],
                           const device uint* packed [[buffer(2)]],
                           const device float* scales [[buffer(3)]],
                           const device float* biases [[buffer(4)]],
                           const device int* offsets [[buffer(5)]],
                           constant QuantGatherParams& p [[buffer(6)]],
                           uint2 group [[threadgroup_position_in_grid]],
                           uint2 t [[thread_position_in_threadgroup]]) {
  threadgroup float tg[16][17];
  threadgroup float tw[16][17];
  uint lo = 0;
  uint hi = 0;
  uint e = qgm_expert(offsets, p.experts, group.y, lo, hi);
  if (e == p.experts) {
    return; // the whole group: past the last tile
  }
  uint ngroups = p.k / p.group;
  const device uint* pe = packed + e * p.n * p.stride;
  const device float* se = scales + e * p.n * ngroups;
  const device float* be = biases + e * p.n * ngroups;
  uint row = lo + t.y;
  uint col = group.x * 16 + t.x; // < k: k is a multiple of 16
  float acc = 0.0f;
  for (uint o0 = 0; o0 < p.n; o0 += 16) {
    uint og = o0 + t.x;
    tg[t.y][t.x] = (row < hi && og < p.n) ? g[row * p.n + og] : 0.0f;
    uint ow = o0 + t.y;
    tw[t.y][t.x] = ow < p.n ? dq_at(pe, se, be, p.stride, ngroups, p.group, p.bits, ow, col) : 0.0f;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint oo = 0; oo < 16; oo++) {
      acc = fma(tg[t.y][oo], tw[oo][t.x], acc);
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
  }
  if (row < hi) {
    dx[row * p.k + col] = acc;
  }
}
