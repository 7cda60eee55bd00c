// guided_logprobs CUDA kernels: grid (splits, B). Kernel 1: each block computes (max, sum, bad) of its slice of
// the guided logits. Kernel 2: each block merges its row's `splits` partial pairs and writes (z − max) − log sum
// for its slice (NaN for bad rows). Two launches, deterministic, no atomics, no host sync.
#include "common.cuh"

namespace pyalign {
namespace cuda {
namespace {

template <typename T>
__global__ void __launch_bounds__(kThreads) glp_stats_kernel(const T* __restrict__ zp0, const T* __restrict__ zb0,
                                                             int64_t sp, int64_t sb, int64_t V, const float* w,
                                                             int64_t chunk, float2* part, int* part_bad) {
  const int64_t b = blockIdx.y;
  const T* zp = zp0 + b * sp;
  const T* zb = zb0 ? zb0 + b * sb : nullptr;
  const int64_t lo = static_cast<int64_t>(blockIdx.x) * chunk;
  const int64_t hi = lo + chunk < V ? lo + chunk : V;
  MaxSum ms{-PYALIGN_INF, 0.0f};
  int bad = 0;
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) ms = maxsum_add(ms, zval(zp, zb, i, w[b], bad));
  using RMS = cub::BlockReduce<MaxSum, kThreads>;
  using RI = cub::BlockReduce<int, kThreads>;
  __shared__ union {
    typename RMS::TempStorage ms;
    typename RI::TempStorage i;
  } tmp;
  ms = RMS(tmp.ms).Reduce(ms, MaxSumOp());
  __syncthreads();
  bad = RI(tmp.i).Sum(bad);
  if (threadIdx.x == 0) {
    part[b * gridDim.x + blockIdx.x] = make_float2(ms.m, ms.s);
    part_bad[b * gridDim.x + blockIdx.x] = bad;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) glp_write_kernel(const T* __restrict__ zp0, const T* __restrict__ zb0,
                                                             int64_t sp, int64_t sb, int64_t V, const float* w,
                                                             int64_t chunk, const float2* part, const int* part_bad,
                                                             float* out) {
  const int64_t b = blockIdx.y;
  __shared__ float s_m, s_ls;
  __shared__ int s_bad;
  if (threadIdx.x == 0) {
    MaxSum ms{-PYALIGN_INF, 0.0f};
    int bad = 0;
    for (unsigned int s = 0; s < gridDim.x; ++s) {
      const float2 p = part[b * gridDim.x + s];
      ms = maxsum_merge(ms, MaxSum{p.x, p.y});
      bad |= part_bad[b * gridDim.x + s];
    }
    s_m = ms.m;
    s_ls = logf(ms.s);
    s_bad = bad || ms.m == -PYALIGN_INF;
  }
  __syncthreads();
  const T* zp = zp0 + b * sp;
  const T* zb = zb0 ? zb0 + b * sb : nullptr;
  const int64_t lo = static_cast<int64_t>(blockIdx.x) * chunk;
  const int64_t hi = lo + chunk < V ? lo + chunk : V;
  float* o = out + b * V;
  const float m = s_m, ls = s_ls;
  const bool bad = s_bad != 0;
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
    int d = 0;
    o[i] = bad ? __int_as_float(0x7fffffff) : (zval(zp, zb, i, w[b], d) - m) - ls;
  }
}

template <typename T>
cudaError_t launch(const void* zp, const void* zb, int64_t sp, int64_t sb, int64_t B, int64_t V, const float* w,
                   int splits, void* ws, float* out, cudaStream_t stream) {
  float2* part = static_cast<float2*>(ws);
  int* part_bad = reinterpret_cast<int*>(part + B * splits);
  const int64_t chunk = (V + splits - 1) / splits;
  dim3 grid(splits, static_cast<unsigned int>(B));
  glp_stats_kernel<T><<<grid, kThreads, 0, stream>>>(static_cast<const T*>(zp), static_cast<const T*>(zb), sp, sb, V,
                                                     w, chunk, part, part_bad);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  glp_write_kernel<T><<<grid, kThreads, 0, stream>>>(static_cast<const T*>(zp), static_cast<const T*>(zb), sp, sb, V,
                                                     w, chunk, part, part_bad, out);
  return cudaGetLastError();
}

}  // namespace

size_t guided_logprobs_workspace_bytes(int64_t B, int splits) { return static_cast<size_t>(B * splits * 12); }

cudaError_t launch_guided_logprobs(int dtype, const void* zp, const void* zb, int64_t sp, int64_t sb, int64_t B,
                                   int64_t V, const float* w, int splits, void* ws, float* out, cudaStream_t stream) {
  switch (dtype) {
    case kF32: return launch<float>(zp, zb, sp, sb, B, V, w, splits, ws, out, stream);
    case kBF16: return launch<__nv_bfloat16>(zp, zb, sp, sb, B, V, w, splits, ws, out, stream);
    case kF16: return launch<__half>(zp, zb, sp, sb, B, V, w, splits, ws, out, stream);
    case kF64: return launch<double>(zp, zb, sp, sb, B, V, w, splits, ws, out, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace cuda
}  // namespace pyalign
