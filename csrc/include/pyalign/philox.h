// Philox4x32-10 counter-based RNG, bit-exact with pyalign/reference/philox.py.
// Usable from host C++ and CUDA device code (no torch headers).
//
//   key     = (seed mod 2^32, seed >> 32 mod 2^32)
//   counter = (index mod 2^32, 0, offset mod 2^32, offset >> 32)
//   u       = (float(x0 >> 9) + 0.5) * 2^-23          (exact in fp32, u in [2^-24, 1 - 2^-24])
//   g       = -log(-log(u))                            (always finite: g in [-2.8, 16.7])
#pragma once
#include <stdint.h>

#if defined(__CUDACC__)
#define PYALIGN_HD __host__ __device__ __forceinline__
#else
#define PYALIGN_HD inline
#endif

namespace pyalign {

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;

struct Philox4 {
  uint32_t x0, x1, x2, x3;
};

PYALIGN_HD void mulhilo32(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
#if defined(__CUDA_ARCH__)
  lo = a * b;
  hi = __umulhi(a, b);
#else
  const uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  lo = static_cast<uint32_t>(p);
  hi = static_cast<uint32_t>(p >> 32);
#endif
}

PYALIGN_HD Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
#pragma unroll
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo32(kPhiloxM0, c0, hi0, lo0);
    mulhilo32(kPhiloxM1, c2, hi1, lo1);
    const uint32_t n0 = hi1 ^ c1 ^ k0;
    const uint32_t n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  return Philox4{c0, c1, c2, c3};
}

// First output word for (seed, offset, index): the only one pyalign uses.
PYALIGN_HD uint32_t philox_x0(int64_t seed, int64_t offset, uint64_t index) {
  const uint64_t s = static_cast<uint64_t>(seed);
  const uint64_t o = static_cast<uint64_t>(offset);
  return philox4x32_10(static_cast<uint32_t>(index), 0u, static_cast<uint32_t>(o), static_cast<uint32_t>(o >> 32),
                       static_cast<uint32_t>(s), static_cast<uint32_t>(s >> 32))
      .x0;
}

// u in [2^-24, 1 - 2^-24], exactly (float(x0 >> 9) + 0.5) * 2^-23.
PYALIGN_HD float philox_uniform(int64_t seed, int64_t offset, uint64_t index) {
  const uint32_t x0 = philox_x0(seed, offset, index);
  return (static_cast<float>(x0 >> 9) + 0.5f) * 1.1920928955078125e-07f;  // 2^-23
}

}  // namespace pyalign
