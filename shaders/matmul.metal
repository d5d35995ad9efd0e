// Matrix products, float32, row-major: c[m×n] = op(a)[m×k] · op(b)[k×n], where
// op transposes when the function constant says so: with TRANS_A, a is stored
// k×m (c = aᵀ·b, the weight gradient of a linear layer); with TRANS_B, b is
// stored n×k (c = a·bᵀ, the input gradient). The tiles are staged so that
// consecutive threads read consecutive addresses in either storage order.

constant bool TRANS_A [[function_constant(0)]];
constant bool TRANS_B [[function_constant(1)]];

struct MatMulParams {
  uint m;
  uint n;
  uint k;
};

// matmul_tiled_f32: 16×16 threads per group, one output each; the group stages
// 16×16 tiles of a and b in threadgroup memory (rows padded by one against bank
// conflicts). Grid: ceil(n/16) × ceil(m/16) groups.
kernel void matmul_tiled_f32(device float* c [[buffer(0)]],
                             const device float* a [[buffer(1)]],
                             const device float* b [[buffer(2)]],
                             constant MatMulParams& p [[buffer(3)]],
                             uint2 group [[threadgroup_position_in_grid]],
                             uint2 t [[thread_position_in_threadgroup]]) {
  threadgroup float ta[16][17];
  threadgroup float tb[16][17];
  uint row = group.y * 16 + t.y;
  uint col = group.x * 16 + t.x;
  float acc = 0.0f;
  for (uint k0 = 0; k0 < p.k; k0 += 16) {
    if (TRANS_A) {
      // thread (y, x) reads op(a)[group.y·16 + x, k0 + y] = a[(k0 + y)·m + …]
      uint ra = group.y * 16 + t.x;
      uint ka = k0 + t.y;
      ta[t.x][t.y] = (ra < p.m && ka < p.k) ? a[ka * p.m + ra] : 0.0f;
    } else {
      uint ka = k0 + t.x;
      ta[t.y][t.x] = (row < p.m && ka < p.k) ? a[row * p.k + ka] : 0.0f;
    }
    if (TRANS_B) {
      // thread (y, x) reads op(b)[k0 + x, group.x·16 + y] = b[(group.x·16 + y)·k + …]
      uint cb = group.x * 16 + t.y;
      uint kb = k0 + t.x;
      tb[t.x][t.y] = (kb < p.k && cb < p.n) ? b[cb * p.k + kb] : 0.0f;
    } else {
      uint kb = k0 + t.y;
      tb[t.y][t.x] = (kb < p.k && col < p.n) ? b[kb * p.n + col] : 0.0f;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint kk = 0; kk < 16; kk++) {
      acc = fma(ta[t.y][kk], tb[kk][t.x], acc);
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
  }
  if (row < p.m && col < p.n) {
    c[row * p.n + col] = acc;
  }
}

// matmul_sg8_f32: simdgroup_matrix 8×8 products (Apple7 and later). 128 threads
// (four SIMD groups in a 2×2 layout) compute a 32×32 tile of c, each SIMD group a
// 16×16 quarter as 2×2 blocks of 8×8. The k loop stages 32×16 of a and 16×32 of b
// (rows padded by 4), zero-filled past the edges; the result goes through
// threadgroup memory so edge tiles store only what is in range.
// Grid: ceil(n/32) × ceil(m/32) groups of 128×1×1 threads.
kernel void matmul_sg8_f32(device float* c [[buffer(0)]],
                           const device float* a [[buffer(1)]],
                           const device float* b [[buffer(2)]],
                           constant MatMulParams& p [[buffer(3)]],
                           uint2 group [[threadgroup_position_in_grid]],
                           uint tid [[thread_index_in_threadgroup]],
                           uint sg [[simdgroup_index_in_threadgroup]]) {
  threadgroup float ta[32][20];
  threadgroup float tb[16][36];
  threadgroup float tc[32][36];
  uint row0 = group.y * 32;
  uint col0 = group.x * 32;
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
  for (uint k0 = 0; k0 < p.k; k0 += 16) {
    for (uint e = tid; e < 32 * 16; e += 128) {
      uint r = TRANS_A ? e % 32 : e / 16;
      uint kk = TRANS_A ? e / 32 : e % 16;
      uint gr = row0 + r;
      uint gk = k0 + kk;
      float va = 0.0f;
      if (gr < p.m && gk < p.k) {
        va = TRANS_A ? a[gk * p.m + gr] : a[gr * p.k + gk];
      }
      ta[r][kk] = va;
    }
    for (uint e = tid; e < 16 * 32; e += 128) {
      uint kk = TRANS_B ? e % 16 : e / 32;
      uint cc = TRANS_B ? e / 16 : e % 32;
      uint gk = k0 + kk;
      uint gc = col0 + cc;
      float vb = 0.0f;
      if (gk < p.k && gc < p.n) {
        vb = TRANS_B ? b[gc * p.k + gk] : b[gk * p.n + gc];
      }
      tb[kk][cc] = vb;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint kk = 0; kk < 16; kk += 8) {
      simdgroup_load(a0, &ta[sr][kk], 20);
      simdgroup_load(a1, &ta[sr + 8][kk], 20);
      simdgroup_load(b0, &tb[kk][sc], 36);
      simdgroup_load(b1, &tb[kk][sc + 8], 36);
      simdgroup_multiply_accumulate(acc00, a0, b0, acc00);
      simdgroup_multiply_accumulate(acc01, a0, b1, acc01);
      simdgroup_multiply_accumulate(acc10, a1, b0, acc10);
      simdgroup_multiply_accumulate(acc11, a1, b1, acc11);
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
  }
  simdgroup_store(acc00, &tc[sr][sc], 36);
  simdgroup_store(acc01, &tc[sr][sc + 8], 36);
  simdgroup_store(acc10, &tc[sr + 8][sc], 36);
  simdgroup_store(acc11, &tc[sr + 8][sc + 8], 36);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  for (uint e = tid; e < 32 * 32; e += 128) {
    uint r = e / 32;
    uint cc = e % 32;
    if (row0 + r < p.m && col0 + cc < p.n) {
      c[(row0 + r) * p.n + col0 + cc] = tc[r][cc];
    }
  }
}
