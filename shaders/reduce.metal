// Reductions, float32: over the last axis (one value per row) and over the
// leading axis (one value per column, as bias gradients need).

// REDUCE_OP: 0 sum, 1 max (metal.ReduceOp; a mean is a sum times p.scale).
constant uint REDUCE_OP [[function_constant(0)]];

struct ReduceParams {
  uint rows;
  uint cols;
  uint rows_per_chunk;  // reduce_cols_f32: rows each grid row (chunk) reduces
  float scale;          // multiplies each result: 1, or 1/n for a mean
};

// reduce_rows_f32: out[r] = scale · op_j x[r, j]. One threadgroup per row; threads
// stride over the columns, then SIMD-group and threadgroup reductions combine them.
kernel void reduce_rows_f32(device float* out [[buffer(0)]],
                            const device float* x [[buffer(1)]],
                            constant ReduceParams& p [[buffer(2)]],
                            uint row [[threadgroup_position_in_grid]],
                            uint tid [[thread_index_in_threadgroup]],
                            uint nthreads [[threads_per_threadgroup]],
                            uint lane [[thread_index_in_simdgroup]],
                            uint sg [[simdgroup_index_in_threadgroup]]) {
  threadgroup float scratch[32];
  const device float* xr = x + row * p.cols;
  float r;
  if (REDUCE_OP == 1) {
    float m = -INFINITY;
    for (uint j = tid; j < p.cols; j += nthreads) {
      m = max(m, xr[j]);
    }
    r = threadgroup_max(m, scratch, lane, sg, nthreads);
  } else {
    float s = 0.0f;
    for (uint j = tid; j < p.cols; j += nthreads) {
      s += xr[j];
    }
    r = threadgroup_sum(s, scratch, lane, sg, nthreads);
  }
  if (tid == 0) {
    out[row] = r * p.scale;
  }
}

// reduce_cols_f32: out[chunk, c] = scale · op over the rows of the chunk of x[r, c].
// Groups of 32×8 threads: x picks the column (consecutive threads read consecutive
// addresses), y strides over the chunk's rows; the 8 partial results meet in a
// padded tile. Grid: ceil(cols/32) × chunks. With one chunk out is the result;
// with more, out holds partial results (chunks × cols) for a second pass.
kernel void reduce_cols_f32(device float* out [[buffer(0)]],
                            const device float* x [[buffer(1)]],
                            constant ReduceParams& p [[buffer(2)]],
                            uint2 group [[threadgroup_position_in_grid]],
                            uint2 t [[thread_position_in_threadgroup]]) {
  threadgroup float part[8][33];
  uint c = group.x * 32 + t.x;
  uint r0 = group.y * p.rows_per_chunk;
  uint r1 = min(r0 + p.rows_per_chunk, p.rows);
  float acc = REDUCE_OP == 1 ? -INFINITY : 0.0f;
  if (c < p.cols) {
    for (uint r = r0 + t.y; r < r1; r += 8) {
      float v = x[r * p.cols + c];
      acc = REDUCE_OP == 1 ? max(acc, v) : acc + v;
    }
  }
  part[t.y][t.x] = acc;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  if (t.y == 0 && c < p.cols) {
    float r = part[0][t.x];
    for (uint k = 1; k < 8; k++) {
      r = REDUCE_OP == 1 ? max(r, part[k][t.x]) : r + part[k][t.x];
    }
    out[group.y * p.cols + c] = r * p.scale;
  }
}
