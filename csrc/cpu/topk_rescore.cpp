// topk_rescore (PAD) on CPU, one op: per row, the top-k candidates of the base logits (chunk-parallel packed-key
// selection, see topk_candidates.cpp), gather of the D reward-model rows and the reference row at the k
// candidates, log-softmax over the valid candidates, score_j = base_j + Σ_d w_d (rm_d[j] − ref[j]), and the
// greedy argmax or the Gumbel-max of score/τ with noise keyed by the candidate's token id.
// Rows with a NaN/+inf input or no valid candidate: token −1, candidates 0..k−1, scores NaN (the torch backend).
#include "cpu_common.h"
#include "ops_cpu.h"
#include "pyalign/op_args.h"

namespace pyalign {
namespace cpu {
namespace {

template <typename T>
bool row_has_bad(const T* p, int64_t V) {
  int bad = 0;
  for (int64_t i = 0; i < V; ++i) bad |= !(static_cast<float>(p[i]) < kPosInf);
  return bad != 0;
}

bool any_bad(const at::Tensor& t, int64_t offset, int64_t V) {
  return PYALIGN_DISPATCH_LOGITS(t.scalar_type(), "topk_rescore",
                                 [&] { return row_has_bad<scalar_t>(t.data_ptr<scalar_t>() + offset, V); });
}

float load_any(const at::Tensor& t, int64_t offset) {
  return PYALIGN_DISPATCH_LOGITS(t.scalar_type(), "topk_rescore",
                                 [&] { return static_cast<float>(t.data_ptr<scalar_t>()[offset]); });
}

void log_softmax_valid(const float* x, const uint8_t* valid, int64_t k, float* out) {
  float m = kNegInf;
  for (int64_t j = 0; j < k; ++j)
    if (valid[j]) m = std::max(m, x[j]);
  float s = 0.0f;
  for (int64_t j = 0; j < k; ++j)
    if (valid[j]) s += std::exp(x[j] - m);
  const float ls = std::log(s);
  for (int64_t j = 0; j < k; ++j) out[j] = valid[j] ? (x[j] - m) - ls : kNegInf;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> topk_rescore(const at::Tensor& base_in, const at::Tensor& rm_in,
                                                            const at::Tensor& ref_in, int64_t k_in,
                                                            const at::Tensor& weight,
                                                            const at::Tensor& temperature, const at::Tensor& rng) {
  const op_args::TopkRescoreArgs a =
      op_args::prepare_topk_rescore(base_in, rm_in, ref_in, k_in, weight, temperature, rng);
  auto out = op_args::topk_rescore_outputs(a);
  if (a.B == 0) return out;
  const at::Tensor &base = a.base, &ref = a.ref, &rm = a.rm;
  const int64_t B = a.B, V = a.V, D = a.D, k = a.k;
  const float* wp = a.weight.data_ptr<float>();
  const float* taup = a.temperature.data_ptr<float>();
  const int64_t* gp = a.rng.data_ptr<int64_t>();

  // 1. bad rows (NaN/+inf anywhere in the row's inputs)
  const int64_t S = D + 2;
  std::vector<uint8_t> sub_bad(B * S, 0);
  for_tasks(B * S, V, [&](int64_t t) {
    const int64_t r = t / S, d = t % S;
    if (d == 0) sub_bad[t] = any_bad(base, r * base.stride(0), V);
    else if (d == 1) sub_bad[t] = any_bad(ref, r * ref.stride(0), V);
    else sub_bad[t] = any_bad(rm, r * rm.stride(0) + (d - 2) * rm.stride(1), V);
  });
  std::vector<uint8_t> bad(B, 0);
  for (int64_t t = 0; t < B * S; ++t) bad[t / S] |= sub_bad[t];

  // 2. candidates
  std::vector<Key> keys(B * k, 0);
  PYALIGN_DISPATCH_LOGITS(base.scalar_type(), "topk_rescore", [&] {
    const scalar_t* b0 = base.data_ptr<scalar_t>();
    const int64_t st = base.stride(0);
    topk_rows(B, V, k, [&](int64_t r) {
      const scalar_t* row = b0 + r * st;
      return [row](int64_t i) { return static_cast<float>(row[i]); };
    }, keys.data(), &bad);
  });

  int64_t* tk = std::get<0>(out).data_ptr<int64_t>();
  int64_t* cp = std::get<1>(out).data_ptr<int64_t>();
  float* sc = std::get<2>(out).data_ptr<float>();

  // 3. rescoring
  for_tasks(B, k * S * 8, [&](int64_t r) {
    int64_t* c = cp + r * k;
    float* score = sc + r * k;
    auto mark_bad = [&] {
      for (int64_t j = 0; j < k; ++j) {
        c[j] = j;
        score[j] = std::numeric_limits<float>::quiet_NaN();
      }
      tk[r] = -1;
    };
    if (bad[r]) return mark_bad();
    std::vector<float> bc(k), rc(k), tmp(k), lsm(k), reward(k, 0.0f), rmc(k * D);
    std::vector<uint8_t> valid(k);
    bool any_valid = false;
    for (int64_t j = 0; j < k; ++j) {
      c[j] = key_index(keys[r * k + j]);
      bc[j] = load_any(base, r * base.stride(0) + c[j]);
      rc[j] = load_any(ref, r * ref.stride(0) + c[j]);
      bool v = std::isfinite(bc[j]) && std::isfinite(rc[j]);
      for (int64_t d = 0; d < D; ++d) {
        rmc[d * k + j] = load_any(rm, r * rm.stride(0) + d * rm.stride(1) + c[j]);
        v = v && std::isfinite(rmc[d * k + j]);
      }
      valid[j] = v;
      any_valid |= v;
    }
    if (!any_valid) return mark_bad();
    std::vector<float> ref_lsm(k);
    log_softmax_valid(rc.data(), valid.data(), k, ref_lsm.data());
    std::vector<float> acc(k, 0.0f);
    for (int64_t d = 0; d < D; ++d) {
      log_softmax_valid(rmc.data() + d * k, valid.data(), k, lsm.data());
      const float wd = wp[r * D + d];
      for (int64_t j = 0; j < k; ++j) {
        const float rew = valid[j] ? lsm[j] - ref_lsm[j] : 0.0f;
        const float term = wd * rew;
        acc[j] = d == 0 ? term : acc[j] + term;
      }
    }
    for (int64_t j = 0; j < k; ++j) score[j] = valid[j] ? bc[j] + acc[j] : kNegInf;
    const float t = taup[r];
    ArgMax am{kNegInf, -1};
    for (int64_t j = 0; j < k; ++j) {
      float v;
      if (t > 0.0f) v = score[j] / t + gumbel_noise(gp[2 * r], gp[2 * r + 1], static_cast<uint64_t>(c[j]));
      else v = score[j];
      if (am.i < 0 || v > am.v) am = ArgMax{v, j};
    }
    tk[r] = c[am.i];
  });
  return out;
}

}  // namespace cpu
}  // namespace pyalign
