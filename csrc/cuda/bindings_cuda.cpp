// Torch-facing wrappers of the CUDA launchers (csrc/cuda/launchers.h) and their registration under
// TORCH_LIBRARY_IMPL(pyalign_C, CUDA). Workspaces come from the caching allocator on the current stream and are
// zeroed by a memset kernel: no host synchronisation, CUDA-graph capturable.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <torch/library.h>

#include "cuda/launchers.h"

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

at::Tensor ldc(const at::Tensor& t) { return t.stride(-1) == 1 ? t : t.contiguous(); }
at::Tensor prm(const at::Tensor& t, at::ScalarType dt, const at::Device& dev) {
  return t.to(dev, dt).contiguous();
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

// The optional base context, last dimension contiguous, checked against logits_pref (undefined if absent).
at::Tensor base_context(const at::Tensor& zp, const c10::optional<at::Tensor>& logits_base, const char* op) {
  if (!logits_base.has_value() || !logits_base->defined()) return at::Tensor();
  at::Tensor zb = ldc(*logits_base);
  TORCH_CHECK(zb.sizes() == zp.sizes() && zb.scalar_type() == zp.scalar_type(), op,
              ": logits_base must match logits_pref");
  return zb;
}

std::tuple<at::Tensor, at::Tensor> guided_sample(const at::Tensor& logits_pref,
                                                 const c10::optional<at::Tensor>& logits_base,
                                                 const at::Tensor& weight, const at::Tensor& temperature,
                                                 const at::Tensor& top_k, const at::Tensor& top_p,
                                                 const at::Tensor& rng) {
  TORCH_CHECK(logits_pref.dim() == 2, "guided_sample: logits_pref must be [B, V]");
  c10::cuda::CUDAGuard guard(logits_pref.device());
  const at::Tensor zp = ldc(logits_pref);
  const at::Tensor zb = base_context(zp, logits_base, "guided_sample");
  const auto dev = zp.device();
  const int64_t B = zp.size(0), V = zp.size(1);
  const at::Tensor w = prm(weight, at::kFloat, dev), tau = prm(temperature, at::kFloat, dev),
                   k = prm(top_k, at::kLong, dev), p = prm(top_p, at::kFloat, dev), g = prm(rng, at::kLong, dev);
  const int sms = sm_count();
  const int splits = guided_sample_splits(B, V, sms);
  at::Tensor ws = at::zeros({static_cast<int64_t>(guided_sample_workspace_bytes(B, splits))},
                            zp.options().dtype(at::kByte));
  at::Tensor tokens = at::empty({B}, zp.options().dtype(at::kLong));
  at::Tensor logp = at::empty({B}, zp.options().dtype(at::kFloat));
  check(launch_guided_sample(dtype_code(zp), zp.data_ptr(), zb.defined() ? zb.data_ptr() : nullptr, zp.stride(0),
                             zb.defined() ? zb.stride(0) : 0, B, V, w.data_ptr<float>(), tau.data_ptr<float>(),
                             k.data_ptr<int64_t>(), p.data_ptr<float>(), g.data_ptr<int64_t>(), splits,
                             ws.data_ptr(), tokens.data_ptr<int64_t>(), logp.data_ptr<float>(),
                             stream()),
        "guided_sample");
  return {tokens, logp};
}

at::Tensor guided_logprobs(const at::Tensor& logits_pref, const c10::optional<at::Tensor>& logits_base,
                           const at::Tensor& weight) {
  TORCH_CHECK(logits_pref.dim() == 2, "guided_logprobs: logits_pref must be [B, V]");
  c10::cuda::CUDAGuard guard(logits_pref.device());
  const at::Tensor zp = ldc(logits_pref);
  const at::Tensor zb = base_context(zp, logits_base, "guided_logprobs");
  const int64_t B = zp.size(0), V = zp.size(1);
  const at::Tensor w = prm(weight, at::kFloat, zp.device());
  const int sms = sm_count();
  const int splits = guided_sample_splits(B, V, sms);
  at::Tensor ws = at::empty({static_cast<int64_t>(guided_logprobs_workspace_bytes(B, splits))},
                            zp.options().dtype(at::kByte));
  at::Tensor out = at::empty({B, V}, zp.options().dtype(at::kFloat));
  check(launch_guided_logprobs(dtype_code(zp), zp.data_ptr(), zb.defined() ? zb.data_ptr() : nullptr, zp.stride(0),
                               zb.defined() ? zb.stride(0) : 0, B, V, w.data_ptr<float>(), splits, ws.data_ptr(),
                               out.data_ptr<float>(), stream()),
        "guided_logprobs");
  return out;
}

std::tuple<at::Tensor, at::Tensor> topk_candidates(const at::Tensor& logits_in, int64_t k) {
  TORCH_CHECK(logits_in.dim() == 2, "topk_candidates: logits must be [B, V]");
  c10::cuda::CUDAGuard guard(logits_in.device());
  const at::Tensor logits = ldc(logits_in);
  const int64_t B = logits.size(0), V = logits.size(1);
  TORCH_CHECK(k >= 1 && k <= V, "topk_candidates: k must be in [1, V]");
  if (k > kMaxKernelTopK) {  // large k: a stable sort (same order: descending, ties to the smaller index)
    auto sorted = at::sort(logits.to(at::kFloat), /*stable=*/true, /*dim=*/-1, /*descending=*/true);
    return {std::get<0>(sorted).narrow(1, 0, k).contiguous(), std::get<1>(sorted).narrow(1, 0, k).contiguous()};
  }
  at::Tensor keys = at::empty({B, k}, logits.options().dtype(at::kLong));
  at::Tensor values = at::empty({B, k}, logits.options().dtype(at::kFloat));
  at::Tensor indices = at::empty({B, k}, logits.options().dtype(at::kLong));
  check(launch_topk_candidates(dtype_code(logits), logits.data_ptr(), logits.stride(0), B, V, k,
                               reinterpret_cast<unsigned long long*>(keys.data_ptr<int64_t>()),
                               values.data_ptr<float>(), indices.data_ptr<int64_t>(),
                               stream()),
        "topk_candidates");
  return {values, indices};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> topk_rescore(const at::Tensor& base_in, const at::Tensor& rm_in,
                                                            const at::Tensor& ref_in, int64_t k,
                                                            const at::Tensor& weight,
                                                            const at::Tensor& temperature, const at::Tensor& rng) {
  TORCH_CHECK(base_in.dim() == 2 && ref_in.dim() == 2 && rm_in.dim() == 3,
              "topk_rescore: base/ref must be [B, V] and rm [B, D, V]");
  c10::cuda::CUDAGuard guard(base_in.device());
  const at::Tensor base = ldc(base_in), ref = ldc(ref_in), rm = ldc(rm_in);
  const int64_t B = base.size(0), V = base.size(1), D = rm.size(1);
  TORCH_CHECK(k >= 1 && k <= kMaxKernelTopK && k <= V, "topk_rescore (cuda): k must be in [1, min(V, ",
              kMaxKernelTopK, ")]");
  const auto dev = base.device();
  const at::Tensor w = prm(weight, at::kFloat, dev).reshape({B, D}).contiguous(),
                   tau = prm(temperature, at::kFloat, dev), g = prm(rng, at::kLong, dev);
  at::Tensor keys = at::empty({B, k}, base.options().dtype(at::kLong));
  at::Tensor scratch = at::empty({B, k * (D + 4)}, base.options().dtype(at::kFloat));
  at::Tensor tokens = at::empty({B}, base.options().dtype(at::kLong));
  at::Tensor cand = at::empty({B, k}, base.options().dtype(at::kLong));
  at::Tensor scores = at::empty({B, k}, base.options().dtype(at::kFloat));
  check(launch_topk_rescore(dtype_code(base), base.data_ptr(), base.stride(0), dtype_code(rm), rm.data_ptr(),
                            rm.stride(0), rm.stride(1), dtype_code(ref), ref.data_ptr(), ref.stride(0), B, D, V, k,
                            w.data_ptr<float>(), tau.data_ptr<float>(), g.data_ptr<int64_t>(),
                            reinterpret_cast<unsigned long long*>(keys.data_ptr<int64_t>()),
                            scratch.data_ptr<float>(), tokens.data_ptr<int64_t>(), cand.data_ptr<int64_t>(),
                            scores.data_ptr<float>(), stream()),
        "topk_rescore");
  return {tokens, cand, scores};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> rescore_candidates(const at::Tensor& base_terms,
                                                                  const at::Tensor& rewards,
                                                                  const at::Tensor& candidates,
                                                                  const at::Tensor& lambdas,
                                                                  const at::Tensor& temperature,
                                                                  const at::Tensor& rng, int64_t vocab_size) {
  c10::cuda::CUDAGuard guard(base_terms.device());
  const auto dev = base_terms.device();
  const at::Tensor b = prm(base_terms, at::kFloat, dev), r = prm(rewards, at::kFloat, dev),
                   c = prm(candidates, at::kLong, dev), lam = prm(lambdas, at::kFloat, dev),
                   tau = prm(temperature, at::kFloat, dev), g = prm(rng, at::kLong, dev);
  const int64_t B = b.size(0), k = b.size(1), M = lam.size(1);
  at::Tensor tokens = at::empty({B}, b.options().dtype(at::kLong));
  at::Tensor pos = at::empty({B}, b.options().dtype(at::kLong));
  at::Tensor li = at::empty({B}, b.options().dtype(at::kLong));
  check(launch_rescore_candidates(b.data_ptr<float>(), r.data_ptr<float>(), c.data_ptr<int64_t>(),
                                  lam.data_ptr<float>(), tau.data_ptr<float>(), g.data_ptr<int64_t>(), B, k, M,
                                  vocab_size, tokens.data_ptr<int64_t>(), pos.data_ptr<int64_t>(),
                                  li.data_ptr<int64_t>(), stream()),
        "rescore_candidates");
  return {tokens, pos, li};
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
