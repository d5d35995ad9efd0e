// Embedding lookup and its gradient, float32.
//
// The gradient is a scatter-add of the output gradient rows into the table rows
// their ids name. To be race-free without float atomics (whose order, and so
// whose rounding, would change from run to run) the tokens are first sorted by
// id, stably, on the host (a counting sort: metal.RunEmbeddingBackward): the
// tokens of vocabulary row v are order[starts[v] .. starts[v+1]), in token order.
// Each table element then has one thread that adds its contributions in token
// order, so the result is the same on every run and equals a sequential sum.

// EMB_ACCUMULATE: add to the table gradient (bound read-write) instead of
// overwriting it.
constant bool EMB_ACCUMULATE [[function_constant(0)]];

struct EmbeddingParams {
  uint tokens;
  uint vocab;
  uint dim;
};

// embed_gather_f32: out[i, :] = table[ids[i], :]. Grid: ceil(dim/threads) × tokens.
// An id outside [0, vocab) gives a row of NaN (callers check ids first).
kernel void embed_gather_f32(device float* out [[buffer(0)]],
                             const device float* table [[buffer(1)]],
                             const device int* ids [[buffer(2)]],
                             constant EmbeddingParams& p [[buffer(3)]],
                             uint2 gid [[thread_position_in_grid]]) {
  uint c = gid.x;
  uint i = gid.y;
  if (c >= p.dim || i >= p.tokens) {
    return;
  }
  int id = ids[i];
  out[i * p.dim + c] = (id >= 0 && uint(id) < p.vocab) ? table[uint(id) * p.dim + c] : NAN;
}

// embed_scatter_f32: dtable[v, c] (+)= Σ dout[order[k], c] for k in
// [starts[v], starts[v+1]), in that order. Grid: ceil(dim/threads) × vocab.
kernel void embed_scatter_f32(device float* dtable [[buffer(0)]],
                              const device float* dout [[buffer(1)]],
                              const device int* order [[buffer(2)]],
                              const device int* starts [[buffer(3)]],
                              constant EmbeddingParams& p [[buffer(4)]],
                              uint2 gid [[thread_position_in_grid]]) {
  uint c = gid.x;
  uint v = gid.y;
  if (c >= p.dim || v >= p.vocab) {
    return;
  }
  uint at = v * p.dim + c;
  float acc = EMB_ACCUMULATE ? dtable[at] : 0.0f;
  int k1 = starts[v + 1];
  for (int k = starts[v]; k < k1; k++) {
    acc += dout[uint(order[k]) * p.dim + c];
  }
  dtable[at] = acc;
}
