// Torch-facing wrappers of the CUDA launchers (csrc/cuda/launchers.h) and their registration under
// TORCH_LIBRARY_IMPL(pyalign_C, CUDA). Arguments are checked and cast by pyalign/op_args.h (shared with the CPU
// ops); B = 0 returns the empty outputs without a launch. Workspaces come from the caching allocator on the
// current stream and are zeroed by a memset kernel: no host synchronisation, CUDA-graph capturable.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <torch/library.h>

#include "cuda/launchers.h"
#include "pyalign/op_args.h"

namespace pyalign {
namespace cuda {
namespace {

int dtype_code(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return kF32;
    case at::kBFloat16: return kBF16;
    case at::kHalf: return kF16;
    case at::kDouble: return kF64;
    default: TORCH_CHECK(false, "pyalign_C: unsupported logits dtype ", t.scalar_type());
  }
}

// SM count of the current device (cudaDeviceGetAttribute is cheap, but cache it per device anyway). Kept
// free of ATen/cuda/CUDAContext.h, whose cuBLAS/cuSPARSE includes would make this file need the full toolkit.
int sm_count() {
  static int cached[64] = {0};
  int dev = 0;
  cudaGetDevice(&dev);
  if (dev < 0 || dev >= 64) dev = 0;
  if (cached[dev] == 0) cudaDeviceGetAttribute(&cached[dev], cudaDevAttrMultiProcessorCount, dev);
  return cached[dev];
}
cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

void check(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, "pyalign_C ", what, " launch failed: ", cudaGetErrorString(err));
}

std::tuple<at::Tensor, at::Tensor> guided_sample(const at::Tensor& logits_pref,
                                                 const c10::optional<at::Tensor>& logits_base,
                                                 const at::Tensor& weight, const at::Tensor& temperature,
                                                 const at::Tensor& top_k, const at::Tensor& top_p,
                                                 const at::Tensor& rng) {
  c10::cuda::CUDAGuard guard(logits_pref.device());
  const op_args::GuidedArgs a =
      op_args::prepare_guided_sample(logits_pref, logits_base, weight, temperature, top_k, top_p, rng);
  auto out = op_args::guided_sample_outputs(a);
  if (a.B == 0) return out;
  const int splits = guided_sample_splits(a.B, a.V, sm_count());
  at::Tensor ws = at::zeros({static_cast<int64_t>(guided_sample_workspace_bytes(a.B, splits))},
                            a.zp.options().dtype(at::kByte));
  check(launch_guided_sample(dtype_code(a.zp), a.zp.data_ptr(), a.zb_ptr(), a.zp.stride(0), a.zb_stride(), a.B, a.V,
                             a.weight.data_ptr<float>(), a.temperature.data_ptr<float>(),
                             a.top_k.data_ptr<int64_t>(), a.top_p.data_ptr<float>(), a.rng.data_ptr<int64_t>(),
                             splits, ws.data_ptr(), std::get<0>(out).data_ptr<int64_t>(),
                             std::get<1>(out).data_ptr<float>(), stream()),
        "guided_sample");
  return out;
}

at::Tensor guided_logprobs(const at::Tensor& logits_pref, const c10::optional<at::Tensor>& logits_base,
                           const at::Tensor& weight) {
  c10::cuda::CUDAGuard guard(logits_pref.device());
  const op_args::GuidedArgs a = op_args::prepare_guided_logprobs(logits_pref, logits_base, weight);
  at::Tensor out = op_args::guided_logprobs_output(a);
  if (a.B == 0) return out;
  const int splits = guided_sample_splits(a.B, a.V, sm_count());
  at::Tensor ws = at::empty({static_cast<int64_t>(guided_logprobs_workspace_bytes(a.B, splits))},
                            a.zp.options().dtype(at::kByte));
  check(launch_guided_logprobs(dtype_code(a.zp), a.zp.data_ptr(), a.zb_ptr(), a.zp.stride(0), a.zb_stride(), a.B,
                               a.V, a.weight.data_ptr<float>(), splits, ws.data_ptr(), out.data_ptr<float>(),
                               stream()),
        "guided_logprobs");
  return out;
}

std::tuple<at::Tensor, at::Tensor> topk_candidates(const at::Tensor& logits_in, int64_t k_in) {
  c10::cuda::CUDAGuard guard(logits_in.device());
  const op_args::TopkCandidatesArgs a = op_args::prepare_topk_candidates(logits_in, k_in);
  if (a.k > kMaxKernelTopK) {  // large k: a stable sort (same order: descending, ties to the smaller index)
    auto sorted = at::sort(a.logits.to(at::kFloat), /*stable=*/true, /*dim=*/-1, /*descending=*/true);
    return {std::get<0>(sorted).narrow(1, 0, a.k).contiguous(), std::get<1>(sorted).narrow(1, 0, a.k).contiguous()};
  }
  auto out = op_args::topk_candidates_outputs(a);
  if (a.B == 0) return out;
  at::Tensor keys = at::empty({a.B, a.k}, a.logits.options().dtype(at::kLong));
  check(launch_topk_candidates(dtype_code(a.logits), a.logits.data_ptr(), a.logits.stride(0), a.B, a.V, a.k,
                               reinterpret_cast<unsigned long long*>(keys.data_ptr<int64_t>()),
                               std::get<0>(out).data_ptr<float>(), std::get<1>(out).data_ptr<int64_t>(), stream()),
        "topk_candidates");
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> topk_rescore(const at::Tensor& base_in, const at::Tensor& rm_in,
                                                            const at::Tensor& ref_in, int64_t k_in,
                                                            const at::Tensor& weight,
                                                            const at::Tensor& temperature, const at::Tensor& rng) {
  c10::cuda::CUDAGuard guard(base_in.device());
  const op_args::TopkRescoreArgs a =
      op_args::prepare_topk_rescore(base_in, rm_in, ref_in, k_in, weight, temperature, rng);
  TORCH_CHECK(a.k <= kMaxKernelTopK, "topk_rescore (cuda): k must be <= ", kMaxKernelTopK, ", got ", a.k,
              "; use the torch backend for larger k");
  auto out = op_args::topk_rescore_outputs(a);
  if (a.B == 0) return out;
  const auto o = a.base.options();
  at::Tensor keys = at::empty({a.B, a.k}, o.dtype(at::kLong));
  at::Tensor scratch = at::empty({a.B, a.k * (a.D + 4)}, o.dtype(at::kFloat));
  check(launch_topk_rescore(dtype_code(a.base), a.base.data_ptr(), a.base.stride(0), dtype_code(a.rm), a.rm.data_ptr(),
                            a.rm.stride(0), a.rm.stride(1), dtype_code(a.ref), a.ref.data_ptr(), a.ref.stride(0), a.B,
                            a.D, a.V, a.k, a.weight.data_ptr<float>(), a.temperature.data_ptr<float>(),
                            a.rng.data_ptr<int64_t>(), reinterpret_cast<unsigned long long*>(keys.data_ptr<int64_t>()),
                            scratch.data_ptr<float>(), std::get<0>(out).data_ptr<int64_t>(),
                            std::get<1>(out).data_ptr<int64_t>(), std::get<2>(out).data_ptr<float>(), stream()),
        "topk_rescore");
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> rescore_candidates(const at::Tensor& base_terms,
                                                                  const at::Tensor& rewards,
                                                                  const at::Tensor& candidates,
                                                                  const at::Tensor& lambdas,
                                                                  const at::Tensor& temperature,
                                                                  const at::Tensor& rng, int64_t vocab_size) {
  c10::cuda::CUDAGuard guard(base_terms.device());
  const op_args::RescoreCandidatesArgs a = op_args::prepare_rescore_candidates(
      base_terms, rewards, candidates, lambdas, temperature, rng, vocab_size);
  auto out = op_args::rescore_candidates_outputs(a);
  if (a.B == 0) return out;
  check(launch_rescore_candidates(a.base_terms.data_ptr<float>(), a.rewards.data_ptr<float>(),
                                  a.candidates.data_ptr<int64_t>(), a.lambdas.data_ptr<float>(),
                                  a.temperature.data_ptr<float>(), a.rng.data_ptr<int64_t>(), a.B, a.k, a.M,
                                  a.vocab_size, std::get<0>(out).data_ptr<int64_t>(),
                                  std::get<1>(out).data_ptr<int64_t>(), std::get<2>(out).data_ptr<int64_t>(),
                                  stream()),
        "rescore_candidates");
  return out;
}

}  // namespace
}  // namespace cuda
}  // namespace pyalign

TORCH_LIBRARY_IMPL(pyalign_C, CUDA, m) {
  m.impl("guided_sample", &pyalign::cuda::guided_sample);
  m.impl("guided_logprobs", &pyalign::cuda::guided_logprobs);
  m.impl("topk_candidates", &pyalign::cuda::topk_candidates);
  m.impl("topk_rescore", &pyalign::cuda::topk_rescore);
  m.impl("rescore_candidates", &pyalign::cuda::rescore_candidates);
}
