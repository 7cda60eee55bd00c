// guided_sample CUDA kernels (no torch headers; launcher in launchers.h).
//
// 1. gs_split_kernel, grid (splits, B): rows without top-k/top-p (greedy or plain sampling). Each block scans a
//    slice of the row once: combination, online (max, sum), and the argmax of z (greedy) or of z/τ + g (Gumbel,
//    pruned: s + 17 < best cannot win, so its Philox/log is skipped). With splits = 1 the block writes the result;
//    otherwise each block stores its (max, sum) pair, folds its (score, index) winner into a packed 64-bit
//    atomicMax (order-preserving score image << 32 | ~index: ties to the smaller index), and the last block to
//    finish (atomic counter, threadfence) merges the pairs, writes token and log-prob, and re-arms the slots.
// 2. gs_filtered_kernel, grid (B): rows with top-k and/or top-p, one block per row, passes over the row:
//    stats; top-k threshold = radix select (4 × 8 bits) of the k-th largest image of s = z/τ; top-p threshold =
//    radix descent over the same image with softmax-mass histograms (the bucket where the mass from the top
//    reaches p·Z); then the pruned Gumbel-max over the kept tokens. No sort.
// Both kernels are always launched (rows select themselves on device): no host sync, graph-capturable.
#include "common.cuh"

namespace pyalign {
namespace cuda {
namespace {

struct RowP {
  float w, tau, p;
  int64_t k, seed, offset;
};

__device__ __forceinline__ RowP row_params(int64_t b, const float* w, const float* tau, const int64_t* top_k,
                                           const float* top_p, const int64_t* rng) {
  return RowP{w[b], tau[b], top_p[b], top_k[b], rng[2 * b], rng[2 * b + 1]};
}

__device__ __forceinline__ bool is_filtered(const RowP& r, int64_t V) {
  return r.tau > 0.0f && ((r.k > 0 && r.k < V) || r.p < 1.0f);
}

template <typename T>
__device__ __forceinline__ void finalize(const T* zp, const T* zb, int64_t b, int64_t token, MaxSum ms, bool bad,
                                         float w, int64_t* tokens, float* logp) {
  if (bad || ms.m == -PYALIGN_INF || token < 0) {
    tokens[b] = -1;
    logp[b] = __int_as_float(0x7fffffff);
    return;
  }
  int dummy = 0;
  const float z = zval(zp, zb, token, w, dummy);
  tokens[b] = token;
  logp[b] = (z - ms.m) - logf(ms.s);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) gs_split_kernel(
    const T* __restrict__ zp0, const T* __restrict__ zb0, int64_t sp, int64_t sb, int64_t V, const float* w,
    const float* tau, const int64_t* top_k, const float* top_p, const int64_t* rng, int splits, int64_t chunk,
    float2* part, unsigned long long* best, unsigned int* flags, unsigned int* counter, int64_t* tokens,
    float* logp) {
  const int64_t b = blockIdx.y;
  const RowP rp = row_params(b, w, tau, top_k, top_p, rng);
  if (is_filtered(rp, V)) return;
  const T* zp = zp0 + b * sp;
  const T* zb = zb0 ? zb0 + b * sb : nullptr;
  const int64_t lo = static_cast<int64_t>(blockIdx.x) * chunk;
  const int64_t hi = lo + chunk < V ? lo + chunk : V;
  const bool greedy = !(rp.tau > 0.0f);
  MaxSum ms{-PYALIGN_INF, 0.0f};
  ArgMax am{-PYALIGN_INF, -1};
  int bad = 0;
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
    const float z = zval(zp, zb, i, rp.w, bad);
    if (z == -PYALIGN_INF) continue;
    ms = maxsum_add(ms, z);
    if (greedy) {
      if (am.i < 0 || z > am.v) am = ArgMax{z, i};
    } else {
      const float s = div_rn(z, rp.tau);
      if (am.i >= 0 && add_rn(s, kGumbelMax) < am.v) continue;
      const float v = add_rn(s, gumbel(rp.seed, rp.offset, static_cast<uint64_t>(i)));
      if (am.i < 0 || v > am.v) am = ArgMax{v, i};
    }
  }
  using RMS = cub::BlockReduce<MaxSum, kThreads>;
  using RAM = cub::BlockReduce<ArgMax, kThreads>;
  using RI = cub::BlockReduce<int, kThreads>;
  __shared__ union {
    typename RMS::TempStorage ms;
    typename RAM::TempStorage am;
    typename RI::TempStorage i;
  } tmp;
  ms = RMS(tmp.ms).Reduce(ms, MaxSumOp());
  __syncthreads();
  am = RAM(tmp.am).Reduce(am, ArgMaxOp());
  __syncthreads();
  bad = RI(tmp.i).Sum(bad);
  if (threadIdx.x != 0) return;
  if (splits == 1) {
    finalize(zp, zb, b, am.i, ms, bad != 0, rp.w, tokens, logp);
    return;
  }
  part[b * splits + blockIdx.x] = make_float2(ms.m, ms.s);
  if (am.i >= 0) atomicMax(&best[b], pack_key(am.v, static_cast<uint32_t>(am.i)));
  if (bad) atomicOr(&flags[b], 1u);
  __threadfence();
  const unsigned int done = atomicAdd(&counter[b], 1u);
  if (done != static_cast<unsigned int>(splits - 1)) return;
  __threadfence();
  MaxSum tot{-PYALIGN_INF, 0.0f};
  volatile float2* vp = part + b * splits;
  for (int s = 0; s < splits; ++s) {
    const float m = vp[s].x, sum = vp[s].y;
    tot = maxsum_merge(tot, MaxSum{m, sum});
  }
  const unsigned long long key = atomicExch(&best[b], 0ull);
  const unsigned int f = atomicExch(&flags[b], 0u);
  counter[b] = 0u;
  finalize(zp, zb, b, key == 0ull ? -1 : static_cast<int64_t>(key_index(key)), tot, f != 0, rp.w, tokens, logp);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) gs_filtered_kernel(
    const T* __restrict__ zp0, const T* __restrict__ zb0, int64_t sp, int64_t sb, int64_t V, const float* w,
    const float* tau, const int64_t* top_k, const float* top_p, const int64_t* rng, int64_t* tokens, float* logp) {
  const int64_t b = blockIdx.x;
  const RowP rp = row_params(b, w, tau, top_k, top_p, rng);
  if (!is_filtered(rp, V)) return;
  const T* zp = zp0 + b * sp;
  const T* zb = zb0 ? zb0 + b * sb : nullptr;
  using RMS = cub::BlockReduce<MaxSum, kThreads>;
  using RAM = cub::BlockReduce<ArgMax, kThreads>;
  using RI = cub::BlockReduce<int, kThreads>;
  using RF = cub::BlockReduce<float, kThreads>;
  __shared__ union {
    typename RMS::TempStorage ms;
    typename RAM::TempStorage am;
    typename RI::TempStorage i;
    typename RF::TempStorage f;
  } tmp;
  __shared__ unsigned int hist[256];
  __shared__ float mhist[256];
  __shared__ int64_t state[4];
  __shared__ MaxSum s_ms;
  __shared__ int s_bad;
  __shared__ float s_f;

  // pass 1: statistics of z
  MaxSum ms{-PYALIGN_INF, 0.0f};
  int bad = 0;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) ms = maxsum_add(ms, zval(zp, zb, i, rp.w, bad));
  ms = RMS(tmp.ms).Reduce(ms, MaxSumOp());
  __syncthreads();
  bad = RI(tmp.i).Sum(bad);
  if (threadIdx.x == 0) {
    s_ms = ms;
    s_bad = bad;
  }
  __syncthreads();
  ms = s_ms;
  if (s_bad || ms.m == -PYALIGN_INF) {
    if (threadIdx.x == 0) finalize(zp, zb, b, -1, ms, true, rp.w, tokens, logp);
    return;
  }
  const float max_s = div_rn(ms.m, rp.tau);
  auto s_of = [&](int64_t i) {
    int d = 0;
    return div_rn(zval(zp, zb, i, rp.w, d), rp.tau);
  };
  // top-k threshold
  float thr = -PYALIGN_INF;
  if (rp.k > 0 && rp.k < V) {
    auto key_of = [&](int64_t i, uint32_t* key) {
      *key = ordered_image(s_of(i));
      return true;
    };
    thr = image_to_float(block_radix_select<uint32_t>(key_of, V, rp.k, hist, state));
  }
  // top-p threshold: radix descent over the image with mass histograms
  if (rp.p < 1.0f) {
    float z = 0.0f;
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
      const float s = s_of(i);
      if (s >= thr && s != -PYALIGN_INF) z += expf(s - max_s);
    }
    z = RF(tmp.f).Sum(z);
    if (threadIdx.x == 0) s_f = z;
    __syncthreads();
    const float target = rp.p * s_f;
    float above = 0.0f;
    uint32_t prefix = 0, mask = 0;
    bool found = true;
    for (int shift = 24; shift >= 0 && found; shift -= 8) {
      for (int d = threadIdx.x; d < 256; d += blockDim.x) mhist[d] = 0.0f;
      __syncthreads();
      for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
        const float s = s_of(i);
        if (!(s >= thr) || s == -PYALIGN_INF) continue;
        const uint32_t img = ordered_image(s);
        if ((img & mask) == prefix) atomicAdd(&mhist[(img >> shift) & 255], expf(s - max_s));
      }
      __syncthreads();
      if (threadIdx.x == 0) {
        int sel = -1, last_nonempty = -1;
        float a = above;
        for (int d = 255; d >= 0; --d) {
          if (mhist[d] > 0.0f) last_nonempty = d;
          if (a + mhist[d] >= target && mhist[d] > 0.0f) {
            sel = d;
            break;
          }
          a += mhist[d];
        }
        if (sel < 0) sel = last_nonempty;  // rounding: the mass never reached p·Z in this bucket range
        if (sel >= 0 && mhist[sel] > 0.0f) {
          // mass of the buckets above sel
          float aa = above;
          for (int d = 255; d > sel; --d) aa += mhist[d];
          s_f = aa;
        }
        state[0] = sel;
      }
      __syncthreads();
      const int sel = static_cast<int>(state[0]);
      if (sel < 0) {
        found = false;
      } else {
        above = s_f;
        prefix |= static_cast<uint32_t>(sel) << shift;
        mask |= 255u << shift;
      }
      __syncthreads();
    }
    if (found) thr = fmaxf(thr, image_to_float(prefix));
  }
  // sample
  ArgMax am{-PYALIGN_INF, -1};
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
    const float s = s_of(i);
    if (!(s >= thr) || s == -PYALIGN_INF) continue;
    if (am.i >= 0 && add_rn(s, kGumbelMax) < am.v) continue;
    const float v = add_rn(s, gumbel(rp.seed, rp.offset, static_cast<uint64_t>(i)));
    if (am.i < 0 || v > am.v) am = ArgMax{v, i};
  }
  am = RAM(tmp.am).Reduce(am, ArgMaxOp());
  if (threadIdx.x == 0) finalize(zp, zb, b, am.i, ms, false, rp.w, tokens, logp);
}

template <typename T>
cudaError_t launch(const void* zp, const void* zb, int64_t sp, int64_t sb, int64_t B, int64_t V, const float* w,
                   const float* tau, const int64_t* top_k, const float* top_p, const int64_t* rng, int splits,
                   void* ws, int64_t* tokens, float* logp, cudaStream_t stream) {
  char* p = static_cast<char*>(ws);
  unsigned long long* best = reinterpret_cast<unsigned long long*>(p);
  float2* part = reinterpret_cast<float2*>(p + 8 * B);
  unsigned int* flags = reinterpret_cast<unsigned int*>(p + 8 * B + 8 * B * splits);
  unsigned int* counter = flags + B;
  const int64_t chunk = (V + splits - 1) / splits;
  dim3 grid(splits, static_cast<unsigned int>(B));
  gs_split_kernel<T><<<grid, kThreads, 0, stream>>>(static_cast<const T*>(zp), static_cast<const T*>(zb), sp, sb, V,
                                                    w, tau, top_k, top_p, rng, splits, chunk, part, best, flags,
                                                    counter, tokens, logp);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  gs_filtered_kernel<T><<<static_cast<unsigned int>(B), kThreads, 0, stream>>>(
      static_cast<const T*>(zp), static_cast<const T*>(zb), sp, sb, V, w, tau, top_k, top_p, rng, tokens, logp);
  return cudaGetLastError();
}

}  // namespace

size_t guided_sample_workspace_bytes(int64_t B, int splits) {
  return static_cast<size_t>(8 * B + 8 * B * splits + 8 * B);
}

int guided_sample_splits(int64_t B, int64_t V, int num_sms) {
  // enough blocks for ~2 waves, each block at least 4096 elements
  int64_t want = (2 * static_cast<int64_t>(num_sms) + B - 1) / B;
  int64_t by_size = V / 4096;
  if (by_size < 1) by_size = 1;
  int64_t s = want < by_size ? want : by_size;
  if (s > 1024) s = 1024;
  return static_cast<int>(s < 1 ? 1 : s);
}

cudaError_t launch_guided_sample(int dtype, const void* zp, const void* zb, int64_t sp, int64_t sb, int64_t B,
                                 int64_t V, const float* w, const float* tau, const int64_t* top_k,
                                 const float* top_p, const int64_t* rng, int splits, void* ws, int64_t* tokens,
                                 float* logp, cudaStream_t stream) {
  switch (dtype) {
    case kF32: return launch<float>(zp, zb, sp, sb, B, V, w, tau, top_k, top_p, rng, splits, ws, tokens, logp, stream);
    case kBF16:
      return launch<__nv_bfloat16>(zp, zb, sp, sb, B, V, w, tau, top_k, top_p, rng, splits, ws, tokens, logp, stream);
    case kF16: return launch<__half>(zp, zb, sp, sb, B, V, w, tau, top_k, top_p, rng, splits, ws, tokens, logp, stream);
    case kF64: return launch<double>(zp, zb, sp, sb, B, V, w, tau, top_k, top_p, rng, splits, ws, tokens, logp, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace cuda
}  // namespace pyalign
