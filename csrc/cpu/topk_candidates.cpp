// topk_candidates on CPU: the k largest logits of each row (fp32 values), descending, ties to the smaller index
// (NaN counts as the largest, as in torch.sort). Each (row, chunk) task keeps its k best packed keys
// (order-preserving float image << 32 | ~index) in a min-heap with a float pre-filter (k <= 256) or selects them
// with nth_element; the per-row merge selects and sorts the k best of the chunk winners.
#include "cpu_common.h"
#include "ops_cpu.h"
#include "pyalign/op_args.h"

namespace pyalign {
namespace cpu {

std::tuple<at::Tensor, at::Tensor> topk_candidates(const at::Tensor& logits_in, int64_t k_in) {
  const op_args::TopkCandidatesArgs a = op_args::prepare_topk_candidates(logits_in, k_in);
  auto out = op_args::topk_candidates_outputs(a);
  if (a.B == 0) return out;
  const at::Tensor& logits = a.logits;
  const int64_t B = a.B, V = a.V, k = a.k;
  std::vector<Key> keys(B * k);
  PYALIGN_DISPATCH_LOGITS(logits.scalar_type(), "topk_candidates", [&] {
    const scalar_t* base = logits.data_ptr<scalar_t>();
    const int64_t st = logits.stride(0);
    topk_rows(B, V, k, [&](int64_t r) {
      const scalar_t* row = base + r * st;
      return [row](int64_t i) { return static_cast<float>(row[i]); };
    }, keys.data());
  });
  float* v = std::get<0>(out).data_ptr<float>();
  int64_t* ix = std::get<1>(out).data_ptr<int64_t>();
  PYALIGN_DISPATCH_LOGITS(logits.scalar_type(), "topk_candidates", [&] {
    const scalar_t* base = logits.data_ptr<scalar_t>();
    const int64_t st = logits.stride(0);
    for (int64_t r = 0; r < B; ++r)
      for (int64_t j = 0; j < k; ++j) {
        const int64_t i = key_index(keys[r * k + j]);
        ix[r * k + j] = i;
        v[r * k + j] = static_cast<float>(base[r * st + i]);  // exact value (NaN payload and -0 kept)
      }
  });
  return out;
}

}  // namespace cpu
}  // namespace pyalign
