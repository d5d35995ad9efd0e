// Reductions of a contiguous float32 x over any set of its axes, forward and
// backward: sums and means (SumTo's middle axes among them), maxima and minima
// with the index of the winner, variances with their means. The Go side merges
// runs of adjacent kept or reduced axes, so each set has at most 6 dims.
//
// Forward kernels: one threadgroup per output element o (outputs in row-major
// order over the kept dims); the threads stride over the n reduced elements r
// (row-major over the reduced dims) and meet in a threadgroup tree. Backward
// kernels: one thread per element of x.

struct StridedReduceParams {
  uint k;              // outputs
  uint n;              // reduced elements per output
  uint krank;          // kept dims
  uint rrank;          // reduced dims
  uint kdims[6];
  uint kstrides[6];    // x's element strides along the kept dims
  uint rdims[6];
  uint rstrides[6];    // x's element strides along the reduced dims
  float scale;         // sums: 1, or 1/n for a mean; variances: 1/(n − ddof) (NaN if ≤ 0)
};

// red2_offset is the offset in x of the i-th index (row-major) of a dim set.
inline uint red2_offset(uint i, uint rank, constant uint* dims, constant uint* strides) {
  uint off = 0;
  for (int d = int(rank) - 1; d >= 0; d--) {
    off += (i % dims[d]) * strides[d];
    i = i / dims[d];
  }
  return off;
}

// red2_tree_sum adds v over the threadgroup (nthreads a power of two ≤ 256):
// every thread gets the result.
inline float red2_tree_sum(float v, threadgroup float* vals, uint tid, uint nthreads) {
  vals[tid] = v;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  for (uint s = nthreads / 2; s > 0; s = s / 2) {
    if (tid < s) {
      vals[tid] = vals[tid] + vals[tid + s];
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
  }
  float r = vals[0];
  threadgroup_barrier(mem_flags::mem_threadgroup);
  return r;
}

// reduce_strided_f32: out[o] = scale · Σ_r x[·].
kernel void reduce_strided_f32(device float* out [[buffer(0)]],
                               const device float* x [[buffer(1)]],
                               constant StridedReduceParams& p [[buffer(2)]],
                               uint o [[threadgroup_position_in_grid]],
                               uint tid [[thread_index_in_threadgroup]],
                               uint nthreads [[threads_per_threadgroup]]) {
  threadgroup float vals[256];
  uint base = red2_offset(o, p.krank, p.kdims, p.kstrides);
  float s = 0.0f;
  for (uint r = tid; r < p.n; r += nthreads) {
    s += x[base + red2_offset(r, p.rrank, p.rdims, p.rstrides)];
  }
  s = red2_tree_sum(s, vals, tid, nthreads);
  if (tid == 0) {
    out[o] = s * p.scale;
  }
}

// ARG_MAX: true for the maximum, false for the minimum.
constant bool ARG_MAX [[function_constant(0)]];

// red2_beats reports whether (v, i) replaces (w, j) as the extremum: a NaN beats
// every number, and on ties (NaNs included) the first index wins.
inline bool red2_beats(float v, uint i, float w, uint j) {
  bool vn = isnan(v);
  bool wn = isnan(w);
  if (vn || wn) {
    return vn && (!wn || i < j);
  }
  if (v == w) {
    return i < j;
  }
  return ARG_MAX ? v > w : v < w;
}

// reduce_arg_strided_f32: out[o] = the maximum (minimum) over r, arg[o] = the
// first r where it is (n ≥ 1).
kernel void reduce_arg_strided_f32(device float* out [[buffer(0)]],
                                   device int* arg [[buffer(1)]],
                                   const device float* x [[buffer(2)]],
                                   constant StridedReduceParams& p [[buffer(3)]],
                                   uint o [[threadgroup_position_in_grid]],
                                   uint tid [[thread_index_in_threadgroup]],
                                   uint nthreads [[threads_per_threadgroup]]) {
  threadgroup float vals[256];
  threadgroup uint idx[256];
  uint base = red2_offset(o, p.krank, p.kdims, p.kstrides);
  float best = 0.0f;
  uint at = UINT_MAX;  // none yet
  for (uint r = tid; r < p.n; r += nthreads) {
    float v = x[base + red2_offset(r, p.rrank, p.rdims, p.rstrides)];
    if (at == UINT_MAX || red2_beats(v, r, best, at)) {
      best = v;
      at = r;
    }
  }
  vals[tid] = best;
  idx[tid] = at;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  for (uint s = nthreads / 2; s > 0; s = s / 2) {
    if (tid < s) {
      uint j = idx[tid + s];
      if (j != UINT_MAX && (idx[tid] == UINT_MAX || red2_beats(vals[tid + s], j, vals[tid], idx[tid]))) {
        vals[tid] = vals[tid + s];
        idx[tid] = j;
      }
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
  }
  if (tid == 0) {
    out[o] = vals[0];
    arg[o] = int(idx[0]);
  }
}

// var_strided_f32: mean[o] = Σ_r x / n, out[o] = scale · Σ_r (x − mean)² (two passes).
kernel void var_strided_f32(device float* out [[buffer(0)]],
                            device float* mean [[buffer(1)]],
                            const device float* x [[buffer(2)]],
                            constant StridedReduceParams& p [[buffer(3)]],
                            uint o [[threadgroup_position_in_grid]],
                            uint tid [[thread_index_in_threadgroup]],
                            uint nthreads [[threads_per_threadgroup]]) {
  threadgroup float vals[256];
  uint base = red2_offset(o, p.krank, p.kdims, p.kstrides);
  float s = 0.0f;
  for (uint r = tid; r < p.n; r += nthreads) {
    s += x[base + red2_offset(r, p.rrank, p.rdims, p.rstrides)];
  }
  float m = red2_tree_sum(s, vals, tid, nthreads) / float(p.n);
  float q = 0.0f;
  for (uint r = tid; r < p.n; r += nthreads) {
    float dv = x[base + red2_offset(r, p.rrank, p.rdims, p.rstrides)] - m;
    q += dv * dv;
  }
  q = red2_tree_sum(q, vals, tid, nthreads);
  if (tid == 0) {
    out[o] = q * p.scale;
    mean[o] = m;
  }
}

// The backward kernels walk x (contiguous, rank ≤ 6 dims); per dim, gstrides
// is the stride of the output (0 along reduced dims) and rstrides the stride of
// the reduced index r (0 along kept dims).
struct ReduceBackwardParams {
  uint n;              // elements of x
  uint rank;
  uint dims[6];
  uint gstrides[6];
  uint rstrides[6];
  float scale;         // sums: 1 or 1/n; variances: 2/(n − ddof)
};

// red2_index returns the output index of x's element i and its reduced index.
inline uint red2_index(uint i, constant ReduceBackwardParams& p, thread uint& r) {
  uint o = 0;
  r = 0;
  for (int d = int(p.rank) - 1; d >= 0; d--) {
    uint c = i % p.dims[d];
    i = i / p.dims[d];
    o += c * p.gstrides[d];
    r += c * p.rstrides[d];
  }
  return o;
}

// reduce_strided_bwd_f32: dx = scale · g[o] (the gradient of a sum or a mean).
kernel void reduce_strided_bwd_f32(device float* dx [[buffer(0)]],
                                   const device float* g [[buffer(1)]],
                                   constant ReduceBackwardParams& p [[buffer(2)]],
                                   uint i [[thread_position_in_grid]]) {
  if (i >= p.n) {
    return;
  }
  uint r;
  uint o = red2_index(i, p, r);
  dx[i] = g[o] * p.scale;
}

// reduce_arg_strided_bwd_f32: dx = g[o] where r is the winner arg[o], else 0.
kernel void reduce_arg_strided_bwd_f32(device float* dx [[buffer(0)]],
                                       const device float* g [[buffer(1)]],
                                       const device int* arg [[buffer(2)]],
                                       constant ReduceBackwardParams& p [[buffer(3)]],
                                       uint i [[thread_position_in_grid]]) {
  if (i >= p.n) {
    return;
  }
  uint r;
  uint o = red2_index(i, p, r);
  dx[i] = uint(arg[o]) == r ? g[o] : 0.0f;
}

// var_strided_bwd_f32: dx = scale · g[o] · (x − mean[o]).
kernel void var_strided_bwd_f32(device float* dx [[buffer(0)]],
                                const device float* g [[buffer(1)]],
                                const device float* x [[buffer(2)]],
                                const device float* mean [[buffer(3)]],
                                constant ReduceBackwardParams& p [[buffer(4)]],
                                uint i [[thread_position_in_grid]]) {
  if (i >= p.n) {
    return;
  }
  uint r;
  uint o = red2_index(i, p, r);
  dx[i] = p.scale * g[o] * (x[i] - mean[o]);
}
