// msl_shim.h: the Metal Shading Language as C++20, for mlxtrain's shader simulator.
//
// Every .metal file of the project is compiled by clang (>= 16) with this header
// standing in for <metal_stdlib>. The simulator's Go source pass has already
// rewritten what a macro cannot express:
//   - `threadgroup T name[...];` declarations become `static` plus a call that
//     poisons the memory at the first lane of each threadgroup to reach them,
//   - the `threadgroup` qualifier on pointers and references is dropped,
//   - `constant T name [[function_constant(i)]];` becomes a global the launcher sets.
// Everything else is here: address spaces, attribute names (mapped to
// clang::annotate so -Werror=unknown-attributes rejects misspelt ones), scalar and
// vector types, math, barriers, SIMD-group functions and simdgroup_matrix.
//
// Only functions that Metal also has are declared: a shader that compiles here
// but not on a Mac is a bug in this file. Notable absences: erf (Metal has none),
// vector constructors and casts (write helpers), bfloat vectors, the origin and
// transpose arguments of simdgroup_load/store, thread_elements().
#pragma once
#include <stddef.h>
#include <stdint.h>

// ---- address spaces and function qualifiers --------------------------------------
#define device
#define constant const
#define thread
#define kernel

// ---- attributes -----------------------------------------------------------------
#define buffer(n) clang::annotate("msl.buffer", n)
#define threadgroup(n) clang::annotate("msl.threadgroup", n)
#define function_constant(n) clang::annotate("msl.function_constant", n)
#define host_name(n) clang::annotate("msl.host_name", n)
#define max_total_threads_per_threadgroup(n) clang::annotate("msl.max_total_threads_per_threadgroup", n)
#define thread_position_in_grid clang::annotate("msl.thread_position_in_grid")
#define thread_position_in_threadgroup clang::annotate("msl.thread_position_in_threadgroup")
#define threadgroup_position_in_grid clang::annotate("msl.threadgroup_position_in_grid")
#define threads_per_threadgroup clang::annotate("msl.threads_per_threadgroup")
#define threadgroups_per_grid clang::annotate("msl.threadgroups_per_grid")
#define threads_per_grid clang::annotate("msl.threads_per_grid")
#define thread_index_in_threadgroup clang::annotate("msl.thread_index_in_threadgroup")
#define thread_index_in_simdgroup clang::annotate("msl.thread_index_in_simdgroup")
#define simdgroup_index_in_threadgroup clang::annotate("msl.simdgroup_index_in_threadgroup")
#define threads_per_simdgroup clang::annotate("msl.threads_per_simdgroup")
#define simdgroups_per_threadgroup clang::annotate("msl.simdgroups_per_threadgroup")

// ---- scalar and vector types ----------------------------------------------------
typedef unsigned int uint;
typedef unsigned short ushort;
typedef unsigned char uchar;
typedef unsigned long ulong;
typedef _Float16 half;

// bfloat: storage only in clang 16 on x86, so a class whose arithmetic goes through
// float (Metal rounds each bfloat operation; here only stores round).
struct bfloat {
  unsigned short bits;
  bfloat() = default;
  bfloat(float f) {
    unsigned u;
    __builtin_memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
      bits = (unsigned short)((u >> 16) | 0x40u);
    } else {
      u += 0x7fffu + ((u >> 16) & 1u);
      bits = (unsigned short)(u >> 16);
    }
  }
  operator float() const {
    unsigned u = (unsigned)bits << 16;
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
  }
  bfloat& operator+=(float x) { return *this = bfloat(float(*this) + x); }
  bfloat& operator-=(float x) { return *this = bfloat(float(*this) - x); }
  bfloat& operator*=(float x) { return *this = bfloat(float(*this) * x); }
  bfloat& operator/=(float x) { return *this = bfloat(float(*this) / x); }
};
static_assert(sizeof(bfloat) == 2, "bfloat is two bytes");

#define MSL_VECTORS(T)                                         \
  typedef T T##2 __attribute__((ext_vector_type(2)));          \
  typedef T T##3 __attribute__((ext_vector_type(3)));          \
  typedef T T##4 __attribute__((ext_vector_type(4)));
MSL_VECTORS(float)
MSL_VECTORS(half)
MSL_VECTORS(int)
MSL_VECTORS(uint)
MSL_VECTORS(short)
MSL_VECTORS(ushort)
MSL_VECTORS(char)
MSL_VECTORS(uchar)
#undef MSL_VECTORS

// ---- limits and constants ------------------------------------------------------
#define MAXFLOAT 0x1.fffffep+127f
#define FLT_MAX 0x1.fffffep+127f
#define FLT_MIN 0x1p-126f
#define FLT_EPSILON 0x1p-23f
#define HUGE_VALF __builtin_huge_valf()
#define INFINITY __builtin_inff()
#define NAN __builtin_nanf("")
#define HALF_MAX ((half)65504.0f)
#define HALF_MIN ((half)0x1p-14f)
#define HALF_EPSILON ((half)0x1p-10f)
#define INT_MAX 2147483647
#define INT_MIN (-2147483647 - 1)
#define UINT_MAX 4294967295u
#define M_E_F 2.71828182845904523536f
#define M_LOG2E_F 1.44269504088896340736f
#define M_LOG10E_F 0.434294481903251827651f
#define M_LN2_F 0.693147180559945309417f
#define M_LN10_F 2.30258509299404568402f
#define M_PI_F 3.14159265358979323846f
#define M_PI_2_F 1.57079632679489661923f
#define M_PI_4_F 0.785398163397448309616f
#define M_1_PI_F 0.318309886183790671538f
#define M_2_PI_F 0.636619772367581343076f
#define M_2_SQRTPI_F 1.12837916709551257390f
#define M_SQRT2_F 1.41421356237309504880f
#define M_SQRT1_2_F 0.707106781186547524401f

// ---- the simulator's runtime (msl_runtime.cpp) ----------------------------------
namespace mlxsim {
struct SimdSlot {
  int active;    // this lane takes part in the operation
  int pad;
  void* obj;     // the lane's object (a simdgroup_matrix), if any
  long arg;      // a per-lane argument (a source lane, a delta)
  unsigned char in[32];
  unsigned char out[32];
};
// A SIMD-group operation: reads every active lane's input and writes their outputs.
// It returns nullptr, or a message that fails the launch.
typedef const char* (*Combine)(SimdSlot* slots, int width);
void tg_barrier(const char* file, int line);
void sg_barrier(const char* file, int line);
void simd_op(Combine f, const char* file, int line, const void* in, unsigned size, long arg, void* obj, void* out);
void tg_declare(void* p, unsigned long size, const char* file, int line);

template <class T> inline T load_slot(const unsigned char* p) { T v; __builtin_memcpy(&v, p, sizeof(T)); return v; }
template <class T> inline void store_slot(unsigned char* p, T v) { __builtin_memcpy(p, &v, sizeof(T)); }
inline void poison(void* p, unsigned long n) { __builtin_memset(p, 0xff, n); }
}  // namespace mlxsim

namespace metal {

// vector traits, so templates below apply to vectors only
template <class V> struct vec_traits {};
#define MSL_VT(T)                                                    \
  template <> struct vec_traits<T##2> { typedef T elem; static const int n = 2; }; \
  template <> struct vec_traits<T##3> { typedef T elem; static const int n = 3; }; \
  template <> struct vec_traits<T##4> { typedef T elem; static const int n = 4; };
MSL_VT(float)
MSL_VT(half)
MSL_VT(int)
MSL_VT(uint)
MSL_VT(short)
MSL_VT(ushort)
MSL_VT(char)
MSL_VT(uchar)
#undef MSL_VT
template <class V> concept vector_type = requires { vec_traits<V>::n; };

// ---- math -----------------------------------------------------------------------
#define MSL_UNARY(name, expr)                                                          \
  inline float name(float x) { return expr; }                                          \
  inline half name(half hx) { float x = (float)hx; return (half)(expr); }              \
  template <vector_type V> inline V name(V v) {                                        \
    V r;                                                                               \
    for (int i = 0; i < vec_traits<V>::n; i++) r[i] = name((typename vec_traits<V>::elem)v[i]); \
    return r;                                                                          \
  }
MSL_UNARY(exp, __builtin_expf(x))
MSL_UNARY(exp2, __builtin_exp2f(x))
MSL_UNARY(exp10, __builtin_powf(10.0f, x))
MSL_UNARY(log, __builtin_logf(x))
MSL_UNARY(log2, __builtin_log2f(x))
MSL_UNARY(log10, __builtin_log10f(x))
MSL_UNARY(sqrt, __builtin_sqrtf(x))
MSL_UNARY(rsqrt, 1.0f / __builtin_sqrtf(x))
MSL_UNARY(sin, __builtin_sinf(x))
MSL_UNARY(cos, __builtin_cosf(x))
MSL_UNARY(tan, __builtin_tanf(x))
MSL_UNARY(asin, __builtin_asinf(x))
MSL_UNARY(acos, __builtin_acosf(x))
MSL_UNARY(atan, __builtin_atanf(x))
MSL_UNARY(sinh, __builtin_sinhf(x))
MSL_UNARY(cosh, __builtin_coshf(x))
MSL_UNARY(tanh, __builtin_tanhf(x))
MSL_UNARY(floor, __builtin_floorf(x))
MSL_UNARY(ceil, __builtin_ceilf(x))
MSL_UNARY(round, __builtin_roundf(x))
MSL_UNARY(trunc, __builtin_truncf(x))
MSL_UNARY(rint, __builtin_rintf(x))
MSL_UNARY(fabs, __builtin_fabsf(x))
MSL_UNARY(fract, __builtin_fminf(x - __builtin_floorf(x), 0x1.fffffep-1f))
MSL_UNARY(sign, (x > 0.0f ? 1.0f : x < 0.0f ? -1.0f : x == x ? 0.0f * x : x))
MSL_UNARY(saturate, __builtin_fminf(__builtin_fmaxf(x, 0.0f), 1.0f))
#undef MSL_UNARY

inline float abs(float x) { return __builtin_fabsf(x); }
inline half abs(half x) { return (half)__builtin_fabsf((float)x); }
inline int abs(int x) { return x < 0 ? -x : x; }
inline uint abs(uint x) { return x; }
template <vector_type V> inline V abs(V v) {
  V r;
  for (int i = 0; i < vec_traits<V>::n; i++) r[i] = abs((typename vec_traits<V>::elem)v[i]);
  return r;
}

#define MSL_BINARY_F(name, expr)                                                      \
  inline float name(float x, float y) { return expr; }                                \
  inline half name(half hx, half hy) { float x = (float)hx, y = (float)hy; return (half)(expr); } \
  template <vector_type V> inline V name(V a, V b) {                                  \
    V r;                                                                              \
    for (int i = 0; i < vec_traits<V>::n; i++)                                        \
      r[i] = name((typename vec_traits<V>::elem)a[i], (typename vec_traits<V>::elem)b[i]); \
    return r;                                                                         \
  }
MSL_BINARY_F(pow, __builtin_powf(x, y))
MSL_BINARY_F(powr, __builtin_powf(x, y))
MSL_BINARY_F(fmod, __builtin_fmodf(x, y))
MSL_BINARY_F(fmin, __builtin_fminf(x, y))
MSL_BINARY_F(fmax, __builtin_fmaxf(x, y))
MSL_BINARY_F(atan2, __builtin_atan2f(x, y))
MSL_BINARY_F(copysign, __builtin_copysignf(x, y))
MSL_BINARY_F(step, (y < x ? 0.0f : 1.0f))
#undef MSL_BINARY_F

inline float min(float x, float y) { return __builtin_fminf(x, y); }
inline float max(float x, float y) { return __builtin_fmaxf(x, y); }
inline half min(half x, half y) { return (half)__builtin_fminf((float)x, (float)y); }
inline half max(half x, half y) { return (half)__builtin_fmaxf((float)x, (float)y); }
inline int min(int x, int y) { return x < y ? x : y; }
inline int max(int x, int y) { return x > y ? x : y; }
inline uint min(uint x, uint y) { return x < y ? x : y; }
inline uint max(uint x, uint y) { return x > y ? x : y; }
inline short min(short x, short y) { return x < y ? x : y; }
inline short max(short x, short y) { return x > y ? x : y; }
inline ushort min(ushort x, ushort y) { return x < y ? x : y; }
inline ushort max(ushort x, ushort y) { return x > y ? x : y; }
template <vector_type V> inline V min(V a, V b) {
  V r;
  for (int i = 0; i < vec_traits<V>::n; i++) r[i] = min((typename vec_traits<V>::elem)a[i], (typename vec_traits<V>::elem)b[i]);
  return r;
}
template <vector_type V> inline V max(V a, V b) {
  V r;
  for (int i = 0; i < vec_traits<V>::n; i++) r[i] = max((typename vec_traits<V>::elem)a[i], (typename vec_traits<V>::elem)b[i]);
  return r;
}
template <class T> inline T clamp(T x, T lo, T hi) { return min(max(x, lo), hi); }
inline float fma(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
inline half fma(half a, half b, half c) { return (half)__builtin_fmaf((float)a, (float)b, (float)c); }
template <vector_type V> inline V fma(V a, V b, V c) {
  V r;
  for (int i = 0; i < vec_traits<V>::n; i++) r[i] = fma((typename vec_traits<V>::elem)a[i], (typename vec_traits<V>::elem)b[i], (typename vec_traits<V>::elem)c[i]);
  return r;
}
inline float mix(float a, float b, float t) { return a + (b - a) * t; }
inline half mix(half a, half b, half t) { return a + (b - a) * t; }
template <vector_type V> inline V mix(V a, V b, V t) { return a + (b - a) * t; }
inline float smoothstep(float e0, float e1, float x) {
  float t = clamp((x - e0) / (e1 - e0), 0.0f, 1.0f);
  return t * t * (3.0f - 2.0f * t);
}
template <class T> inline T select(T a, T b, bool c) { return c ? b : a; }

inline bool isnan(float x) { return x != x; }
inline bool isnan(half x) { return x != x; }
inline bool isinf(float x) { return __builtin_isinf(x); }
inline bool isinf(half x) { return __builtin_isinf((float)x); }
inline bool isfinite(float x) { return __builtin_isfinite(x); }
inline bool isfinite(half x) { return __builtin_isfinite((float)x); }
inline bool signbit(float x) { return __builtin_signbit(x); }

template <vector_type V> inline typename vec_traits<V>::elem dot(V a, V b) {
  typename vec_traits<V>::elem s = 0;
  for (int i = 0; i < vec_traits<V>::n; i++) s += a[i] * b[i];
  return s;
}
template <vector_type V> inline typename vec_traits<V>::elem length(V a) { return sqrt(dot(a, a)); }
template <vector_type V> inline V normalize(V a) { return a * rsqrt(dot(a, a)); }

inline uint popcount(uint x) { return (uint)__builtin_popcount(x); }
inline uint clz(uint x) { return x == 0 ? 32u : (uint)__builtin_clz(x); }
inline uint ctz(uint x) { return x == 0 ? 32u : (uint)__builtin_ctz(x); }
inline uint mulhi(uint a, uint b) { return (uint)(((unsigned long)a * b) >> 32); }

template <class T, class U> inline T as_type(U u) {
  static_assert(sizeof(T) == sizeof(U), "as_type needs types of one size");
  T t;
  __builtin_memcpy(&t, &u, sizeof(T));
  return t;
}

namespace precise {
using metal::exp; using metal::exp2; using metal::exp10; using metal::log; using metal::log2;
using metal::log10; using metal::sqrt; using metal::rsqrt; using metal::sin; using metal::cos;
using metal::tan; using metal::tanh; using metal::pow; using metal::powr; using metal::fmax;
using metal::fmin; using metal::max; using metal::min; using metal::abs; using metal::fabs;
using metal::sinh; using metal::cosh; using metal::atan; using metal::atan2; using metal::floor;
using metal::ceil; using metal::round; using metal::trunc;
}  // namespace precise
namespace fast {
using namespace metal::precise;
}

template <class T> struct numeric_limits {};
template <> struct numeric_limits<float> {
  static constexpr float max() { return FLT_MAX; }
  static constexpr float min() { return FLT_MIN; }
  static constexpr float lowest() { return -FLT_MAX; }
  static constexpr float epsilon() { return FLT_EPSILON; }
  static constexpr float infinity() { return __builtin_inff(); }
  static constexpr float quiet_NaN() { return __builtin_nanf(""); }
};
template <> struct numeric_limits<half> {
  static constexpr half max() { return (half)65504.0f; }
  static constexpr half lowest() { return (half)-65504.0f; }
  static constexpr half infinity() { return (half)__builtin_inff(); }
};
template <> struct numeric_limits<int> {
  static constexpr int max() { return INT_MAX; }
  static constexpr int min() { return INT_MIN; }
  static constexpr int lowest() { return INT_MIN; }
};
template <> struct numeric_limits<uint> {
  static constexpr uint max() { return UINT_MAX; }
  static constexpr uint min() { return 0; }
  static constexpr uint lowest() { return 0; }
};

// ---- barriers -------------------------------------------------------------------
enum class mem_flags : unsigned { mem_none = 0, mem_device = 1, mem_threadgroup = 2, mem_texture = 4 };
inline mem_flags operator|(mem_flags a, mem_flags b) { return (mem_flags)((unsigned)a | (unsigned)b); }
inline void threadgroup_barrier(mem_flags, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  mlxsim::tg_barrier(file, line);
}
inline void simdgroup_barrier(mem_flags, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  mlxsim::sg_barrier(file, line);
}

// ---- SIMD-group functions ---------------------------------------------------------
// Each is a meeting point: the lane posts its value and waits until every lane of
// its SIMD group is blocked; the lanes waiting at the same call (file and line) are
// the active ones and get their results together, in lane order.
namespace simd_detail {
using mlxsim::SimdSlot;
using mlxsim::load_slot;
using mlxsim::store_slot;
template <class T> inline T zero() { T z{}; return z; }
template <class T> const char* sum(SimdSlot* s, int w) {
  T acc = zero<T>();
  for (int i = 0; i < w; i++) if (s[i].active) acc += load_slot<T>(s[i].in);
  for (int i = 0; i < w; i++) if (s[i].active) store_slot<T>(s[i].out, acc);
  return nullptr;
}
template <class T> const char* product(SimdSlot* s, int w) {
  T acc = zero<T>();
  bool first = true;
  for (int i = 0; i < w; i++) if (s[i].active) { T v = load_slot<T>(s[i].in); acc = first ? v : acc * v; first = false; }
  for (int i = 0; i < w; i++) if (s[i].active) store_slot<T>(s[i].out, acc);
  return nullptr;
}
template <class T> const char* maximum(SimdSlot* s, int w) {
  T acc = zero<T>();
  bool first = true;
  for (int i = 0; i < w; i++) if (s[i].active) { T v = load_slot<T>(s[i].in); acc = first ? v : metal::max(acc, v); first = false; }
  for (int i = 0; i < w; i++) if (s[i].active) store_slot<T>(s[i].out, acc);
  return nullptr;
}
template <class T> const char* minimum(SimdSlot* s, int w) {
  T acc = zero<T>();
  bool first = true;
  for (int i = 0; i < w; i++) if (s[i].active) { T v = load_slot<T>(s[i].in); acc = first ? v : metal::min(acc, v); first = false; }
  for (int i = 0; i < w; i++) if (s[i].active) store_slot<T>(s[i].out, acc);
  return nullptr;
}
template <class T> const char* bit_and(SimdSlot* s, int w) {
  T acc = ~zero<T>();
  for (int i = 0; i < w; i++) if (s[i].active) acc &= load_slot<T>(s[i].in);
  for (int i = 0; i < w; i++) if (s[i].active) store_slot<T>(s[i].out, acc);
  return nullptr;
}
template <class T> const char* bit_or(SimdSlot* s, int w) {
  T acc = zero<T>();
  for (int i = 0; i < w; i++) if (s[i].active) acc |= load_slot<T>(s[i].in);
  for (int i = 0; i < w; i++) if (s[i].active) store_slot<T>(s[i].out, acc);
  return nullptr;
}
template <class T> const char* bit_xor(SimdSlot* s, int w) {
  T acc = zero<T>();
  for (int i = 0; i < w; i++) if (s[i].active) acc ^= load_slot<T>(s[i].in);
  for (int i = 0; i < w; i++) if (s[i].active) store_slot<T>(s[i].out, acc);
  return nullptr;
}
template <class T> const char* prefix_inclusive(SimdSlot* s, int w) {
  T acc = zero<T>();
  for (int i = 0; i < w; i++) if (s[i].active) { acc += load_slot<T>(s[i].in); store_slot<T>(s[i].out, acc); }
  return nullptr;
}
template <class T> const char* prefix_exclusive(SimdSlot* s, int w) {
  T acc = zero<T>();
  for (int i = 0; i < w; i++) if (s[i].active) { store_slot<T>(s[i].out, acc); acc += load_slot<T>(s[i].in); }
  return nullptr;
}
// Reading an inactive or out-of-range lane yields poison (NaN, or all bits set).
template <class T> inline void from_lane(SimdSlot* s, int w, int dst, long src) {
  if (src >= 0 && src < w && s[src].active) {
    __builtin_memcpy(s[dst].out, s[src].in, sizeof(T));
  } else {
    mlxsim::poison(s[dst].out, sizeof(T));
  }
}
template <class T> const char* shuffle(SimdSlot* s, int w) {
  for (int i = 0; i < w; i++) if (s[i].active) from_lane<T>(s, w, i, s[i].arg);
  return nullptr;
}
template <class T> const char* shuffle_xor(SimdSlot* s, int w) {
  for (int i = 0; i < w; i++) if (s[i].active) from_lane<T>(s, w, i, (long)(i ^ (int)s[i].arg));
  return nullptr;
}
template <class T> const char* shuffle_up(SimdSlot* s, int w) {
  for (int i = 0; i < w; i++) if (s[i].active) from_lane<T>(s, w, i, i - s[i].arg >= 0 ? i - s[i].arg : i);
  return nullptr;
}
template <class T> const char* shuffle_down(SimdSlot* s, int w) {
  for (int i = 0; i < w; i++) if (s[i].active) from_lane<T>(s, w, i, i + s[i].arg < w ? i + s[i].arg : i);
  return nullptr;
}
template <class T> const char* shuffle_rotate_down(SimdSlot* s, int w) {
  for (int i = 0; i < w; i++) if (s[i].active) from_lane<T>(s, w, i, (i + s[i].arg) % w);
  return nullptr;
}
template <class T> const char* broadcast_first(SimdSlot* s, int w) {
  int first = 0;
  while (first < w && !s[first].active) first++;
  for (int i = 0; i < w; i++) if (s[i].active) from_lane<T>(s, w, i, first);
  return nullptr;
}
inline const char* is_first(SimdSlot* s, int w) {
  bool seen = false;
  for (int i = 0; i < w; i++) if (s[i].active) { store_slot<bool>(s[i].out, !seen); seen = true; }
  return nullptr;
}
inline const char* all(SimdSlot* s, int w) {
  bool r = true;
  for (int i = 0; i < w; i++) if (s[i].active) r = r && load_slot<bool>(s[i].in);
  for (int i = 0; i < w; i++) if (s[i].active) store_slot<bool>(s[i].out, r);
  return nullptr;
}
inline const char* any(SimdSlot* s, int w) {
  bool r = false;
  for (int i = 0; i < w; i++) if (s[i].active) r = r || load_slot<bool>(s[i].in);
  for (int i = 0; i < w; i++) if (s[i].active) store_slot<bool>(s[i].out, r);
  return nullptr;
}
}  // namespace simd_detail

#define MSL_SIMD_REDUCE(name, comb)                                                       \
  template <class T> inline T name(T x, const char* file = __builtin_FILE(), int line = __builtin_LINE()) { \
    static_assert(sizeof(T) <= 32, "SIMD value too large");                             \
    T r;                                                                                 \
    mlxsim::simd_op(&simd_detail::comb<T>, file, line, &x, sizeof(T), 0, nullptr, &r);  \
    return r;                                                                            \
  }
MSL_SIMD_REDUCE(simd_sum, sum)
MSL_SIMD_REDUCE(simd_product, product)
MSL_SIMD_REDUCE(simd_max, maximum)
MSL_SIMD_REDUCE(simd_min, minimum)
MSL_SIMD_REDUCE(simd_and, bit_and)
MSL_SIMD_REDUCE(simd_or, bit_or)
MSL_SIMD_REDUCE(simd_xor, bit_xor)
MSL_SIMD_REDUCE(simd_prefix_inclusive_sum, prefix_inclusive)
MSL_SIMD_REDUCE(simd_prefix_exclusive_sum, prefix_exclusive)
MSL_SIMD_REDUCE(simd_broadcast_first, broadcast_first)
#undef MSL_SIMD_REDUCE

#define MSL_SIMD_MOVE(name, comb)                                                         \
  template <class T> inline T name(T x, ushort arg, const char* file = __builtin_FILE(), int line = __builtin_LINE()) { \
    static_assert(sizeof(T) <= 32, "SIMD value too large");                             \
    T r;                                                                                 \
    mlxsim::simd_op(&simd_detail::comb<T>, file, line, &x, sizeof(T), (long)arg, nullptr, &r); \
    return r;                                                                            \
  }
MSL_SIMD_MOVE(simd_shuffle, shuffle)
MSL_SIMD_MOVE(simd_broadcast, shuffle)
MSL_SIMD_MOVE(simd_shuffle_xor, shuffle_xor)
MSL_SIMD_MOVE(simd_shuffle_up, shuffle_up)
MSL_SIMD_MOVE(simd_shuffle_down, shuffle_down)
MSL_SIMD_MOVE(simd_shuffle_rotate_down, shuffle_rotate_down)
#undef MSL_SIMD_MOVE

inline bool simd_is_first(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  bool r, x = false;
  mlxsim::simd_op(&simd_detail::is_first, file, line, &x, sizeof x, 0, nullptr, &r);
  return r;
}
inline bool simd_all(bool x, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  bool r;
  mlxsim::simd_op(&simd_detail::all, file, line, &x, sizeof x, 0, nullptr, &r);
  return r;
}
inline bool simd_any(bool x, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  bool r;
  mlxsim::simd_op(&simd_detail::any, file, line, &x, sizeof x, 0, nullptr, &r);
  return r;
}

// ---- simdgroup_matrix -------------------------------------------------------------
// Each lane holds a full copy of the 8x8 matrix. Loads, stores and products are
// SIMD-group meeting points that need all 32 lanes with identical arguments; the
// operation runs once and every lane receives the result, so a copy can never
// drift. A default-constructed matrix is NaN, as uninitialised registers would be.
template <class T, int Rows, int Cols> struct simdgroup_matrix {
  static_assert(Rows == 8 && Cols == 8, "the simulator has 8x8 simdgroup matrices only");
  T d[Rows][Cols];
  simdgroup_matrix() { mlxsim::poison(d, sizeof d); }
};
typedef simdgroup_matrix<float, 8, 8> simdgroup_float8x8;
typedef simdgroup_matrix<half, 8, 8> simdgroup_half8x8;
typedef simdgroup_matrix<bfloat, 8, 8> simdgroup_bfloat8x8;

template <class T, int R, int C> inline simdgroup_matrix<T, R, C> make_filled_simdgroup_matrix(T v) {
  simdgroup_matrix<T, R, C> m;
  for (int i = 0; i < R; i++)
    for (int j = 0; j < C; j++) m.d[i][j] = v;
  return m;
}

namespace sgm_detail {
using mlxsim::SimdSlot;
struct Args { const void* p; ulong stride; const void* q; };
inline const char* check(SimdSlot* s, int w, const char* what) {
  if (w != 32) return "simdgroup_matrix operations need full SIMD groups of 32 lanes";
  for (int i = 0; i < w; i++) {
    if (!s[i].active) return "simdgroup_matrix operations need all 32 lanes of the SIMD group (some lanes diverged or returned)";
    if (__builtin_memcmp(s[i].in, s[0].in, sizeof(Args)) != 0) return what;
  }
  return nullptr;
}
template <class T> const char* load(SimdSlot* s, int w) {
  if (const char* e = check(s, w, "simdgroup_load: lanes passed different pointers or strides")) return e;
  Args a = mlxsim::load_slot<Args>(s[0].in);
  const T* src = (const T*)a.p;
  simdgroup_matrix<T, 8, 8> m;
  for (int r = 0; r < 8; r++)
    for (int c = 0; c < 8; c++) m.d[r][c] = src[(ulong)r * a.stride + c];
  for (int i = 0; i < w; i++) *(simdgroup_matrix<T, 8, 8>*)s[i].obj = m;
  return nullptr;
}
template <class T> const char* store(SimdSlot* s, int w) {
  if (const char* e = check(s, w, "simdgroup_store: lanes passed different pointers or strides")) return e;
  const simdgroup_matrix<T, 8, 8>* m = (const simdgroup_matrix<T, 8, 8>*)s[0].obj;
  for (int i = 1; i < w; i++)
    if (__builtin_memcmp(s[i].obj, m, sizeof *m) != 0) return "simdgroup_store: the lanes' matrices differ";
  Args a = mlxsim::load_slot<Args>(s[0].in);
  T* dst = (T*)a.p;
  for (int r = 0; r < 8; r++)
    for (int c = 0; c < 8; c++) dst[(ulong)r * a.stride + c] = m->d[r][c];
  return nullptr;
}
// multiply_accumulate: in holds pointers to the lane's a, b and c; checked equal
// in content across lanes, then d = a*b + c with a float accumulator, k in order.
template <class T> const char* mac(SimdSlot* s, int w) {
  if (w != 32) return "simdgroup_multiply_accumulate needs full SIMD groups of 32 lanes";
  typedef simdgroup_matrix<T, 8, 8> M;
  const M* in0[3];
  __builtin_memcpy(in0, s[0].in, sizeof in0);
  for (int i = 0; i < w; i++) {
    if (!s[i].active) return "simdgroup_multiply_accumulate needs all 32 lanes of the SIMD group (some lanes diverged or returned)";
    const M* in[3];
    __builtin_memcpy(in, s[i].in, sizeof in);
    for (int k = 0; k < 3; k++)
      if (in[k] && __builtin_memcmp(in[k], in0[k], sizeof(M)) != 0) return "simdgroup_multiply_accumulate: the lanes' matrices differ";
  }
  M d;
  for (int r = 0; r < 8; r++)
    for (int c = 0; c < 8; c++) {
      float acc = in0[2] ? (float)in0[2]->d[r][c] : 0.0f;
      for (int k = 0; k < 8; k++) acc += (float)in0[0]->d[r][k] * (float)in0[1]->d[k][c];
      d.d[r][c] = (T)acc;
    }
  for (int i = 0; i < w; i++) *(M*)s[i].obj = d;
  return nullptr;
}
}  // namespace sgm_detail

template <class T>
inline void simdgroup_load(simdgroup_matrix<T, 8, 8>& m, const T* src, ulong elements_per_row = 8,
                           const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  sgm_detail::Args a = {src, elements_per_row, nullptr};
  mlxsim::simd_op(&sgm_detail::load<T>, file, line, &a, sizeof a, 0, &m, nullptr);
}
template <class T>
inline void simdgroup_store(const simdgroup_matrix<T, 8, 8>& m, T* dst, ulong elements_per_row = 8,
                            const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  sgm_detail::Args a = {dst, elements_per_row, nullptr};
  mlxsim::simd_op(&sgm_detail::store<T>, file, line, &a, sizeof a, 0, (void*)&m, nullptr);
}
template <class T>
inline void simdgroup_multiply_accumulate(simdgroup_matrix<T, 8, 8>& d, const simdgroup_matrix<T, 8, 8>& a,
                                          const simdgroup_matrix<T, 8, 8>& b, const simdgroup_matrix<T, 8, 8>& c,
                                          const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  const void* in[3] = {&a, &b, &c};
  mlxsim::simd_op(&sgm_detail::mac<T>, file, line, in, sizeof in, 0, &d, nullptr);
}
template <class T>
inline void simdgroup_multiply(simdgroup_matrix<T, 8, 8>& d, const simdgroup_matrix<T, 8, 8>& a,
                               const simdgroup_matrix<T, 8, 8>& b,
                               const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  const void* in[3] = {&a, &b, nullptr};
  mlxsim::simd_op(&sgm_detail::mac<T>, file, line, in, sizeof in, 0, &d, nullptr);
}

// ---- atomics (lanes run one at a time, so plain memory operations are atomic) ------
enum memory_order { memory_order_relaxed };
template <class T> struct msl_atomic { T v; };
typedef msl_atomic<int> atomic_int;
typedef msl_atomic<uint> atomic_uint;
typedef msl_atomic<float> atomic_float;
template <class T> inline T atomic_load_explicit(const msl_atomic<T>* a, memory_order) { return a->v; }
template <class T> inline void atomic_store_explicit(msl_atomic<T>* a, T v, memory_order) { a->v = v; }
template <class T> inline T atomic_exchange_explicit(msl_atomic<T>* a, T v, memory_order) { T o = a->v; a->v = v; return o; }
template <class T> inline T atomic_fetch_add_explicit(msl_atomic<T>* a, T v, memory_order) { T o = a->v; a->v = o + v; return o; }
template <class T> inline T atomic_fetch_sub_explicit(msl_atomic<T>* a, T v, memory_order) { T o = a->v; a->v = o - v; return o; }
template <class T> inline T atomic_fetch_max_explicit(msl_atomic<T>* a, T v, memory_order) { T o = a->v; a->v = o > v ? o : v; return o; }
template <class T> inline T atomic_fetch_min_explicit(msl_atomic<T>* a, T v, memory_order) { T o = a->v; a->v = o < v ? o : v; return o; }
template <class T> inline bool atomic_compare_exchange_weak_explicit(msl_atomic<T>* a, T* expected, T desired, memory_order, memory_order) {
  if (a->v == *expected) { a->v = desired; return true; }
  *expected = a->v;
  return false;
}

}  // namespace metal

// ---- the launcher's side (used by generated code) ---------------------------------
namespace mlxsim {
struct u3 { uint32_t x, y, z; };
struct Ids {
  u3 tpig, tpitg, tgpig, tptg, tgpg, tpg;
  uint32_t tiitg, tiisg, siitg, tpsg, sgptg;
};
enum { kMaxBuffers = 31, kMaxConstants = 64, kErrLen = 1024 };
struct Launch {
  void* buf[kMaxBuffers + 1];        // [[buffer(i)]] addresses
  void* tg[kMaxBuffers + 1];         // [[threadgroup(i)]] addresses, set by the runtime
  uint64_t tg_size[kMaxBuffers + 1]; // [[threadgroup(i)]] bytes
  uint64_t fc[kMaxConstants];        // function constant values by index
  uint64_t fc_set;                   // which function constants are set (bit i)
  uint32_t groups[3];
  uint32_t threads[3];
  uint32_t tg_limit;                 // bytes of threadgroup memory a group may use
  uint32_t pad;
  char err[kErrLen];
};
typedef void (*Entry)(Launch* L, const Ids* id);
int run(Launch* L, Entry e, const char* name);

// Built-in argument conversions: the parameter's declared type from the id.
template <class T> inline T builtin(u3 v);
template <> inline uint builtin<uint>(u3 v) { return v.x; }
template <> inline ushort builtin<ushort>(u3 v) { return (ushort)v.x; }
template <> inline int builtin<int>(u3 v) { return (int)v.x; }
template <> inline uint2 builtin<uint2>(u3 v) { uint2 r; r.x = v.x; r.y = v.y; return r; }
template <> inline ushort2 builtin<ushort2>(u3 v) { ushort2 r; r.x = (ushort)v.x; r.y = (ushort)v.y; return r; }
template <> inline uint3 builtin<uint3>(u3 v) { uint3 r; r.x = v.x; r.y = v.y; r.z = v.z; return r; }
template <> inline ushort3 builtin<ushort3>(u3 v) { ushort3 r; r.x = (ushort)v.x; r.y = (ushort)v.y; r.z = (ushort)v.z; return r; }
template <class T> inline T builtin1(uint32_t v) { return (T)v; }
}  // namespace mlxsim
