// Rotary position embeddings, float32, forward and backward (the rotation by the
// opposite angle). Pair i (0 ≤ i < R/2) of the token at position pos turns by
// pos·freq[i]: (a, b) ↦ (a·cos − b·sin, a·sin + b·cos), where the pair is
// (x[i], x[i + R/2]) (half-split, rotate_half) or (x[2i], x[2i+1]) (interleaved).
// Dims from R to the head dim pass through.
//
// The frequencies (base^(−2i/R) times the position scale) come from the host,
// computed in double precision and split in two floats hi + lo; the angle is
// formed as pos·hi exactly (an fma recovers the rounding error of the product)
// plus the small corrections, so that it is accurate to float rounding at any
// position, not only near 0: a plain float product would be off by up to
// pos·2⁻²⁴ radians, 2e-4 at position 4096.

// ROPE_INTERLEAVED: pairs (x[2i], x[2i+1]) instead of (x[i], x[i + R/2]).
constant bool ROPE_INTERLEAVED [[function_constant(0)]];

struct RopeParams {
  uint tokens;   // batch·seq·heads rows of head_dim elements
  uint seq;
  uint heads;
  uint dim;      // head dim
  uint rotated;  // R, even, ≤ dim
  uint offset;   // position of the first token
  uint seq_major_heads;  // 1: BSHD (row u = (b·seq + s)·heads + h); 0: BHSD (u = (b·heads + h)·seq + s)
  float sign;    // 1 forward, −1 backward
  float freq[256];  // freq[2i] = hi, freq[2i+1] = lo of pair i's frequency
};

// rope_f32: one thread per rotated pair or passed-through element of each row:
// W = R/2 + (dim − R) threads per row.
kernel void rope_f32(device float* out [[buffer(0)]],
                     const device float* x [[buffer(1)]],
                     constant RopeParams& p [[buffer(2)]],
                     uint gid [[thread_position_in_grid]]) {
  uint half_r = p.rotated / 2;
  uint w = half_r + (p.dim - p.rotated);
  if (gid >= p.tokens * w) {
    return;
  }
  uint u = gid / w;
  uint k = gid % w;
  uint base = u * p.dim;
  if (k >= half_r) {
    uint j = p.rotated + (k - half_r);
    out[base + j] = x[base + j];
    return;
  }
  uint s = p.seq_major_heads != 0 ? (u / p.heads) % p.seq : u % p.seq;
  float pos = float(p.offset + s);
  float hi = p.freq[2 * k];
  float lo = p.freq[2 * k + 1];
  float a = pos * hi;
  float corr = fma(pos, hi, -a) + pos * lo;
  float ca = cos(a);
  float sa = sin(a);
  // cos and sin of a + corr; |corr| ≤ ulp(a) stays small, but at positions near
  // 10⁵ its square is not negligible, so cos(corr) keeps its second-order term.
  float cc = 1.0f - 0.5f * corr * corr;
  float c = ca * cc - corr * sa;
  float sn = (sa * cc + corr * ca) * p.sign;
  uint i0 = ROPE_INTERLEAVED ? 2 * k : k;
  uint i1 = ROPE_INTERLEAVED ? 2 * k + 1 : k + half_r;
  float x0 = x[base + i0];
  float x1 = x[base + i1];
  out[base + i0] = x0 * c - x1 * sn;
  out[base + i1] = x0 * sn + x1 * c;
}
