// topk_candidates on CPU: the k largest logits of each row (fp32 values), descending, ties to the smaller index
// (NaN counts as the largest, as in torch.sort). Each (row, chunk) task keeps its k best packed keys
// (order-preserving float image << 32 | ~index) in a min-heap with a float pre-filter (k <= 256) or selects them
// with nth_element; the per-row merge selects and sorts the k best of the chunk winners.
#include "cpu_common.h"
#include "ops_cpu.h"

namespace pyalign {
namespace cpu {

std::tuple<at::Tensor, at::Tensor> topk_candidates(const at::Tensor& logits_in, int64_t k) {
  TORCH_CHECK(logits_in.dim() == 2, "topk_candidates: logits must be [B, V]");
  const at::Tensor logits = last_dim_contiguous(logits_in);
  const int64_t B = logits.size(0), V = logits.size(1);
  TORCH_CHECK(k >= 1 && k <= V, "topk_candidates: k must be in [1, V]");
  std::vector<Key> keys(B * k);
  PYALIGN_DISPATCH_LOGITS(logits.scalar_type(), "topk_candidates", [&] {
    const scalar_t* base = logits.data_ptr<scalar_t>();
    const int64_t st = logits.stride(0);
    topk_rows(B, V, k, [&](int64_t r) {
      const scalar_t* row = base + r * st;
      return [row](int64_t i) { return static_cast<float>(row[i]); };
    }, keys.data());
  });
  at::Tensor values = at::empty({B, k}, logits.options().dtype(at::kFloat));
  at::Tensor indices = at::empty({B, k}, logits.options().dtype(at::kLong));
  float* v = values.data_ptr<float>();
  int64_t* ix = indices.data_ptr<int64_t>();
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
  return {values, indices};
}

}  // namespace cpu
}  // namespace pyalign
