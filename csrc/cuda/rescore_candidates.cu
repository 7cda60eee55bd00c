// rescore_candidates (ARGS / PANDA) CUDA kernel: one thread per row (k·M is small), the same loop as the CPU
// kernel: score = b_j + λ_m r_j, greedy argmax over (m, j) or Gumbel-max of score/τ keyed by c_j + V·m.
#include "common.cuh"

namespace pyalign {
namespace cuda {
namespace {

__global__ void rescore_candidates_kernel(const float* bt, const float* rw, const int64_t* cand, const float* lam,
                                          const float* tau, const int64_t* rng, int64_t B, int64_t k, int64_t M,
                                          int64_t V, int64_t* tokens, int64_t* pos, int64_t* lam_idx) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= B) return;
  const float* br = bt + r * k;
  const float* rr = rw + r * k;
  const float* lr = lam + r * M;
  bool bad = false, any_finite = false;
  for (int64_t j = 0; j < k; ++j) {
    bad |= is_bad_value(br[j]) || !isfinite(rr[j]);
    any_finite |= isfinite(br[j]);
  }
  for (int64_t m = 0; m < M; ++m) bad |= is_bad_value(lr[m]);
  if (bad || !any_finite) {
    tokens[r] = pos[r] = lam_idx[r] = -1;
    return;
  }
  const float t = tau[r];
  ArgMax am{-PYALIGN_INF, -1};
  for (int64_t m = 0; m < M; ++m)
    for (int64_t j = 0; j < k; ++j) {
      float s = br[j] == -PYALIGN_INF ? -PYALIGN_INF : add_rn(br[j], mul_rn(lr[m], rr[j]));
      if (t > 0.0f)
        s = add_rn(div_rn(s, t), gumbel(rng[2 * r], rng[2 * r + 1], static_cast<uint64_t>(cand[r * k + j] + V * m)));
      if (am.i < 0 || s > am.v) am = ArgMax{s, m * k + j};
    }
  if (am.i < 0) {  // k = 0 or M = 0: nothing to choose
    tokens[r] = pos[r] = lam_idx[r] = -1;
    return;
  }
  pos[r] = am.i % k;
  lam_idx[r] = am.i / k;
  tokens[r] = cand[r * k + am.i % k];
}

}  // namespace

cudaError_t launch_rescore_candidates(const float* base_terms, const float* rewards, const int64_t* candidates,
                                      const float* lambdas, const float* temperature, const int64_t* rng, int64_t B,
                                      int64_t k, int64_t M, int64_t vocab_size, int64_t* tokens, int64_t* pos,
                                      int64_t* lam_idx, cudaStream_t stream) {
  if (B == 0) return cudaSuccess;  // empty batch: an empty grid is a launch error
  if (B < 0 || k < 0 || M < 0) return cudaErrorInvalidValue;
  const int threads = 128;
  const unsigned int blocks = static_cast<unsigned int>((B + threads - 1) / threads);
  rescore_candidates_kernel<<<blocks, threads, 0, stream>>>(base_terms, rewards, candidates, lambdas, temperature,
                                                           rng, B, k, M, vocab_size, tokens, pos, lam_idx);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace pyalign
