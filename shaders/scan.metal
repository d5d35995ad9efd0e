// Prefix scans under an associative operator, over one axis of a tensor viewed
// as (outer, n, inner): row r = i·inner + j holds the n elements
// x[(i·n + t)·inner + j], t = 0…n−1 (read from the end when reversed).
//
// The operator is a struct with identity() and combine(earlier, later); combine
// need not commute (the affine maps of a linear recurrence do not), so every
// step puts the earlier prefix on the left.
//
// Work-efficient, three levels:
//   - a thread scans SCAN_PER consecutive elements in registers;
//   - a SIMD group scans its 32 thread totals (simd_prefix_inclusive_sum for
//     sums, else log2(32) simd_shuffle_up steps);
//   - SIMD group 0 scans the SIMD-group totals from threadgroup memory;
// and rows longer than one threadgroup's block take a grid level in three
// launches (reduce, then scan): the blocks' totals (SCAN_TOTALS), their
// exclusive scan (a scan of the totals array, recursively), and the blocks'
// scans seeded with those prefixes (SCAN_SEEDS). Reducing first rather than
// scanning first reads x twice but writes y once, and needs no pass that
// combines a prefix into y afterwards (which an affine y, a single float of
// its pair, could not take).

constant uint SCAN_PER = 4; // elements per thread

// ScanParams.flags
constant uint SCAN_EXCLUSIVE = 1; // y[t] = x[0]∘…∘x[t−1] (identity at t = 0)
constant uint SCAN_REVERSE = 2;   // scan from t = n−1 down
constant uint SCAN_OUT = 4;       // write y
constant uint SCAN_TOTALS = 8;    // write each block's total to totals[row, block]
constant uint SCAN_SEEDS = 16;    // each block starts from seeds[row, block]
constant uint SCAN_INIT = 32;     // each row starts from init[row]
constant uint SCAN_SHIFT = 64;    // affine: element t is (a[t+1], b[t]), a past the end 0
constant uint SCAN_SERIAL = 128;  // a thread per row walks it (rows many, each strided)

struct ScanParams {
  uint rows;    // outer·inner
  uint n;       // elements per row
  uint inner;   // stride between a row's elements
  uint nblocks; // blocks per row (threads·SCAN_PER elements each)
  uint flags;
};

struct ScanSumF32 {
  float identity() { return 0.0f; }
  float from_init(float v) { return v; }
  float combine(float a, float b) { return a + b; }
};
struct ScanProdF32 {
  float identity() { return 1.0f; }
  float from_init(float v) { return v; }
  float combine(float a, float b) { return a * b; }
};
struct ScanMaxF32 {
  float identity() { return -INFINITY; }
  float from_init(float v) { return v; }
  float combine(float a, float b) { return max(a, b); }
};
struct ScanMinF32 {
  float identity() { return INFINITY; }
  float from_init(float v) { return v; }
  float combine(float a, float b) { return min(a, b); }
};
struct ScanSumI32 {
  int identity() { return 0; }
  int from_init(int v) { return v; }
  int combine(int a, int b) { return a + b; }
};
// ScanAffine composes the maps h ↦ x·h + y of h_t = a_t·h_{t−1} + b_t, stored as
// (x, y) = (a, b): f then g is (f.x·g.x, g.x·f.y + g.y). A start h_{−1} is the
// constant map (0, h_{−1}).
struct ScanAffine {
  float2 identity() { return make_float2(1.0f, 0.0f); }
  float2 from_init(float h) { return make_float2(0.0f, h); }
  float2 from_init(float2 f) { return f; }
  float2 combine(float2 f, float2 g) { return make_float2(f.x * g.x, fma(g.x, f.y, g.y)); }
};

// simd_inclusive scans one value per lane across the SIMD group.
template <typename Op, typename T> inline T simd_inclusive(Op op, T x, uint lane) {
  for (ushort d = 1; d < 32; d <<= 1) {
    T y = simd_shuffle_up(x, d);
    if (lane >= d) {
      x = op.combine(y, x);
    }
  }
  return x;
}
inline float simd_inclusive(ScanSumF32 op, float x, uint lane) { return simd_prefix_inclusive_sum(x); }
inline int simd_inclusive(ScanSumI32 op, int x, uint lane) { return simd_prefix_inclusive_sum(x); }

// Element sources and destinations: at(addr, next, has_next) reads the element
// at addr (next is the address after it in memory order, for SCAN_SHIFT);
// put(addr, v) writes a prefix.
struct ScanF32 {
  const device float* x;
  device float* y;
  float at(uint addr, uint next, bool has_next) { return x[addr]; }
  void put(uint addr, float v) { y[addr] = v; }
};
struct ScanI32 {
  const device int* x;
  device int* y;
  int at(uint addr, uint next, bool has_next) { return x[addr]; }
  void put(uint addr, int v) { y[addr] = v; }
};
struct ScanPairs {
  const device float2* x;
  device float2* y;
  float2 at(uint addr, uint next, bool has_next) { return x[addr]; }
  void put(uint addr, float2 v) { y[addr] = v; }
};
// ScanLinear reads (a, b) from two arrays and writes h, the pair's second half.
struct ScanLinear {
  const device float* a;
  const device float* b;
  device float* h;
  bool shift;
  float2 at(uint addr, uint next, bool has_next) {
    float av = shift ? (has_next ? a[next] : 0.0f) : a[addr];
    return make_float2(av, b[addr]);
  }
  void put(uint addr, float2 v) { h[addr] = v.y; }
};

// scan_block scans block `block` of row `row`, starting from pre. shared holds
// 33 values (a SIMD group's total each, then the block's). Every lane of the
// group calls it.
template <typename Op, typename T, typename IO>
inline void scan_block(Op op, IO io, T pre, device T* totals, const device T* seeds, constant ScanParams& p,
                       uint block, uint row, uint tid, uint lane, uint sg, uint nthreads, threadgroup T* shared) {
  uint base = (row / p.inner) * p.n * p.inner + row % p.inner;
  bool reverse = (p.flags & SCAN_REVERSE) != 0;
  uint t0 = (block * nthreads + tid) * SCAN_PER;
  T loc[SCAN_PER];
  T acc = op.identity();
  for (uint k = 0; k < SCAN_PER; k++) {
    uint t = t0 + k;
    if (t < p.n) {
      uint pos = reverse ? p.n - 1 - t : t;
      acc = op.combine(acc, io.at(base + pos * p.inner, base + (pos + 1) * p.inner, pos + 1 < p.n));
    }
    loc[k] = acc;
  }
  T incl = simd_inclusive(op, acc, lane);
  T before = simd_shuffle_up(incl, 1);
  if (lane == 0) {
    before = op.identity();
  }
  if (lane == 31) {
    shared[sg] = incl;
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);
  if (sg == 0) {
    uint groups = nthreads / 32;
    T s = lane < groups ? shared[lane] : op.identity();
    T si = simd_inclusive(op, s, lane);
    T se = simd_shuffle_up(si, 1);
    if (lane == 0) {
      se = op.identity();
    }
    if (lane < groups) {
      shared[lane] = se;
    }
    if (lane == 31) {
      shared[32] = si;
    }
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);
  if ((p.flags & SCAN_TOTALS) != 0 && tid == 0) {
    totals[row * p.nblocks + block] = shared[32];
  }
  if ((p.flags & SCAN_OUT) == 0) {
    return;
  }
  if ((p.flags & SCAN_SEEDS) != 0) {
    pre = op.combine(pre, seeds[row * p.nblocks + block]);
  }
  pre = op.combine(pre, op.combine(shared[sg], before));
  bool exclusive = (p.flags & SCAN_EXCLUSIVE) != 0;
  for (uint k = 0; k < SCAN_PER; k++) {
    uint t = t0 + k;
    if (t < p.n) {
      uint pos = reverse ? p.n - 1 - t : t;
      T v = pre;
      if (!exclusive) {
        v = op.combine(pre, loc[k]);
      } else if (k > 0) {
        v = op.combine(pre, loc[k - 1]);
      }
      io.put(base + pos * p.inner, v);
    }
  }
}

// scan_serial walks row `row` in one thread from pre (SCAN_SERIAL: with many
// strided rows, neighbouring threads read neighbouring addresses).
template <typename Op, typename T, typename IO>
inline void scan_serial(Op op, IO io, T acc, constant ScanParams& p, uint row) {
  uint base = (row / p.inner) * p.n * p.inner + row % p.inner;
  bool reverse = (p.flags & SCAN_REVERSE) != 0;
  bool exclusive = (p.flags & SCAN_EXCLUSIVE) != 0;
  for (uint s = 0; s < p.n; s++) {
    uint pos = reverse ? p.n - 1 - s : s;
    uint addr = base + pos * p.inner;
    T v = io.at(addr, addr + p.inner, pos + 1 < p.n);
    if (exclusive) {
      io.put(addr, acc);
      acc = op.combine(acc, v);
    } else {
      acc = op.combine(acc, v);
      io.put(addr, acc);
    }
  }
}

// scan_entry is every scan kernel's body: the row's start (init) and either
// the serial walk (grid ⌈rows/threads⌉ groups) or the block scan (grid
// nblocks × rows groups).
template <typename Op, typename T, typename IO, typename I>
inline void scan_entry(Op op, IO io, const device I* init, device T* totals, const device T* seeds, constant ScanParams& p,
                       uint2 gid, uint tid, uint lane, uint sg, uint nthreads, threadgroup T* shared) {
  bool serial = (p.flags & SCAN_SERIAL) != 0;
  uint row = serial ? gid.x * nthreads + tid : gid.y;
  if (serial && row >= p.rows) {
    return; // no barrier on the serial path
  }
  T pre = (p.flags & SCAN_INIT) != 0 ? op.from_init(init[row]) : op.identity();
  if (serial) {
    scan_serial(op, io, pre, p, row);
    return;
  }
  scan_block(op, io, pre, totals, seeds, p, gid.x, row, tid, lane, sg, nthreads, shared);
}

// The kernels: y = scan of x (same layout); totals and seeds are (rows,
// nblocks); init (rows) is read with SCAN_INIT. Grid (block scan): nblocks ×
// rows groups of a multiple of 32 threads (at most 1024).

kernel void scan_sum_f32(device float* y [[buffer(0)]],
                         const device float* x [[buffer(1)]],
                         device float* totals [[buffer(2)]],
                         const device float* seeds [[buffer(3)]],
                         const device float* init [[buffer(4)]],
                         constant ScanParams& p [[buffer(5)]],
                         uint2 gid [[threadgroup_position_in_grid]],
                         uint tid [[thread_index_in_threadgroup]],
                         uint lane [[thread_index_in_simdgroup]],
                         uint sg [[simdgroup_index_in_threadgroup]],
                         uint nthreads [[threads_per_threadgroup]]) {
  threadgroup float shared[33];
  ScanSumF32 op;
  ScanF32 io = {x, y};
  scan_entry(op, io, init, totals, seeds, p, gid, tid, lane, sg, nthreads, shared);
}

kernel void scan_prod_f32(device float* y [[buffer(0)]],
                          const device float* x [[buffer(1)]],
                          device float* totals [[buffer(2)]],
                          const device float* seeds [[buffer(3)]],
                          const device float* init [[buffer(4)]],
                          constant ScanParams& p [[buffer(5)]],
                          uint2 gid [[threadgroup_position_in_grid]],
                          uint tid [[thread_index_in_threadgroup]],
                          uint lane [[thread_index_in_simdgroup]],
                          uint sg [[simdgroup_index_in_threadgroup]],
                          uint nthreads [[threads_per_threadgroup]]) {
  threadgroup float shared[33];
  ScanProdF32 op;
  ScanF32 io = {x, y};
  scan_entry(op, io, init, totals, seeds, p, gid, tid, lane, sg, nthreads, shared);
}

kernel void scan_max_f32(device float* y [[buffer(0)]],
                         const device float* x [[buffer(1)]],
                         device float* totals [[buffer(2)]],
                         const device float* seeds [[buffer(3)]],
                         const device float* init [[buffer(4)]],
                         constant ScanParams& p [[buffer(5)]],
                         uint2 gid [[threadgroup_position_in_grid]],
                         uint tid [[thread_index_in_threadgroup]],
                         uint lane [[thread_index_in_simdgroup]],
                         uint sg [[simdgroup_index_in_threadgroup]],
                         uint nthreads [[threads_per_threadgroup]]) {
  threadgroup float shared[33];
  ScanMaxF32 op;
  ScanF32 io = {x, y};
  scan_entry(op, io, init, totals, seeds, p, gid, tid, lane, sg, nthreads, shared);
}

kernel void scan_min_f32(device float* y [[buffer(0)]],
                         const device float* x [[buffer(1)]],
                         device float* totals [[buffer(2)]],
                         const device float* seeds [[buffer(3)]],
                         const device float* init [[buffer(4)]],
                         constant ScanParams& p [[buffer(5)]],
                         uint2 gid [[threadgroup_position_in_grid]],
                         uint tid [[thread_index_in_threadgroup]],
                         uint lane [[thread_index_in_simdgroup]],
                         uint sg [[simdgroup_index_in_threadgroup]],
                         uint nthreads [[threads_per_threadgroup]]) {
  threadgroup float shared[33];
  ScanMinF32 op;
  ScanF32 io = {x, y};
  scan_entry(op, io, init, totals, seeds, p, gid, tid, lane, sg, nthreads, shared);
}

kernel void scan_sum_i32(device int* y [[buffer(0)]],
                         const device int* x [[buffer(1)]],
                         device int* totals [[buffer(2)]],
                         const device int* seeds [[buffer(3)]],
                         const device int* init [[buffer(4)]],
                         constant ScanParams& p [[buffer(5)]],
                         uint2 gid [[threadgroup_position_in_grid]],
                         uint tid [[thread_index_in_threadgroup]],
                         uint lane [[thread_index_in_simdgroup]],
                         uint sg [[simdgroup_index_in_threadgroup]],
                         uint nthreads [[threads_per_threadgroup]]) {
  threadgroup int shared[33];
  ScanSumI32 op;
  ScanI32 io = {x, y};
  scan_entry(op, io, init, totals, seeds, p, gid, tid, lane, sg, nthreads, shared);
}

// scan_affine_f32: h_t = a_t·h_{t−1} + b_t from h_{−1} = init[row] (0 without
// SCAN_INIT); totals and seeds are (a, b) pairs. With SCAN_SHIFT (and
// SCAN_REVERSE) it is the backward's recurrence u_t = a_{t+1}·u_{t+1} + g_t.
kernel void scan_affine_f32(device float* h [[buffer(0)]],
                            const device float* a [[buffer(1)]],
                            device float2* totals [[buffer(2)]],
                            const device float2* seeds [[buffer(3)]],
                            const device float* init [[buffer(4)]],
                            constant ScanParams& p [[buffer(5)]],
                            const device float* b [[buffer(6)]],
                            uint2 gid [[threadgroup_position_in_grid]],
                            uint tid [[thread_index_in_threadgroup]],
                            uint lane [[thread_index_in_simdgroup]],
                            uint sg [[simdgroup_index_in_threadgroup]],
                            uint nthreads [[threads_per_threadgroup]]) {
  threadgroup float2 shared[33];
  ScanAffine op;
  ScanLinear io = {a, b, h, (p.flags & SCAN_SHIFT) != 0};
  scan_entry(op, io, init, totals, seeds, p, gid, tid, lane, sg, nthreads, shared);
}

// scan_affine_pairs_f32: the scan of an array of (a, b) pairs (the grid level
// of scan_affine_f32 scans its block totals with it).
kernel void scan_affine_pairs_f32(device float2* y [[buffer(0)]],
                                  const device float2* x [[buffer(1)]],
                                  device float2* totals [[buffer(2)]],
                                  const device float2* seeds [[buffer(3)]],
                                  const device float2* init [[buffer(4)]],
                                  constant ScanParams& p [[buffer(5)]],
                                  uint2 gid [[threadgroup_position_in_grid]],
                                  uint tid [[thread_index_in_threadgroup]],
                                  uint lane [[thread_index_in_simdgroup]],
                                  uint sg [[simdgroup_index_in_threadgroup]],
                                  uint nthreads [[threads_per_threadgroup]]) {
  threadgroup float2 shared[33];
  ScanAffine op;
  ScanPairs io = {x, y};
  scan_entry(op, io, init, totals, seeds, p, gid, tid, lane, sg, nthreads, shared);
}

// linear_scan_grad_f32: from u (the backward recurrence's result, which is
// ∂L/∂b), da_t = u_t·h_{t−1} (h_{−1} = h0[row], or 0 without SCAN_INIT) and,
// when SCAN_TOTALS, dh0[row] = a_0·u_0. A thread per element; grid
// ⌈n/threads⌉ × rows.
kernel void linear_scan_grad_f32(device float* da [[buffer(0)]],
                                 device float* dh0 [[buffer(1)]],
                                 const device float* u [[buffer(2)]],
                                 const device float* a [[buffer(3)]],
                                 const device float* h [[buffer(4)]],
                                 const device float* h0 [[buffer(5)]],
                                 constant ScanParams& p [[buffer(6)]],
                                 uint2 gid [[thread_position_in_grid]]) {
  uint t = gid.x;
  uint row = gid.y;
  if (t >= p.n) {
    return;
  }
  uint addr = (row / p.inner) * p.n * p.inner + row % p.inner + t * p.inner;
  float prev = 0.0f;
  if (t > 0) {
    prev = h[addr - p.inner];
  } else if ((p.flags & SCAN_INIT) != 0) {
    prev = h0[row];
  }
  da[addr] = u[addr] * prev;
  if (t == 0 && (p.flags & SCAN_TOTALS) != 0) {
    dh0[row] = a[addr] * u[addr];
  }
}
