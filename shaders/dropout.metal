// Inverted dropout, float32, with the mask drawn on the device from the same
// Philox4x32-10 stream as the CPU's (autodiff.RNG): element i is kept when word
// off + i of stream kind 0 is at least the threshold (p·2³²), and then scaled by
// 1/(1 − p). Word w of the stream is lane w mod 4 of the Philox block at counter
// (w/4 mod 2³², w/4 ≫ 32, 0, 0) under the key (seed mod 2³², seed ≫ 32). The
// backward pass is the same kernel on the gradient: the mask is drawn again,
// never stored.

constant uint PHILOX_M0 = 0xD2511F53u;
constant uint PHILOX_M1 = 0xCD9E8D57u;
constant uint PHILOX_W0 = 0x9E3779B9u;
constant uint PHILOX_W1 = 0xBB67AE85u;

struct DropoutParams {
  uint n;
  uint off_lo;     // the stream position of element 0, split in 32-bit halves
  uint off_hi;
  uint seed_lo;
  uint seed_hi;
  uint threshold;  // keep when the word is ≥ threshold
  float scale;     // 1/(1 − p)
};

// philox_word returns word (lo, hi) of stream 0 under the key (k0, k1).
inline uint philox_word(uint lo, uint hi, uint k0, uint k1) {
  uint c0 = (lo >> 2) | (hi << 30);
  uint c1 = hi >> 2;
  uint c2 = 0u;
  uint c3 = 0u;
  for (uint round = 0; round < 10; round++) {
    if (round > 0) {
      k0 += PHILOX_W0;
      k1 += PHILOX_W1;
    }
    uint hi0 = mulhi(PHILOX_M0, c0);
    uint lo0 = PHILOX_M0 * c0;
    uint hi1 = mulhi(PHILOX_M1, c2);
    uint lo1 = PHILOX_M1 * c2;
    uint n0 = hi1 ^ c1 ^ k0;
    uint n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
  }
  switch (lo & 3u) {
    case 0:
      return c0;
    case 1:
      return c1;
    case 2:
      return c2;
    default:
      return c3;
  }
}

// dropout_f32: out[i] = x[i]·scale where element i is kept, else 0.
kernel void dropout_f32(device float* out [[buffer(0)]],
                        const device float* x [[buffer(1)]],
                        constant DropoutParams& p [[buffer(2)]],
                        uint i [[thread_position_in_grid]]) {
  if (i >= p.n) {
    return;
  }
  uint lo = p.off_lo + i;
  uint hi = p.off_hi + (lo < i ? 1u : 0u);  // the carry of the 64-bit add
  uint w = philox_word(lo, hi, p.seed_lo, p.seed_hi);
  out[i] = w >= p.threshold ? x[i] * p.scale : 0.0f;
}
