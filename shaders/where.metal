// Selection by a mask, float32, with NumPy broadcasting of all three operands
// (rank ≤ 6): out[i] = mask ? a : b. Where and MaskedFill (b or a a one-element
// scalar with stride 0) run it forward, and their gradients (g where the mask
// is set or clear, 0 elsewhere) backward. The mask is float32 (nonzero: set;
// −0 is zero, NaN is set) or int32 (nonzero bits), as MASK_FLOAT says.
constant bool MASK_FLOAT [[function_constant(0)]];

struct WhereParams {
  uint n;
  uint rank;
  uint dims[6];
  uint sm[6];  // element strides of the mask in out (0 where it broadcasts)
  uint sa[6];
  uint sb[6];
};

kernel void where_f32(device float* out [[buffer(0)]],
                      const device uint* mask [[buffer(1)]],
                      const device float* a [[buffer(2)]],
                      const device float* b [[buffer(3)]],
                      constant WhereParams& p [[buffer(4)]],
                      uint i [[thread_position_in_grid]]) {
  if (i >= p.n) {
    return;
  }
  uint rest = i;
  uint mi = 0;
  uint ai = 0;
  uint bi = 0;
  for (int d = int(p.rank) - 1; d >= 0; d--) {
    uint c = rest % p.dims[d];
    rest = rest / p.dims[d];
    mi += c * p.sm[d];
    ai += c * p.sa[d];
    bi += c * p.sb[d];
  }
  uint m = mask[mi];
  bool set = MASK_FLOAT ? as_type<float>(m) != 0.0f : m != 0u;
  out[i] = set ? a[ai] : b[bi];
}
