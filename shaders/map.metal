// Elementwise functions of one tensor with up to two scalar parameters p and q,
// float32, one thread per element, forward and backward. MAP_OP numbers them as
// autodiff.UnaryKind does (metal.MapOp): 0 neg, 1 exp, 2 log, 3 sqrt, 4 rsqrt,
// 5 abs, 6 tanh, 7 sigmoid, 8 relu, 9 GELU (erf), 10 GELU (tanh), 11 SiLU,
// 12 softplus (linear above p), 13 xᵖ (map_pow: MSL's pow is undefined for
// x < 0, so the sign and the special cases are handled first), 14 clamp to [p, q], 15 x + p, 16 x·p. NaN inputs give NaN outputs, as
// the CPU kernels do (hence the comparisons instead of fmax/fmin).
constant uint MAP_OP [[function_constant(0)]];

struct MapParams {
  uint n;
  float p;
  float q;
};

constant float MAP_GELU_K = 0.7978845608028654f;     // √(2/π)
constant float MAP_GELU_C = 0.044715f;
constant float MAP_INV_SQRT_2PI = 0.3989422804014327f;  // 1/√(2π)

inline float map_sigmoid(float x) {
  if (x >= 0.0f) {
    return 1.0f / (1.0f + exp(-x));
  }
  float e = exp(x);
  return e / (1.0f + e);
}

// map_pow is xᵖ with the special cases of Go's math.Pow: x⁰ = 1 (NaN too); a
// negative base takes an integer power only (the sign from its parity; else NaN,
// but −∞ is taken as −0 to the power −p);
// 0 to a negative power is ±∞.
inline float map_pow(float x, float p) {
  if (p == 0.0f) {
    return 1.0f;
  }
  if (isnan(x) || isnan(p)) {
    return NAN;
  }
  bool integer = floor(p) == p;
  bool odd = integer && fmod(fabs(p), 2.0f) == 1.0f;
  if (x == 0.0f) {
    float m = p > 0.0f ? 0.0f : INFINITY;
    return odd ? copysign(m, x) : m;
  }
  if (x < 0.0f) {
    if (!integer) {
      // −∞ as −0 to the power −p; any other negative base: NaN
      return x == -INFINITY ? (p > 0.0f ? INFINITY : 0.0f) : NAN;
    }
    float r = pow(-x, p);
    return odd ? -r : r;
  }
  return pow(x, p);
}

inline float map_value(float x, float p, float q) {
  switch (MAP_OP) {
    case 0:
      return -x;
    case 1:
      return exp(x);
    case 2:
      return log(x);
    case 3:
      return sqrt(x);
    case 4:
      return rsqrt(x);
    case 5:
      return fabs(x);
    case 6:
      return tanh(x);
    case 7:
      return map_sigmoid(x);
    case 8:
      return x <= 0.0f ? 0.0f : x;
    case 9:
      return 0.5f * x * (1.0f + erf_f32(x * M_SQRT1_2_F));
    case 10:
      return 0.5f * x * (1.0f + tanh(MAP_GELU_K * (x + MAP_GELU_C * x * x * x)));
    case 11:
      return x * map_sigmoid(x);
    case 12:
      if (x > p) {
        return x;
      }
      // ln(1 + e^x); below −15, e^x itself (1 + e^x rounds to 1 there)
      return x < -15.0f ? exp(x) : log(1.0f + exp(x));
    case 13:
      return map_pow(x, p);
    case 14: {
      float t = x < p ? p : x;
      return t > q ? q : t;
    }
    case 15:
      return x + p;
    default:
      return x * p;
  }
}

// map_deriv is f'(x) given x and y = f(x).
inline float map_deriv(float x, float y, float p, float q) {
  switch (MAP_OP) {
    case 0:
      return -1.0f;
    case 1:
      return y;
    case 2:
      return 1.0f / x;
    case 3:
      return 0.5f / y;
    case 4:
      return -0.5f * y / x;
    case 5:
      return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);
    case 6:
      return 1.0f - y * y;
    case 7:
      return y * (1.0f - y);
    case 8:
      return x > 0.0f ? 1.0f : 0.0f;
    case 9:
      return 0.5f * (1.0f + erf_f32(x * M_SQRT1_2_F)) + x * MAP_INV_SQRT_2PI * exp(-0.5f * x * x);
    case 10: {
      float t = tanh(MAP_GELU_K * (x + MAP_GELU_C * x * x * x));
      return 0.5f * (1.0f + t) + 0.5f * x * ((1.0f - t) * (1.0f + t)) * MAP_GELU_K * (1.0f + 3.0f * MAP_GELU_C * x * x);
    }
    case 11: {
      float s = map_sigmoid(x);
      return s * (1.0f + x * (1.0f - s));
    }
    case 12:
      return x > p ? 1.0f : map_sigmoid(x);
    case 13:
      return p == 0.0f ? 0.0f : p * map_pow(x, p - 1.0f);
    case 14:
      return (x > p && x < q) ? 1.0f : 0.0f;
    case 15:
      return 1.0f;
    default:
      return p;
  }
}

// map_f32: out[i] = f(x[i]).
kernel void map_f32(device float* out [[buffer(0)]],
                    const device float* x [[buffer(1)]],
                    constant MapParams& p [[buffer(2)]],
                    uint i [[thread_position_in_grid]]) {
  if (i >= p.n) {
    return;
  }
  out[i] = map_value(x[i], p.p, p.q);
}

// map_bwd_f32: dx[i] = g[i]·f'(x[i]), y = f(x) the forward's output.
kernel void map_bwd_f32(device float* dx [[buffer(0)]],
                        const device float* g [[buffer(1)]],
                        const device float* x [[buffer(2)]],
                        const device float* y [[buffer(3)]],
                        constant MapParams& p [[buffer(4)]],
                        uint i [[thread_position_in_grid]]) {
  if (i >= p.n) {
    return;
  }
  dx[i] = g[i] * map_deriv(x[i], y[i], p.p, p.q);
}
