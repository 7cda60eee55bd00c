// Device helpers of the CUDA kernels: dtype loads, block reductions (cub), block-wide radix select.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <cub/block/block_reduce.cuh>

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
