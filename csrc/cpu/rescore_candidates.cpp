// rescore_candidates (ARGS / PANDA) on CPU: score[m, j] = b_j + λ_m r_j (−∞ where b_j is −∞), then the greedy
// argmax over the k·M pairs (ties: smaller m, then smaller j) or the Gumbel-max of score/τ with noise keyed by
// c_j + V·m. Rows with NaN/+inf base terms, non-finite rewards or NaN/+inf λ, or no finite base term: −1 ×3.
#include "cpu_common.h"
#include "ops_cpu.h"

namespace pyalign {
namespace cpu {

std::tuple<at::Tensor, at::Tensor, at::Tensor> rescore_candidates(const at::Tensor& base_terms,
                                                                  const at::Tensor& rewards,
                                                                  const at::Tensor& candidates,
                                                                  const at::Tensor& lambdas,
                                                                  const at::Tensor& temperature,
                                                                  const at::Tensor& rng, int64_t vocab_size) {
  const at::Tensor b = param(base_terms, at::kFloat), rw = param(rewards, at::kFloat),
                   c = param(candidates, at::kLong), lam = param(lambdas, at::kFloat),
                   tau = param(temperature, at::kFloat), g = param(rng, at::kLong);
  TORCH_CHECK(b.dim() == 2 && rw.sizes() == b.sizes() && c.sizes() == b.sizes() && lam.dim() == 2 &&
                  lam.size(0) == b.size(0),
              "rescore_candidates: base_terms, rewards, candidates must be [B, k] and lambdas [B, M]");
  const int64_t B = b.size(0), k = b.size(1), M = lam.size(1);
  at::Tensor tokens = at::empty({B}, base_terms.options().dtype(at::kLong));
  at::Tensor pos = at::empty({B}, base_terms.options().dtype(at::kLong));
  at::Tensor lidx = at::empty({B}, base_terms.options().dtype(at::kLong));
  const float *bp = b.data_ptr<float>(), *rp = rw.data_ptr<float>(), *lp = lam.data_ptr<float>(),
              *tp = tau.data_ptr<float>();
  const int64_t *cp = c.data_ptr<int64_t>(), *gp = g.data_ptr<int64_t>();
  int64_t *tk = tokens.data_ptr<int64_t>(), *ps = pos.data_ptr<int64_t>(), *li = lidx.data_ptr<int64_t>();
  for_tasks(B, k * M * 16, [&](int64_t r) {
    const float* br = bp + r * k;
    const float* rr = rp + r * k;
    const float* lr = lp + r * M;
    bool bad = false, any_finite = false;
    for (int64_t j = 0; j < k; ++j) {
      bad |= is_bad_value(br[j]) || !std::isfinite(rr[j]);
      any_finite |= std::isfinite(br[j]);
    }
    for (int64_t m = 0; m < M; ++m) bad |= is_bad_value(lr[m]);
    if (bad || !any_finite) {
      tk[r] = ps[r] = li[r] = -1;
      return;
    }
    const float t = tp[r];
    ArgMax am{kNegInf, -1};
    for (int64_t m = 0; m < M; ++m)
      for (int64_t j = 0; j < k; ++j) {
        float s = br[j] == kNegInf ? kNegInf : br[j] + lr[m] * rr[j];
        if (t > 0.0f) {
          const uint64_t idx = static_cast<uint64_t>(cp[r * k + j] + vocab_size * m);
          s = s / t + gumbel_noise(gp[2 * r], gp[2 * r + 1], idx);
        }
        if (am.i < 0 || s > am.v) am = ArgMax{s, m * k + j};
      }
    ps[r] = am.i % k;
    li[r] = am.i / k;
    tk[r] = cp[r * k + ps[r]];
  });
  return {tokens, pos, lidx};
}

}  // namespace cpu
}  // namespace pyalign
