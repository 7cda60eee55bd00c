// Dtype-free tile kernels of the CPU backend, compiled for the baseline x86-64 ISA and for AVX2 (target_clones,
// chosen once at load time). Compiled with -ffp-contract=off: the combination zb + w*(zp - zb) rounds every
// operation like the PyTorch reference, so the guided logits are bit-identical.
#include "cpu_common.h"

namespace pyalign {
namespace cpu {

namespace {
inline float bf16_to_f32(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// exp(x) for x <= 0 (x - max): Cody-Waite reduction + degree-6 Taylor polynomial, branch-free so that it
// vectorises. Relative error ~2e-7 (about 2 ulp); exp(-inf) = 0.
inline float fast_exp_neg(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float t = x * 1.44269504088896341f;
  const float n = (t + 12582912.0f) - 12582912.0f;  // round to nearest
  float r = x - n * 0.693145751953125f;
  r = r - n * 1.428606765330187045e-06f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t e = static_cast<int32_t>(n) + 127;
  const uint32_t bits = static_cast<uint32_t>(e) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}
}  // namespace

PYALIGN_CLONES int combine_tile_f32(const float* zp, const float* zb, float w, int n, float* z) {
  int bad = 0;
  if (zb == nullptr) {
    for (int i = 0; i < n; ++i) {
      const float a = zp[i];
      bad |= !(a < kPosInf);
      z[i] = a;
    }
    return bad;
  }
  // Branch-free (| not ||) so that GCC vectorises it: NaN and +inf fail `x < +inf`.
  for (int i = 0; i < n; ++i) {
    const float a = zp[i], b = zb[i];
    bad |= static_cast<int>(!(a < kPosInf)) | static_cast<int>(!(b < kPosInf));
    const float c = b + w * (a - b);
    const bool masked = (a == kNegInf) | (b == kNegInf);
    z[i] = masked ? kNegInf : c;
  }
  return bad;
}

PYALIGN_CLONES int combine_tile_bf16(const uint16_t* zp, const uint16_t* zb, float w, int n, float* z) {
  int bad = 0;
  if (zb == nullptr) {
    for (int i = 0; i < n; ++i) {
      const float a = bf16_to_f32(zp[i]);
      bad |= !(a < kPosInf);
      z[i] = a;
    }
    return bad;
  }
  for (int i = 0; i < n; ++i) {
    const float a = bf16_to_f32(zp[i]), b = bf16_to_f32(zb[i]);
    bad |= static_cast<int>(!(a < kPosInf)) | static_cast<int>(!(b < kPosInf));
    const float c = b + w * (a - b);
    const bool masked = (a == kNegInf) | (b == kNegInf);
    z[i] = masked ? kNegInf : c;
  }
  return bad;
}

PYALIGN_CLONES int combine_tile_f16(const c10::Half* zp, const c10::Half* zb, float w, int n, float* z) {
  int bad = 0;
  float tmp_a[kTile], tmp_b[kTile];
  for (int i = 0; i < n; ++i) tmp_a[i] = static_cast<float>(zp[i]);
  if (zb == nullptr) return combine_tile_f32(tmp_a, nullptr, w, n, z);
  for (int i = 0; i < n; ++i) tmp_b[i] = static_cast<float>(zb[i]);
  bad |= combine_tile_f32(tmp_a, tmp_b, w, n, z);
  return bad;
}

PYALIGN_CLONES int combine_tile_f64(const double* zp, const double* zb, float w, int n, float* z) {
  float tmp_a[kTile], tmp_b[kTile];
  for (int i = 0; i < n; ++i) tmp_a[i] = static_cast<float>(zp[i]);
  if (zb == nullptr) return combine_tile_f32(tmp_a, nullptr, w, n, z);
  for (int i = 0; i < n; ++i) tmp_b[i] = static_cast<float>(zb[i]);
  return combine_tile_f32(tmp_a, tmp_b, w, n, z);
}

PYALIGN_CLONES float tile_max(const float* z, int n) {
  // 8 independent lanes: a float max reduction in one accumulator does not vectorise without fast-math.
  float acc[8] = {kNegInf, kNegInf, kNegInf, kNegInf, kNegInf, kNegInf, kNegInf, kNegInf};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] = z[i + j] > acc[j] ? z[i + j] : acc[j];
  float m = kNegInf;
  for (; i < n; ++i) m = z[i] > m ? z[i] : m;
  for (int j = 0; j < 8; ++j) m = acc[j] > m ? acc[j] : m;
  return m;
}

PYALIGN_CLONES float tile_sumexp(const float* z, int n, float m) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += fast_exp_neg(z[i + j] - m);
  float s = 0.0f;
  for (; i < n; ++i) s += fast_exp_neg(z[i] - m);
  for (int j = 0; j < 8; ++j) s += acc[j];
  return s;
}

PYALIGN_CLONES void tile_div(float* z, int n, float tau) {
  for (int i = 0; i < n; ++i) z[i] = z[i] / tau;
}

PYALIGN_CLONES void tile_logsoftmax(const float* z, int n, float m, float logsum, float* out) {
  for (int i = 0; i < n; ++i) out[i] = (z[i] - m) - logsum;
}

}  // namespace cpu
}  // namespace pyalign
