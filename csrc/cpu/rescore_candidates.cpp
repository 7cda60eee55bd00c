// rescore_candidates (ARGS / PANDA) on CPU: score[m, j] = b_j + λ_m r_j (−∞ where b_j is −∞), then the greedy
// argmax over the k·M pairs (ties: smaller m, then smaller j) or the Gumbel-max of score/τ with noise keyed by
// c_j + V·m. Rows with NaN/+inf base terms, non-finite rewards or NaN/+inf λ, or no finite base term: −1 ×3.
#include "cpu_common.h"
#include "ops_cpu.h"
#include "pyalign/op_args.h"

namespace pyalign {
namespace cpu {

std::tuple<at::Tensor, at::Tensor, at::Tensor> rescore_candidates(const at::Tensor& base_terms,
                                                                  const at::Tensor& rewards,
                                                                  const at::Tensor& candidates,
                                                                  const at::Tensor& lambdas,
                                                                  const at::Tensor& temperature,
                                                                  const at::Tensor& rng, int64_t vocab_size) {
  const op_args::RescoreCandidatesArgs a = op_args::prepare_rescore_candidates(
      base_terms, rewards, candidates, lambdas, temperature, rng, vocab_size);
  auto out = op_args::rescore_candidates_outputs(a);
  if (a.B == 0) return out;
  const int64_t B = a.B, k = a.k, M = a.M;
  const float *bp = a.base_terms.data_ptr<float>(), *rp = a.rewards.data_ptr<float>(),
              *lp = a.lambdas.data_ptr<float>(), *tp = a.temperature.data_ptr<float>();
  const int64_t *cp = a.candidates.data_ptr<int64_t>(), *gp = a.rng.data_ptr<int64_t>();
  int64_t *tk = std::get<0>(out).data_ptr<int64_t>(), *ps = std::get<1>(out).data_ptr<int64_t>(),
          *li = std::get<2>(out).data_ptr<int64_t>();
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
  return out;
}

}  // namespace cpu
}  // namespace pyalign
