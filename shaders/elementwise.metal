// Elementwise kernels, float32. One thread per element; the operation is a
// function constant, so each op gets its own specialised pipeline.

// BINARY_OP: 0 add, 1 sub, 2 mul, 3 div (metal.BinaryOp).
constant uint BINARY_OP [[function_constant(0)]];
// UNARY_OP: 0 GELU (erf form), 1 SiLU (metal.UnaryOp).
constant uint UNARY_OP [[function_constant(1)]];

struct BinaryParams {
  uint n;   // elements of out and a
  uint bn;  // elements of b: n, or a trailing row that repeats over a's rows
};

kernel void binary_f32(device float* out [[buffer(0)]],
                       const device float* a [[buffer(1)]],
                       const device float* b [[buffer(2)]],
                       constant BinaryParams& p [[buffer(3)]],
                       uint i [[thread_position_in_grid]]) {
  if (i >= p.n) {
    return;
  }
  float x = a[i];
  float y = b[i % p.bn];
  float r;
  switch (BINARY_OP) {
    case 0:
      r = x + y;
      break;
    case 1:
      r = x - y;
      break;
    case 2:
      r = x * y;
      break;
    default:
      r = x / y;
      break;
  }
  out[i] = r;
}

struct UnaryParams {
  uint n;
};

kernel void unary_f32(device float* out [[buffer(0)]],
                      const device float* x [[buffer(1)]],
                      constant UnaryParams& p [[buffer(2)]],
                      uint i [[thread_position_in_grid]]) {
  if (i >= p.n) {
    return;
  }
  float v = x[i];
  float r;
  switch (UNARY_OP) {
    case 0:
      r = 0.5f * v * (1.0f + erf_f32(v * M_SQRT1_2_F));
      break;
    default:
      r = v / (1.0f + exp(-v));
      break;
  }
  out[i] = r;
}

// BroadcastParams describe out (rank ≤ 6 dims, row-major) and, per dim, the
// element strides of a and b in it: 0 along a dim the operand broadcasts over.
struct BroadcastParams {
  uint n;
  uint rank;
  uint dims[6];
  uint sa[6];
  uint sb[6];
};

// binary_bcast_f32: out[i] = a[·] op b[·] with NumPy broadcasting of both.
kernel void binary_bcast_f32(device float* out [[buffer(0)]],
                             const device float* a [[buffer(1)]],
                             const device float* b [[buffer(2)]],
                             constant BroadcastParams& p [[buffer(3)]],
                             uint i [[thread_position_in_grid]]) {
  if (i >= p.n) {
    return;
  }
  uint rest = i;
  uint ai = 0;
  uint bi = 0;
  for (int d = int(p.rank) - 1; d >= 0; d--) {
    uint c = rest % p.dims[d];
    rest = rest / p.dims[d];
    ai += c * p.sa[d];
    bi += c * p.sb[d];
  }
  float x = a[ai];
  float y = b[bi];
  float r;
  switch (BINARY_OP) {
    case 0:
      r = x + y;
      break;
    case 1:
      r = x - y;
      break;
    case 2:
      r = x * y;
      break;
    default:
      r = x / y;
      break;
  }
  out[i] = r;
}
