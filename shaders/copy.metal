// Strided copies of 32-bit elements (float32 or int32: only the bits move), the
// kernel behind slice, concat, split, stack, permute/transpose and broadcast_to,
// forward and backward. One thread per element of the copied index space
// (rank ≤ 6, row-major): dst[dst_off + Σ i_k·dst_strides[k]] =
// src[src_off + Σ i_k·src_strides[k]]. A stride of 0 in src repeats an element
// (broadcasting); dst strides never alias, so every thread writes its own element.
struct CopyParams {
  uint n;        // elements in the index space: the product of dims
  uint rank;
  uint src_off;  // elements
  uint dst_off;  // elements
  uint dims[6];
  uint src_strides[6];
  uint dst_strides[6];
};

kernel void copy_strided_u32(device uint* dst [[buffer(0)]],
                             const device uint* src [[buffer(1)]],
                             constant CopyParams& p [[buffer(2)]],
                             uint i [[thread_position_in_grid]]) {
  if (i >= p.n) {
    return;
  }
  uint rest = i;
  uint s = p.src_off;
  uint d = p.dst_off;
  for (int k = int(p.rank) - 1; k >= 0; k--) {
    uint c = rest % p.dims[k];
    rest = rest / p.dims[k];
    s += c * p.src_strides[k];
    d += c * p.dst_strides[k];
  }
  dst[d] = src[s];
}

// fill_f32: b[off + i] = value for i < n (the offset is the binding's). One
// thread per element, groups of 256.
struct FillParams {
  uint n;
  float value;
};

kernel void fill_f32(device float* b [[buffer(0)]],
                     constant FillParams& p [[buffer(1)]],
                     uint i [[thread_position_in_grid]]) {
  if (i < p.n) {
    b[i] = p.value;
  }
}
