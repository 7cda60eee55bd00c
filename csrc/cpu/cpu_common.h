// Internal helpers of the CPU kernels (pyalign_C, CPU dispatch key).
//
// Rows are processed in tiles of kTile elements: a dtype-specific combine writes the fp32 guided logits of the
// tile into a stack buffer, then dtype-free tile kernels (compiled for the baseline ISA and for AVX2, selected
// at load time by GCC's target_clones) compute max / sum-exp / argmax. The work is split into (row, chunk)
// tasks so that a small batch still uses every thread; partial results are merged per row.
#pragma once
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "pyalign/sampling_common.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(PYALIGN_NO_CLONES)
#define PYALIGN_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define PYALIGN_CLONES
#endif

namespace pyalign {
namespace cpu {

constexpr int kTile = 512;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kPosInf = std::numeric_limits<float>::infinity();

// ---------------------------------------------------------------- dtype-free tile kernels (tiles.cpp-like)
// Combine: z[i] = guided(zp[i], zb[i]); returns 1 if any input is NaN or +inf. zb may be null (z = zp).
int combine_tile_f32(const float* zp, const float* zb, float w, int n, float* z);
int combine_tile_bf16(const uint16_t* zp, const uint16_t* zb, float w, int n, float* z);
int combine_tile_f16(const c10::Half* zp, const c10::Half* zb, float w, int n, float* z);
int combine_tile_f64(const double* zp, const double* zb, float w, int n, float* z);
// max of z[0..n) (NaN-free input)
float tile_max(const float* z, int n);
// sum of exp(z[i] - m) for m finite (fast vectorisable exp, ~2 ulp)
float tile_sumexp(const float* z, int n, float m);
// z[i] / tau in place
void tile_div(float* z, int n, float tau);
// out[i] = (z[i] - m) - logsum
void tile_logsoftmax(const float* z, int n, float m, float logsum, float* out);

template <typename T>
inline int combine_tile(const T* zp, const T* zb, float w, int n, float* z);
template <>
inline int combine_tile<float>(const float* zp, const float* zb, float w, int n, float* z) {
  return combine_tile_f32(zp, zb, w, n, z);
}
template <>
inline int combine_tile<c10::BFloat16>(const c10::BFloat16* zp, const c10::BFloat16* zb, float w, int n, float* z) {
  return combine_tile_bf16(reinterpret_cast<const uint16_t*>(zp), reinterpret_cast<const uint16_t*>(zb), w, n, z);
}
template <>
inline int combine_tile<c10::Half>(const c10::Half* zp, const c10::Half* zb, float w, int n, float* z) {
  return combine_tile_f16(zp, zb, w, n, z);
}
template <>
inline int combine_tile<double>(const double* zp, const double* zb, float w, int n, float* z) {
  return combine_tile_f64(zp, zb, w, n, z);
}

template <typename T>
inline float load_f(const T* p, int64_t i) {
  return static_cast<float>(p[i]);
}

// Dispatch over the logits dtypes (fp64 is read as fp32, as the reference's .to(float32) does).
#define PYALIGN_DISPATCH_LOGITS(dtype, NAME, ...)                                                   \
  [&] {                                                                                             \
    switch (dtype) {                                                                                \
      case at::kFloat: { using scalar_t = float; return __VA_ARGS__(); }                            \
      case at::kBFloat16: { using scalar_t = c10::BFloat16; return __VA_ARGS__(); }                 \
      case at::kHalf: { using scalar_t = c10::Half; return __VA_ARGS__(); }                         \
      case at::kDouble: { using scalar_t = double; return __VA_ARGS__(); }                          \
      default: TORCH_CHECK(false, NAME ": unsupported dtype ", dtype);                              \
    }                                                                                               \
  }()

// ---------------------------------------------------------------- work partition
struct Partition {
  int64_t chunks;      // chunks per row
  int64_t chunk_len;   // elements per chunk (multiple of kTile except the last)
};

// Split rows of length V so that B * chunks >= ~2 * threads, with chunks of at least min_chunk elements.
inline Partition partition_rows(int64_t B, int64_t V, int64_t min_chunk = 16384) {
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  int64_t chunks = 1;
  if (B < 2 * threads) {
    const int64_t want = (2 * threads + B - 1) / B;
    const int64_t max_by_size = std::max<int64_t>(1, V / min_chunk);
    chunks = std::max<int64_t>(1, std::min(want, max_by_size));
  }
  int64_t len = (V + chunks - 1) / chunks;
  len = ((len + kTile - 1) / kTile) * kTile;
  chunks = (V + len - 1) / len;
  return Partition{chunks, len};
}

// at::parallel_for over n tasks, each task at least `grain` elements of work (single-threaded when small).
template <typename F>
inline void for_tasks(int64_t n, int64_t work_per_task, const F& f) {
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, work_per_task));
  if (n <= 1 || n <= grain) {
    for (int64_t t = 0; t < n; ++t) f(t);
    return;
  }
  at::parallel_for(0, n, grain, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) f(t);
  });
}

// ---------------------------------------------------------------- top-k of packed keys
using Key = unsigned long long;

// Keeps the k largest keys seen (a min-heap), with a cheap float pre-filter on the score.
struct TopKHeap {
  int64_t k;
  std::vector<Key> heap;  // min-heap via std::greater
  float thr = kNegInf;    // score of the current minimum once full
  bool full = false;
  explicit TopKHeap(int64_t k_) : k(k_) { heap.reserve(k_); }
  inline void push(float v, uint32_t idx) {
    if (full && v < thr && !(v != v)) return;  // strictly below the k-th: cannot enter
    const Key key = pack_key(v, idx);
    if (!full) {
      heap.push_back(key);
      std::push_heap(heap.begin(), heap.end(), std::greater<Key>());
      if (static_cast<int64_t>(heap.size()) == k) {
        full = true;
        thr = key_score(heap.front());
      }
    } else if (key > heap.front()) {
      std::pop_heap(heap.begin(), heap.end(), std::greater<Key>());
      heap.back() = key;
      std::push_heap(heap.begin(), heap.end(), std::greater<Key>());
      thr = key_score(heap.front());
    }
  }
};

// Top-k keys of row values z(i) for i in [lo, hi) (z returns fp32), appended to out (unordered, <= k keys).
template <typename Getter>
inline void topk_range(const Getter& z, int64_t lo, int64_t hi, int64_t k, std::vector<Key>& out) {
  const int64_t n = hi - lo;
  if (k >= n) {
    for (int64_t i = lo; i < hi; ++i) out.push_back(pack_key(z(i), static_cast<uint32_t>(i)));
    return;
  }
  if (k <= 256) {
    // Once the heap is full, a tile whose maximum is strictly below the k-th value cannot contribute: skip it
    // after an 8-lane (vectorisable) max; NaN tiles always go through push (which handles NaN keys).
    constexpr int64_t kSkipTile = 64;
    TopKHeap h(k);
    int64_t i = lo;
    for (; i + kSkipTile <= hi; i += kSkipTile) {
      if (h.full) {
        float lane[8] = {kNegInf, kNegInf, kNegInf, kNegInf, kNegInf, kNegInf, kNegInf, kNegInf};
        int nan = 0;
        for (int64_t j = 0; j < kSkipTile; j += 8)
          for (int l = 0; l < 8; ++l) {
            const float v = z(i + j + l);
            lane[l] = v > lane[l] ? v : lane[l];
            nan |= static_cast<int>(v != v);
          }
        float tm = lane[0];
        for (int l = 1; l < 8; ++l) tm = lane[l] > tm ? lane[l] : tm;
        if (!nan && tm < h.thr) continue;
      }
      for (int64_t j = 0; j < kSkipTile; ++j) h.push(z(i + j), static_cast<uint32_t>(i + j));
    }
    for (; i < hi; ++i) h.push(z(i), static_cast<uint32_t>(i));
    out.insert(out.end(), h.heap.begin(), h.heap.end());
    return;
  }
  std::vector<Key> keys(n);
  for (int64_t i = lo; i < hi; ++i) keys[i - lo] = pack_key(z(i), static_cast<uint32_t>(i));
  std::nth_element(keys.begin(), keys.begin() + (k - 1), keys.end(), std::greater<Key>());
  out.insert(out.end(), keys.begin(), keys.begin() + k);
}

// The k largest of `keys`, sorted descending, written to dst (keys is modified).
inline void select_sorted(std::vector<Key>& keys, int64_t k, Key* dst) {
  if (static_cast<int64_t>(keys.size()) > k) {
    std::nth_element(keys.begin(), keys.begin() + (k - 1), keys.end(), std::greater<Key>());
    keys.resize(k);
  }
  std::sort(keys.begin(), keys.end(), std::greater<Key>());
  std::copy(keys.begin(), keys.end(), dst);
}

// Per-row parallel top-k over a [B, V] row set (chunked when B is small). keys_out: [B, k], sorted descending.
template <typename Getter>  // Getter(row) -> callable(i) -> float
inline void topk_rows(int64_t B, int64_t V, int64_t k, const Getter& row_getter, Key* keys_out,
                      const std::vector<uint8_t>* skip = nullptr) {
  const Partition part = partition_rows(B, V, std::max<int64_t>(16384, 8 * k));
  if (part.chunks == 1) {
    for_tasks(B, V, [&](int64_t r) {
      if (skip && (*skip)[r]) return;
      std::vector<Key> keys;
      keys.reserve(std::min<int64_t>(k, V));
      topk_range(row_getter(r), 0, V, k, keys);
      select_sorted(keys, k, keys_out + r * k);
    });
    return;
  }
  std::vector<std::vector<Key>> partial(B * part.chunks);
  for_tasks(B * part.chunks, part.chunk_len, [&](int64_t t) {
    const int64_t r = t / part.chunks, c = t % part.chunks;
    if (skip && (*skip)[r]) return;
    const int64_t lo = c * part.chunk_len, hi = std::min(V, lo + part.chunk_len);
    topk_range(row_getter(r), lo, hi, k, partial[t]);
  });
  for_tasks(B, k * part.chunks, [&](int64_t r) {
    if (skip && (*skip)[r]) return;
    std::vector<Key> keys;
    for (int64_t c = 0; c < part.chunks; ++c) {
      auto& p = partial[r * part.chunks + c];
      keys.insert(keys.end(), p.begin(), p.end());
    }
    select_sorted(keys, k, keys_out + r * k);
  });
}

inline float gumbel_noise(int64_t seed, int64_t offset, uint64_t index) { return pyalign::gumbel(seed, offset, index); }

}  // namespace cpu
}  // namespace pyalign
