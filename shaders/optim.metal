// Optimizer updates, float32, one thread per parameter element.

struct AdamWParams {
  uint n;
  float step_size;  // lr / bc1, with bc1 = 1 − β1ᵗ
  float beta1;
  float one_minus_beta1;
  float beta2;
  float one_minus_beta2;
  float eps;
  float rbc2;   // 1/√bc2, with bc2 = 1 − β2ᵗ
  float decay;  // 1 − lr·wd
};

// adamw_f32: one AdamW step in place, as optim.AdamWKernel:
//   m ← β1·m + (1−β1)·g
//   v ← β2·v + (1−β2)·g²
//   p ← p·(1 − lr·wd) − (lr/bc1)·m / (√v/√bc2 + eps)
kernel void adamw_f32(device float* param [[buffer(0)]],
                      const device float* grad [[buffer(1)]],
                      device float* m [[buffer(2)]],
                      device float* v [[buffer(3)]],
                      constant AdamWParams& p [[buffer(4)]],
                      uint i [[thread_position_in_grid]]) {
  if (i >= p.n) {
    return;
  }
  float g = grad[i];
  float mi = p.beta1 * m[i] + p.one_minus_beta1 * g;
  float vi = p.beta2 * v[i] + (p.one_minus_beta2 * g) * g;
  m[i] = mi;
  v[i] = vi;
  float den = sqrt(vi) * p.rbc2 + p.eps;
  param[i] = param[i] * p.decay - (p.step_size * mi) / den;
}
