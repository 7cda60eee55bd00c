// guided_logprobs CUDA kernels, 1-D grid-stride over (row, split) tasks (any B: a flattened batch x sequence can
// exceed the 65 535 rows gridDim.y allows). Kernel 1: each block computes (max, sum, bad) of its slice of the
// guided logits. Kernel 2: each block merges its row's `splits` partial pairs (block-parallel) and writes
// (z − max) − log sum for its slice (NaN for bad rows). Two launches, deterministic, no atomics, no host sync;
// 16-byte vector loads where the rows are aligned.
#include "common.cuh"

namespace pyalign {
namespace cuda {
namespace {

template <typename T>
__global__ void __launch_bounds__(kThreads) glp_stats_kernel(const T* __restrict__ zp0, const T* __restrict__ zb0,
                                                             int64_t sp, int64_t sb, int64_t B, int64_t V,
                                                             const float* w, int splits, int64_t chunk, float2* part,
                                                             int* part_bad) {
  using RMS = cub::BlockReduce<MaxSum, kThreads>;
  using RI = cub::BlockReduce<int, kThreads>;
  __shared__ union {
    typename RMS::TempStorage ms;
    typename RI::TempStorage i;
  } tmp;
  const int64_t ntasks = B * splits;
  for (int64_t task = blockIdx.x; task < ntasks; task += gridDim.x) {
    const int64_t b = task / splits, c = task % splits;
    const T* zp = zp0 + b * sp;
    const T* zb = zb0 ? zb0 + b * sb : nullptr;
    const int64_t hi = (c + 1) * chunk < V ? (c + 1) * chunk : V;
    const int64_t lo = c * chunk < hi ? c * chunk : hi;
    MaxSum ms{-PYALIGN_INF, 0.0f};
    int bad = 0;
    for_each_z(zp, zb, lo, hi, w[b], bad, [&](int64_t, float z) { ms = maxsum_add(ms, z); });
    ms = RMS(tmp.ms).Reduce(ms, MaxSumOp());
    __syncthreads();
    bad = RI(tmp.i).Sum(bad);
    if (threadIdx.x == 0) {
      part[task] = make_float2(ms.m, ms.s);
      part_bad[task] = bad;
    }
    __syncthreads();
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) glp_write_kernel(const T* __restrict__ zp0, const T* __restrict__ zb0,
                                                             int64_t sp, int64_t sb, int64_t B, int64_t V,
                                                             const float* w, int splits, int64_t chunk,
                                                             const float2* part, const int* part_bad, float* out) {
  using RMS = cub::BlockReduce<MaxSum, kThreads>;
  using RI = cub::BlockReduce<int, kThreads>;
  __shared__ union {
    typename RMS::TempStorage ms;
    typename RI::TempStorage i;
  } tmp;
  __shared__ float s_m, s_ls;
  __shared__ int s_bad;
  const int64_t ntasks = B * splits;
  for (int64_t task = blockIdx.x; task < ntasks; task += gridDim.x) {
    const int64_t b = task / splits, c = task % splits;
    MaxSum ms{-PYALIGN_INF, 0.0f};
    int bad = 0;
    for (int s = threadIdx.x; s < splits; s += kThreads) {
      const float2 p = part[b * splits + s];
      ms = maxsum_merge(ms, MaxSum{p.x, p.y});
      bad |= part_bad[b * splits + s];
    }
    ms = RMS(tmp.ms).Reduce(ms, MaxSumOp());
    __syncthreads();
    bad = RI(tmp.i).Sum(bad);
    if (threadIdx.x == 0) {
      s_m = ms.m;
      s_ls = logf(ms.s);
      s_bad = bad != 0 || ms.m == -PYALIGN_INF;
    }
    __syncthreads();
    const T* zp = zp0 + b * sp;
    const T* zb = zb0 ? zb0 + b * sb : nullptr;
    const int64_t hi = (c + 1) * chunk < V ? (c + 1) * chunk : V;
    const int64_t lo = c * chunk < hi ? c * chunk : hi;
    float* o = out + b * V;
    const float m = s_m, ls = s_ls;
    const bool row_bad = s_bad != 0;
    int d = 0;
    for_each_z(zp, zb, lo, hi, w[b], d, [&](int64_t i, float z) {
      o[i] = row_bad ? __int_as_float(0x7fffffff) : (z - m) - ls;
    });
    __syncthreads();
  }
}

template <typename T>
cudaError_t launch(const void* zp, const void* zb, int64_t sp, int64_t sb, int64_t B, int64_t V, const float* w,
                   int splits, void* ws, float* out, cudaStream_t stream) {
  float2* part = static_cast<float2*>(ws);
  int* part_bad = reinterpret_cast<int*>(part + B * splits);
  const int64_t chunk = (V + splits - 1) / splits;
  const int64_t ntasks = B * splits;
  const unsigned int grid = static_cast<unsigned int>(ntasks < 0x7fffffffLL ? ntasks : 0x7fffffffLL);
  glp_stats_kernel<T><<<grid, kThreads, 0, stream>>>(static_cast<const T*>(zp), static_cast<const T*>(zb), sp, sb, B,
                                                     V, w, splits, chunk, part, part_bad);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  glp_write_kernel<T><<<grid, kThreads, 0, stream>>>(static_cast<const T*>(zp), static_cast<const T*>(zb), sp, sb, B,
                                                     V, w, splits, chunk, part, part_bad, out);
  return cudaGetLastError();
}

}  // namespace

size_t guided_logprobs_workspace_bytes(int64_t B, int splits) {
  return B > 0 && splits > 0 ? static_cast<size_t>(B * splits * 12) : 16;
}

cudaError_t launch_guided_logprobs(int dtype, const void* zp, const void* zb, int64_t sp, int64_t sb, int64_t B,
                                   int64_t V, const float* w, int splits, void* ws, float* out, cudaStream_t stream) {
  if (B == 0 || V == 0) return cudaSuccess;  // empty output: nothing to launch
  if (B < 0 || V < 0 || splits < 1) return cudaErrorInvalidValue;
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
