// Activations and their gradients, float32, one thread per element: GELU (erf
// and tanh forms) and SiLU, and SwiGLU, silu(gate)·up.

// ACT_OP: 0 GELU (erf form), 1 GELU (tanh approximation), 2 SiLU (metal.ActivationOp).
constant uint ACT_OP [[function_constant(0)]];

struct ActParams {
  uint n;
};

constant float GELU_TANH_K = 0.7978845608028654f;  // √(2/π)
constant float GELU_TANH_C = 0.044715f;
constant float INV_SQRT_2PI = 0.3989422804014327f;  // 1/√(2π)

inline float sigmoid_f32(float x) {
  return 1.0f / (1.0f + exp(-x));
}

inline float act_value(float x) {
  switch (ACT_OP) {
    case 0:
      return 0.5f * x * (1.0f + erf_f32(x * M_SQRT1_2_F));
    case 1:
      return 0.5f * x * (1.0f + tanh(GELU_TANH_K * (x + GELU_TANH_C * x * x * x)));
    default:
      return x * sigmoid_f32(x);
  }
}

// act_deriv is f'(x).
inline float act_deriv(float x) {
  switch (ACT_OP) {
    case 0:
      return 0.5f * (1.0f + erf_f32(x * M_SQRT1_2_F)) + x * INV_SQRT_2PI * exp(-0.5f * x * x);
    case 1: {
      float t = tanh(GELU_TANH_K * (x + GELU_TANH_C * x * x * x));
      // 1 − t² as (1 − t)(1 + t): no cancellation where |t| is near 1
      return 0.5f * (1.0f + t) + 0.5f * x * ((1.0f - t) * (1.0f + t)) * GELU_TANH_K * (1.0f + 3.0f * GELU_TANH_C * x * x);
    }
    default: {
      float s = sigmoid_f32(x);
      return s * (1.0f + x * (1.0f - s));
    }
  }
}

// act_fwd_f32: out[i] = f(x[i]).
kernel void act_fwd_f32(device float* out [[buffer(0)]],
                        const device float* x [[buffer(1)]],
                        constant ActParams& p [[buffer(2)]],
                        uint i [[thread_position_in_grid]]) {
  if (i >= p.n) {
    return;
  }
  out[i] = act_value(x[i]);
}

// act_bwd_f32: dx[i] = g[i]·f'(x[i]).
kernel void act_bwd_f32(device float* dx [[buffer(0)]],
                        const device float* g [[buffer(1)]],
                        const device float* x [[buffer(2)]],
                        constant ActParams& p [[buffer(3)]],
                        uint i [[thread_position_in_grid]]) {
  if (i >= p.n) {
    return;
  }
  dx[i] = g[i] * act_deriv(x[i]);
}

// swiglu_fwd_f32: out[i] = silu(gate[i])·up[i].
kernel void swiglu_fwd_f32(device float* out [[buffer(0)]],
                           const device float* gate [[buffer(1)]],
                           const device float* up [[buffer(2)]],
                           constant ActParams& p [[buffer(3)]],
                           uint i [[thread_position_in_grid]]) {
  if (i >= p.n) {
    return;
  }
  float a = gate[i];
  out[i] = a * sigmoid_f32(a) * up[i];
}

// swiglu_bwd_f32: dgate = g·up·silu'(gate), dup = g·silu(gate).
kernel void swiglu_bwd_f32(device float* dgate [[buffer(0)]],
                           device float* dup [[buffer(1)]],
                           const device float* g [[buffer(2)]],
                           const device float* gate [[buffer(3)]],
                           const device float* up [[buffer(4)]],
                           constant ActParams& p [[buffer(5)]],
                           uint i [[thread_position_in_grid]]) {
  if (i >= p.n) {
    return;
  }
  float a = gate[i];
  float s = sigmoid_f32(a);
  float gi = g[i];
  dgate[i] = gi * up[i] * (s * (1.0f + a * (1.0f - s)));
  dup[i] = gi * a * s;
}
