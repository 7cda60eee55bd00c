// __host__ __device__ helpers shared by the CPU and CUDA kernels (FlashInfer style: helpers -> kernels ->
// launchers). No torch headers here, so CUDA kernel files can be compile-checked with bare nvcc.
//
// - gumbel(seed, offset, index): -log(-log u) with the Philox uniform of philox.h (fp32 logf)
// - ordered image of a float: an order-preserving uint32 map (NaN canonicalised above +inf, -0 == +0)
// - packed (score image, index) 64-bit keys: larger key = larger score, ties to the smaller index
// - guided combination zb + w*(zp - zb) in fp32 without FMA contraction, -inf where either is -inf
// - online log-sum-exp (max, sum) merge
#pragma once
#include <stdint.h>
#include <math.h>

#include "philox.h"

namespace pyalign {

#if defined(__CUDA_ARCH__)
#define PYALIGN_INF __int_as_float(0x7f800000)
#else
#define PYALIGN_INF HUGE_VALF
#endif

// Upper bound of the Gumbel noise: u <= 1 - 2^-24 gives g <= 16.64; any s + g is < fl(s + kGumbelMax).
constexpr float kGumbelMax = 17.0f;

PYALIGN_HD float gumbel_from_uniform(float u) {
#if defined(__CUDA_ARCH__)
  return -logf(-logf(u));
#else
  return -::logf(-::logf(u));
#endif
}

PYALIGN_HD float gumbel(int64_t seed, int64_t offset, uint64_t index) {
  return gumbel_from_uniform(philox_uniform(seed, offset, index));
}

PYALIGN_HD uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint32_t>(__float_as_uint(x));
#else
  union {
    float f;
    uint32_t u;
  } v;
  v.f = x;
  return v.u;
#endif
}

// Order-preserving image: a < b (as floats) <=> ordered(a) < ordered(b). NaN maps above +inf (torch.sort puts
// NaN first in descending order); -0 and +0 map to the same value.
PYALIGN_HD uint32_t ordered_image(float x) {
  uint32_t b = float_bits(x);
  if (x != x) b = 0x7fc00000u;
  if (x == 0.0f) b = 0u;
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// Packed key: high 32 bits the ordered image, low 32 bits ~index (so that the smaller index wins a tie).
PYALIGN_HD unsigned long long pack_key(float score, uint32_t index) {
  return (static_cast<unsigned long long>(ordered_image(score)) << 32) | static_cast<unsigned long long>(~index);
}
PYALIGN_HD uint32_t key_index(unsigned long long key) { return ~static_cast<uint32_t>(key & 0xffffffffull); }
PYALIGN_HD float key_score(unsigned long long key) {
  uint32_t img = static_cast<uint32_t>(key >> 32);
  uint32_t b = (img & 0x80000000u) ? (img & 0x7fffffffu) : ~img;
#if defined(__CUDA_ARCH__)
  return __uint_as_float(b);
#else
  union {
    uint32_t u;
    float f;
  } v;
  v.u = b;
  return v.f;
#endif
}

// fp32 operations that the compiler may not fuse into an FMA (the reference rounds each one).
PYALIGN_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
PYALIGN_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
PYALIGN_HD float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

// z = zb + w*(zp - zb), -inf where either context is -inf.
PYALIGN_HD float guided_combine(float zp, float zb, float w) {
  const float ninf = -PYALIGN_INF;
  if (zp == ninf || zb == ninf) return ninf;
  return add_rn(zb, mul_rn(w, add_rn(zp, -zb)));
}

// True for NaN or +inf (an input that makes the row unsampleable; -inf means masked).
PYALIGN_HD bool is_bad_value(float x) { return !(x < PYALIGN_INF); }

// Online log-sum-exp state: sum of exp(x - m) over the merged elements.
struct MaxSum {
  float m;
  float s;
};

PYALIGN_HD MaxSum maxsum_merge(MaxSum a, MaxSum b) {
  const float ninf = -PYALIGN_INF;
  if (a.m == ninf) return b;
  if (b.m == ninf) return a;
  if (a.m >= b.m) return MaxSum{a.m, a.s + b.s * expf(b.m - a.m)};
  return MaxSum{b.m, b.s + a.s * expf(a.m - b.m)};
}

PYALIGN_HD MaxSum maxsum_add(MaxSum a, float x) {
  const float ninf = -PYALIGN_INF;
  if (x == ninf) return a;
  if (x <= a.m) return MaxSum{a.m, a.s + expf(x - a.m)};
  return MaxSum{x, a.s * expf(a.m - x) + 1.0f};
}

// (value, index) argmax merge: larger value wins, ties to the smaller index (index < 0 = empty).
struct ArgMax {
  float v;
  int64_t i;
};
PYALIGN_HD ArgMax argmax_merge(ArgMax a, ArgMax b) {
  if (a.i < 0) return b;
  if (b.i < 0) return a;
  if (b.v > a.v || (b.v == a.v && b.i < a.i)) return b;
  return a;
}

}  // namespace pyalign
