// C-ABI launchers of the pyalign CUDA kernels (no torch headers: the kernels compile with bare nvcc).
// Every launcher enqueues on `stream`, never synchronises the host (CUDA-graph capturable) and returns the
// launch's cudaError_t. Logits pointers are row-strided ([B, V], element stride 1 along V).
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>

namespace pyalign {
namespace cuda {

enum DType : int { kF32 = 0, kBF16 = 1, kF16 = 2, kF64 = 3 };

// Every launcher accepts any B (1-D grid-stride layouts, no gridDim.y limit) and returns cudaSuccess without
// launching anything when B = 0 (guided_logprobs also when V = 0).
//
// guided_sample: one launch. `splits` blocks per row, from guided_sample_splits (every slice <= 4096 elements;
// the launcher returns cudaErrorInvalidValue otherwise). Workspace of guided_sample_workspace_bytes(B, splits)
// bytes (~16 + 32·splits + 32 KiB per row); the launcher zeroes the part that must start at zero itself (a
// 16·B-byte memset on `stream`, graph-capturable): the caller may pass uninitialised memory.
size_t guided_sample_workspace_bytes(int64_t B, int splits);
int guided_sample_splits(int64_t B, int64_t V, int num_sms);

cudaError_t launch_guided_sample(int dtype, const void* zp, const void* zb, int64_t stride_p, int64_t stride_b,
                                 int64_t B, int64_t V, const float* weight, const float* temperature,
                                 const int64_t* top_k, const float* top_p, const int64_t* rng, int splits,
                                 void* workspace, int64_t* tokens, float* logp, cudaStream_t stream);

// Workspace: B * splits * (2 floats + 1 int).
size_t guided_logprobs_workspace_bytes(int64_t B, int splits);
cudaError_t launch_guided_logprobs(int dtype, const void* zp, const void* zb, int64_t stride_p, int64_t stride_b,
                                   int64_t B, int64_t V, const float* weight, int splits, void* workspace,
                                   float* out, cudaStream_t stream);

// Largest k supported by the in-kernel selection (larger k: the caller sorts).
constexpr int64_t kMaxKernelTopK = 2048;

// keys_ws: B * k uint64 scratch.
cudaError_t launch_topk_candidates(int dtype, const void* logits, int64_t stride, int64_t B, int64_t V, int64_t k,
                                   unsigned long long* keys_ws, float* values, int64_t* indices,
                                   cudaStream_t stream);

// rm: [B, D, V] with strides (rm_stride_b, rm_stride_d); dtypes may differ per tensor. keys_ws: B * k uint64,
// scratch: B * k * (D + 3) floats.
cudaError_t launch_topk_rescore(int base_dtype, const void* base, int64_t base_stride, int rm_dtype, const void* rm,
                                int64_t rm_stride_b, int64_t rm_stride_d, int ref_dtype, const void* ref,
                                int64_t ref_stride, int64_t B, int64_t D, int64_t V, int64_t k, const float* weight,
                                const float* temperature, const int64_t* rng, unsigned long long* keys_ws,
                                float* scratch, int64_t* tokens, int64_t* candidates, float* scores,
                                cudaStream_t stream);

cudaError_t launch_rescore_candidates(const float* base_terms, const float* rewards, const int64_t* candidates,
                                      const float* lambdas, const float* temperature, const int64_t* rng,
                                      int64_t B, int64_t k, int64_t M, int64_t vocab_size, int64_t* tokens,
                                      int64_t* pos, int64_t* lam_idx, cudaStream_t stream);

}  // namespace cuda
}  // namespace pyalign
