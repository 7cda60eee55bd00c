// topk_candidates and topk_rescore (PAD) CUDA kernels, one block per row (B on gridDim.x: any B; B = 0 launches
// nothing; D = 0 reward dimensions: score = base logit of the candidate).
// Candidate selection: block-wide radix select (8 bits per pass, early exit) of the k-th largest packed key
// (order-preserving fp32 image << 32 | ~index: unique keys, ties to the smaller index), then every key >= it is
// appended to a per-row scratch list and ranked (rank = #keys greater; k <= kMaxKernelTopK) into sorted order.
// topk_rescore then gathers the D reward rows and the reference row at the k candidates, computes the masked
// log-softmaxes over k, the scores and the greedy / Gumbel-max choice in the same block.
#include "common.cuh"

namespace pyalign {
namespace cuda {
namespace {

__device__ __forceinline__ void select_sorted_topk(int dtype, const void* row, int64_t V, int64_t k,
                                                   unsigned long long* keys /*[k] global scratch*/,
                                                   int64_t* out_idx /*[k]*/, float* out_val /*[k] or null*/) {
  __shared__ unsigned int hist[256];
  __shared__ int64_t state[4];
  __shared__ unsigned int count;
  auto key_of = [&](int64_t i, unsigned long long* key) {
    *key = pack_key(load_dyn(dtype, row, i), static_cast<uint32_t>(i));
    return true;
  };
  const unsigned long long thr = block_radix_select<unsigned long long>(key_of, V, k, hist, state);
  if (threadIdx.x == 0) count = 0;
  __syncthreads();
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
    const unsigned long long key = pack_key(load_dyn(dtype, row, i), static_cast<uint32_t>(i));
    if (key >= thr) {
      const unsigned int slot = atomicAdd(&count, 1u);
      if (slot < k) keys[slot] = key;
    }
  }
  __threadfence_block();
  __syncthreads();
  for (int64_t j = threadIdx.x; j < k; j += blockDim.x) {
    const unsigned long long key = keys[j];
    int64_t rank = 0;
    for (int64_t q = 0; q < k; ++q) rank += keys[q] > key;
    const int64_t idx = key_index(key);
    out_idx[rank] = idx;
    if (out_val) out_val[rank] = load_dyn(dtype, row, idx);
  }
  __threadfence_block();
  __syncthreads();
}

__global__ void __launch_bounds__(kThreads) topk_candidates_kernel(int dtype, const void* logits, int64_t stride,
                                                                   int64_t V, int64_t k, unsigned long long* keys_ws,
                                                                   float* values, int64_t* indices) {
  const int64_t b = blockIdx.x;
  const int es = dtype == kF32 ? 4 : dtype == kF64 ? 8 : 2;
  const void* row = static_cast<const char*>(logits) + b * stride * es;
  select_sorted_topk(dtype, row, V, k, keys_ws + b * k, indices + b * k, values + b * k);
}

__device__ __forceinline__ const void* row_ptr(int dtype, const void* base, int64_t elems) {
  const int es = dtype == kF32 ? 4 : dtype == kF64 ? 8 : 2;
  return static_cast<const char*>(base) + elems * es;
}

__device__ void masked_log_softmax(const float* x, const unsigned char* valid, int64_t k, float* out) {
  float m = -PYALIGN_INF;
  for (int64_t j = 0; j < k; ++j)
    if (valid[j]) m = fmaxf(m, x[j]);
  float s = 0.0f;
  for (int64_t j = 0; j < k; ++j)
    if (valid[j]) s += expf(x[j] - m);
  const float ls = logf(s);
  for (int64_t j = 0; j < k; ++j) out[j] = valid[j] ? (x[j] - m) - ls : -PYALIGN_INF;
}

__global__ void __launch_bounds__(kThreads) topk_rescore_kernel(
    int base_dtype, const void* base, int64_t base_stride, int rm_dtype, const void* rm, int64_t rm_sb,
    int64_t rm_sd, int ref_dtype, const void* ref, int64_t ref_stride, int64_t D, int64_t V, int64_t k,
    const float* weight, const float* temperature, const int64_t* rng, unsigned long long* keys_ws, float* scratch,
    int64_t* tokens, int64_t* candidates, float* scores) {
  const int64_t b = blockIdx.x;
  const void* brow = row_ptr(base_dtype, base, b * base_stride);
  const void* rrow = row_ptr(ref_dtype, ref, b * ref_stride);
  // bad rows: NaN / +inf anywhere in the inputs of the row
  int bad = 0;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
    bad |= is_bad_value(load_dyn(base_dtype, brow, i)) | is_bad_value(load_dyn(ref_dtype, rrow, i));
    for (int64_t d = 0; d < D; ++d) bad |= is_bad_value(load_dyn(rm_dtype, row_ptr(rm_dtype, rm, b * rm_sb + d * rm_sd), i));
  }
  bad = __syncthreads_or(bad);
  int64_t* cand = candidates + b * k;
  float* score = scores + b * k;
  if (!bad) select_sorted_topk(base_dtype, brow, V, k, keys_ws + b * k, cand, nullptr);
  if (threadIdx.x != 0) return;
  float* bc = scratch + b * k * (D + 4);
  float* rc = bc + k;
  float* lsm = rc + k;
  float* acc = lsm + k;
  float* rmc = acc + k;  // D * k
  unsigned char* valid = reinterpret_cast<unsigned char*>(keys_ws + b * k);  // keys no longer needed
  bool any_valid = false;
  if (!bad) {
    for (int64_t j = 0; j < k; ++j) {
      const int64_t c = cand[j];
      bc[j] = load_dyn(base_dtype, brow, c);
      rc[j] = load_dyn(ref_dtype, rrow, c);
      bool v = isfinite(bc[j]) && isfinite(rc[j]);
      for (int64_t d = 0; d < D; ++d) {
        rmc[d * k + j] = load_dyn(rm_dtype, row_ptr(rm_dtype, rm, b * rm_sb + d * rm_sd), c);
        v = v && isfinite(rmc[d * k + j]);
      }
      valid[j] = v;
      any_valid |= v;
    }
  }
  if (bad || !any_valid) {
    for (int64_t j = 0; j < k; ++j) {
      cand[j] = j;
      score[j] = __int_as_float(0x7fffffff);
    }
    tokens[b] = -1;
    return;
  }
  masked_log_softmax(rc, valid, k, rc);  // ref log-softmax in place
  for (int64_t j = 0; j < k; ++j) acc[j] = 0.0f;  // D = 0: no reward terms, score = base logit
  for (int64_t d = 0; d < D; ++d) {
    masked_log_softmax(rmc + d * k, valid, k, lsm);
    const float wd = weight[b * D + d];
    for (int64_t j = 0; j < k; ++j) {
      const float term = mul_rn(wd, valid[j] ? lsm[j] - rc[j] : 0.0f);
      acc[j] = d == 0 ? term : add_rn(acc[j], term);  // the first term as is (the reference's sum order)
    }
  }
  const float t = temperature[b];
  ArgMax am{-PYALIGN_INF, -1};
  for (int64_t j = 0; j < k; ++j) {
    const float s = valid[j] ? add_rn(bc[j], acc[j]) : -PYALIGN_INF;
    score[j] = s;
    const float v = t > 0.0f ? add_rn(div_rn(s, t), gumbel(rng[2 * b], rng[2 * b + 1], static_cast<uint64_t>(cand[j])))
                             : s;
    if (am.i < 0 || v > am.v) am = ArgMax{v, j};
  }
  tokens[b] = cand[am.i];
}

}  // namespace

cudaError_t launch_topk_candidates(int dtype, const void* logits, int64_t stride, int64_t B, int64_t V, int64_t k,
                                   unsigned long long* keys_ws, float* values, int64_t* indices,
                                   cudaStream_t stream) {
  if (B == 0) return cudaSuccess;  // empty batch: nothing to launch
  if (B < 0 || V < 1 || k < 1 || k > V || k > kMaxKernelTopK) return cudaErrorInvalidValue;
  topk_candidates_kernel<<<static_cast<unsigned int>(B), kThreads, 0, stream>>>(dtype, logits, stride, V, k, keys_ws,
                                                                               values, indices);
  return cudaGetLastError();
}

cudaError_t launch_topk_rescore(int base_dtype, const void* base, int64_t base_stride, int rm_dtype, const void* rm,
                                int64_t rm_stride_b, int64_t rm_stride_d, int ref_dtype, const void* ref,
                                int64_t ref_stride, int64_t B, int64_t D, int64_t V, int64_t k, const float* weight,
                                const float* temperature, const int64_t* rng, unsigned long long* keys_ws,
                                float* scratch, int64_t* tokens, int64_t* candidates, float* scores,
                                cudaStream_t stream) {
  if (B == 0) return cudaSuccess;  // empty batch: nothing to launch
  if (B < 0 || D < 0 || V < 1 || k < 1 || k > V || k > kMaxKernelTopK) return cudaErrorInvalidValue;
  topk_rescore_kernel<<<static_cast<unsigned int>(B), kThreads, 0, stream>>>(
      base_dtype, base, base_stride, rm_dtype, rm, rm_stride_b, rm_stride_d, ref_dtype, ref, ref_stride, D, V, k,
      weight, temperature, rng, keys_ws, scratch, tokens, candidates, scores);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace pyalign
