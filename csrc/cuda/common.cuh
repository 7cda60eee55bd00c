// Device helpers of the CUDA kernels: dtype loads, block reductions (cub), block-wide radix select.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "launchers.h"
#include "pyalign/sampling_common.h"

namespace pyalign {
namespace cuda {

constexpr int kThreads = 256;

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(double x) { return static_cast<float>(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }

// z_i = zb + w (zp − zb) in fp32 (zp alone without a base context); sets `bad` on a NaN/+inf input.
template <typename T>
__device__ __forceinline__ float zval(const T* zp, const T* zb, int64_t i, float w, int& bad) {
  const float a = to_float(zp[i]);
  bad |= is_bad_value(a);
  if (zb == nullptr) return a;
  const float b = to_float(zb[i]);
  bad |= is_bad_value(b);
  return guided_combine(a, b, w);
}

__device__ __forceinline__ float load_dyn(int dtype, const void* p, int64_t i) {
  switch (dtype) {
    case kBF16: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    case kF16: return __half2float(static_cast<const __half*>(p)[i]);
    case kF64: return static_cast<float>(static_cast<const double*>(p)[i]);
    default: return static_cast<const float*>(p)[i];
  }
}

__device__ __forceinline__ float image_to_float(uint32_t img) {
  const uint32_t b = (img & 0x80000000u) ? (img & 0x7fffffffu) : ~img;
  return __uint_as_float(b);
}

struct MaxSumOp {
  __device__ __forceinline__ MaxSum operator()(const MaxSum& a, const MaxSum& b) const { return maxsum_merge(a, b); }
};
struct ArgMaxOp {
  __device__ __forceinline__ ArgMax operator()(const ArgMax& a, const ArgMax& b) const { return argmax_merge(a, b); }
};

// Visits z_i (guided combination, fp32) for i in [lo, hi) of one row, f(i, z) once per element. The body uses
// 16-byte vector loads when both rows are 16-byte aligned at the same element (scalar head/tail otherwise);
// elements are visited in no particular order per thread, so f must be order-independent (argmax ties use
// argmax_merge). Sets `bad` on a NaN/+inf input.
template <typename T, typename F>
__device__ __forceinline__ void for_each_z(const T* zp, const T* zb, int64_t lo, int64_t hi, float w, int& bad,
                                           F&& f) {
  constexpr int kVec = 16 / static_cast<int>(sizeof(T));
  int64_t a = lo;
  while (a < hi && (reinterpret_cast<uintptr_t>(zp + a) & 15u) != 0) ++a;
  const bool vec = a < hi && (zb == nullptr || (reinterpret_cast<uintptr_t>(zb + a) & 15u) == 0);
  if (!vec) a = hi;
  const int64_t nvec = (hi - a) / kVec;
  const int64_t tail = a + nvec * kVec;
  for (int64_t i = lo + threadIdx.x; i < a; i += blockDim.x) f(i, zval(zp, zb, i, w, bad));
  for (int64_t v = threadIdx.x; v < nvec; v += blockDim.x) {
    const int64_t i0 = a + v * kVec;
    union {
      uint4 u;
      T x[kVec];
    } P, Q;
    P.u = *reinterpret_cast<const uint4*>(zp + i0);
    if (zb != nullptr) Q.u = *reinterpret_cast<const uint4*>(zb + i0);
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      const float pa = to_float(P.x[j]);
      bad |= is_bad_value(pa);
      float z = pa;
      if (zb != nullptr) {
        const float pb = to_float(Q.x[j]);
        bad |= is_bad_value(pb);
        z = guided_combine(pa, pb, w);
      }
      f(i0 + j, z);
    }
  }
  for (int64_t i = tail + threadIdx.x; i < hi; i += blockDim.x) f(i, zval(zp, zb, i, w, bad));
}

// Warp-aggregated shared-memory updates. The histogram passes see few distinct bins (the top byte of the images
// of a row's values is nearly constant), so one atomic per lane would serialise on a handful of addresses: each
// warp adds once per distinct bin. Every lane of the warp must call them (warp-uniform loops below).
constexpr unsigned int kFullMask = 0xffffffffu;

// hist[bin] += 1 for every lane with bin < 256 (256: no update).
__device__ __forceinline__ void warp_hist_inc(unsigned int* hist, unsigned int bin) {
  const unsigned int peers = __match_any_sync(kFullMask, bin);
  if (bin < 256u && (threadIdx.x & 31u) == static_cast<unsigned int>(__ffs(peers) - 1))
    atomicAdd(&hist[bin], static_cast<unsigned int>(__popc(peers)));
}

// hist[bin] += 1 and mass[bin] += m for every lane with bin < 256.
__device__ __forceinline__ void warp_hist_add_mass(unsigned int* hist, double* mass, unsigned int bin, double m) {
  unsigned int todo = __ballot_sync(kFullMask, bin < 256u);
  while (todo != 0u) {
    const int src = __ffs(todo) - 1;
    const unsigned int b = __shfl_sync(kFullMask, bin, src);
    const bool mine = bin == b;
    const unsigned int peers = __ballot_sync(kFullMask, mine);
    double v = mine ? m : 0.0;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
    if ((threadIdx.x & 31u) == static_cast<unsigned int>(src)) {
      atomicAdd(&hist[b], static_cast<unsigned int>(__popc(peers)));
      atomicAdd(&mass[b], v);
    }
    todo &= ~peers;
  }
}

// A slot in a shared list for every lane with take = true (one atomic per warp); undefined for the others.
__device__ __forceinline__ unsigned int warp_append(unsigned int* count, bool take) {
  const unsigned int ball = __ballot_sync(kFullMask, take);
  const unsigned int lane = threadIdx.x & 31u;
  unsigned int base = 0u;
  if (lane == 0u && ball != 0u) base = atomicAdd(count, static_cast<unsigned int>(__popc(ball)));
  base = __shfl_sync(kFullMask, base, 0);
  return base + static_cast<unsigned int>(__popc(ball & ((1u << lane) - 1u)));
}

// Warp-uniform strided loop: every lane of a warp runs the same iterations; i >= n on the tail lanes.
#define PYALIGN_WARP_UNIFORM_FOR(i, n)                                                                   \
  for (int64_t i##_base = static_cast<int64_t>(threadIdx.x & ~31u); i##_base < (n); i##_base += kThreads) \
    if (const int64_t i = i##_base + static_cast<int64_t>(threadIdx.x & 31u); true)

// Scratch of the block-wide selections below (blockDim.x == kThreads == 256: one histogram bin per thread).
struct SelectScratch {
  unsigned int hist[256];
  double mass[256];
  union {
    typename cub::BlockScan<unsigned int, kThreads>::TempStorage u;
    typename cub::BlockScan<double, kThreads>::TempStorage d;
  } scan;
  unsigned int sel, need, exact;
  int tmin, tmax;
  double above;
};

struct SelectResult {
  uint32_t prefix;  // the k-th largest image (exact = false), or a lower bound with exactly k images >= it
  bool exact;
  bool found;       // false: fewer than k present elements
};

// Block-wide radix select (8 bits per pass, bins scanned in parallel) of the k-th largest ordered image, with
// multiplicity, among img_of(i) for i in [0, n) (image 0 = absent). exact: exactly k images are >= prefix (the
// remaining low bits did not need resolving); otherwise prefix is the exact k-th largest image and ties with it
// make more than k images >= it. Every thread of the block must call it; returns the same result to all.
template <typename ImgFn>
__device__ SelectResult block_select_kth(const ImgFn& img_of, int64_t n, uint32_t k, SelectScratch& sc) {
  using Scan = cub::BlockScan<unsigned int, kThreads>;
  uint32_t prefix = 0, mask = 0, need = k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    sc.hist[threadIdx.x] = 0u;
    if (threadIdx.x == 0) sc.sel = 0xffffffffu;
    __syncthreads();
    PYALIGN_WARP_UNIFORM_FOR(i, n) {
      unsigned int bin = 256u;
      if (i < n) {
        const uint32_t img = img_of(i);
        if (img != 0u && (img & mask) == prefix) bin = (img >> shift) & 255u;
      }
      warp_hist_inc(sc.hist, bin);
    }
    __syncthreads();
    const unsigned int c = sc.hist[255 - threadIdx.x];  // thread t: bin 255 - t (descending order)
    unsigned int incl;
    Scan(sc.scan.u).InclusiveSum(c, incl);
    if (incl >= need && incl - c < need) {
      sc.sel = 255u - threadIdx.x;
      sc.need = need - (incl - c);
      sc.exact = incl == need;
    }
    __syncthreads();
    const uint32_t sel = sc.sel;
    if (sel == 0xffffffffu) return SelectResult{0u, false, false};
    need = sc.need;
    const bool exact = sc.exact != 0u;
    prefix |= sel << shift;
    mask |= 255u << shift;
    __syncthreads();
    if (exact) return SelectResult{prefix, true, true};
  }
  return SelectResult{prefix, false, true};
}

struct DescentResult {
  uint32_t image;  // the tie group where the mass from the top reaches the target
  bool found;      // false: the present mass never reaches the target
};

// Top-p threshold by radix descent with softmax-mass histograms (fp64): the image v* of the group with
// Σ_{img > v*} m < target <= Σ_{img >= v*} m, over the present elements (mass_of(i, &img, &m) returns false
// to skip i). Kept set of top-p: img >= v*. If the total mass falls short (rounding), found = false.
template <typename MassFn>
__device__ DescentResult block_mass_descent(const MassFn& mass_of, int64_t n, double target, SelectScratch& sc) {
  using Scan = cub::BlockScan<double, kThreads>;
  uint32_t prefix = 0, mask = 0;
  double above = 0.0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    sc.mass[threadIdx.x] = 0.0;
    sc.hist[threadIdx.x] = 0u;
    if (threadIdx.x == 0) {
      sc.tmin = kThreads;
      sc.tmax = -1;
    }
    __syncthreads();
    PYALIGN_WARP_UNIFORM_FOR(i, n) {
      uint32_t img = 0u;
      double m = 0.0;
      unsigned int bin = 256u;
      if (i < n && mass_of(i, &img, &m) && (img & mask) == prefix) bin = (img >> shift) & 255u;
      warp_hist_add_mass(sc.hist, sc.mass, bin, m);
    }
    __syncthreads();
    const double c = sc.mass[255 - threadIdx.x];
    const bool nonempty = sc.hist[255 - threadIdx.x] != 0u;
    double excl;
    Scan(sc.scan.d).ExclusiveSum(c, excl);
    if (nonempty && above + (excl + c) >= target) atomicMin(&sc.tmin, static_cast<int>(threadIdx.x));
    if (nonempty) atomicMax(&sc.tmax, static_cast<int>(threadIdx.x));
    __syncthreads();
    int t = sc.tmin;
    if (t == kThreads) {
      if (shift == 24 || sc.tmax < 0) return DescentResult{0u, false};
      t = sc.tmax;  // rounding below a bucket chosen one level up: its lowest group is the crossing
    }
    if (static_cast<int>(threadIdx.x) == t) sc.above = above + excl;
    __syncthreads();
    above = sc.above;
    prefix |= static_cast<uint32_t>(255 - t) << shift;
    mask |= 255u << shift;
    __syncthreads();
  }
  return DescentResult{prefix, true};
}

// Block-wide radix select: the exact k-th largest key (KeyT = uint32_t or unsigned long long) among the
// elements i in [0, n) for which key_of(i, &key) returns true. 8 bits per pass, early exit when the selected
// bucket holds exactly the remaining count (the remaining low bits are then 0: select key >= result).
template <typename KeyT, typename KeyFn>
__device__ KeyT block_radix_select(const KeyFn& key_of, int64_t n, int64_t k, unsigned int* hist /*[256]*/,
                                   int64_t* shared_state /*[2]*/) {
  KeyT prefix = 0, mask = 0;
  int64_t need = k;
  for (int shift = static_cast<int>(sizeof(KeyT) * 8) - 8; shift >= 0; shift -= 8) {
    for (int d = threadIdx.x; d < 256; d += blockDim.x) hist[d] = 0;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      KeyT key;
      if (!key_of(i, &key)) continue;
      if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255], 1u);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int64_t cum = 0;
      int sel = 0;
      int64_t exact = 0;
      for (int d = 255; d >= 0; --d) {
        const int64_t c = hist[d];
        if (cum + c >= need) {
          sel = d;
          exact = (cum + c == need) ? 1 : 0;
          need -= cum;
          break;
        }
        cum += c;
      }
      shared_state[0] = sel;
      shared_state[1] = exact;
      shared_state[2] = need;
    }
    __syncthreads();
    const int sel = static_cast<int>(shared_state[0]);
    const bool exact = shared_state[1] != 0;
    need = shared_state[2];
    prefix |= static_cast<KeyT>(sel) << shift;
    mask |= static_cast<KeyT>(255) << shift;
    __syncthreads();
    if (exact) break;
  }
  return prefix;
}

}  // namespace cuda
}  // namespace pyalign
