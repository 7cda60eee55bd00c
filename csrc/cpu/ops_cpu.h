// CPU implementations of the pyalign_C ops (registered in csrc/bindings.cpp). Their arguments are checked and
// cast by pyalign/op_args.h, shared with the CUDA bindings.
#pragma once
#include <ATen/ATen.h>
#include <tuple>

namespace pyalign {
namespace cpu {

std::tuple<at::Tensor, at::Tensor> guided_sample(const at::Tensor& logits_pref,
                                                 const c10::optional<at::Tensor>& logits_base,
                                                 const at::Tensor& weight, const at::Tensor& temperature,
                                                 const at::Tensor& top_k, const at::Tensor& top_p,
                                                 const at::Tensor& rng);
at::Tensor guided_logprobs(const at::Tensor& logits_pref, const c10::optional<at::Tensor>& logits_base,
                           const at::Tensor& weight);
std::tuple<at::Tensor, at::Tensor> topk_candidates(const at::Tensor& logits, int64_t k);
std::tuple<at::Tensor, at::Tensor, at::Tensor> topk_rescore(const at::Tensor& base_logits,
                                                            const at::Tensor& rm_logits,
                                                            const at::Tensor& ref_logits, int64_t k,
                                                            const at::Tensor& weight,
                                                            const at::Tensor& temperature, const at::Tensor& rng);
std::tuple<at::Tensor, at::Tensor, at::Tensor> rescore_candidates(const at::Tensor& base_terms,
                                                                  const at::Tensor& rewards,
                                                                  const at::Tensor& candidates,
                                                                  const at::Tensor& lambdas,
                                                                  const at::Tensor& temperature,
                                                                  const at::Tensor& rng, int64_t vocab_size);

}  // namespace cpu
}  // namespace pyalign
