// Registers the C++ ops as torch.ops.pyalign_C.* (schemas + CPU kernels). The CUDA kernels are registered in
// csrc/cuda/bindings_cuda.cpp when the extension is built with CUDA. The Python-level torch.ops.pyalign.*
// namespace (pyalign/_ops.py) dispatches to backends and is never registered from C++; its schemas must equal
// these (tests/test_op_schemas.py compares both as registered). Argument checks: pyalign/op_args.h.
#include <torch/library.h>

#include "cpu/ops_cpu.h"

TORCH_LIBRARY(pyalign_C, m) {
  m.def("guided_sample(Tensor logits_pref, Tensor? logits_base, Tensor weight, Tensor temperature, "
        "Tensor top_k, Tensor top_p, Tensor rng) -> (Tensor, Tensor)");
  m.def("guided_logprobs(Tensor logits_pref, Tensor? logits_base, Tensor weight) -> Tensor");
  m.def("topk_candidates(Tensor logits, int k) -> (Tensor, Tensor)");
  m.def("topk_rescore(Tensor base_logits, Tensor rm_logits, Tensor ref_logits, int k, Tensor weight, "
        "Tensor temperature, Tensor rng) -> (Tensor, Tensor, Tensor)");
  m.def("rescore_candidates(Tensor base_terms, Tensor rewards, Tensor candidates, Tensor lambdas, "
        "Tensor temperature, Tensor rng, int vocab_size) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(pyalign_C, CPU, m) {
  m.impl("guided_sample", &pyalign::cpu::guided_sample);
  m.impl("guided_logprobs", &pyalign::cpu::guided_logprobs);
  m.impl("topk_candidates", &pyalign::cpu::topk_candidates);
  m.impl("topk_rescore", &pyalign::cpu::topk_rescore);
  m.impl("rescore_candidates", &pyalign::cpu::rescore_candidates);
}
