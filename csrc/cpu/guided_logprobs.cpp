// guided_logprobs on CPU: log_softmax(zb + w(zp - zb)) over the vocabulary, [B, V] fp32.
// Pass 1: (row, chunk) tasks compute the bad flag and an online (max, sum) of z; merged per row.
// Pass 2: (row, chunk) tasks recompute z tile by tile and write (z - max) - log(sum). Bad rows (NaN/+inf input
// or no finite z) are filled with NaN.
#include "cpu_common.h"
#include "ops_cpu.h"
#include "pyalign/op_args.h"

namespace pyalign {
namespace cpu {
namespace {

template <typename T>
void run(const at::Tensor& zp_t, const at::Tensor* zb_t, const float* w, at::Tensor& out) {
  const int64_t B = zp_t.size(0), V = zp_t.size(1);
  const T* zp0 = zp_t.data_ptr<T>();
  const T* zb0 = zb_t ? zb_t->data_ptr<T>() : nullptr;
  const int64_t sp = zp_t.stride(0), sb = zb_t ? zb_t->stride(0) : 0;
  float* o = out.data_ptr<float>();
  const Partition part = partition_rows(B, V);
  std::vector<MaxSum> ms(B * part.chunks, MaxSum{kNegInf, 0.0f});
  std::vector<int> bad(B * part.chunks, 0);
  for_tasks(B * part.chunks, part.chunk_len, [&](int64_t t) {
    const int64_t r = t / part.chunks, c = t % part.chunks;
    const int64_t lo = c * part.chunk_len, hi = std::min(V, lo + part.chunk_len);
    alignas(64) float buf[kTile];
    MaxSum m{kNegInf, 0.0f};
    int b = 0;
    for (int64_t t0 = lo; t0 < hi && !b; t0 += kTile) {
      const int n = static_cast<int>(std::min<int64_t>(kTile, hi - t0));
      b |= combine_tile<T>(zp0 + r * sp + t0, zb0 ? zb0 + r * sb + t0 : nullptr, w[r], n, buf);
      const float tm = tile_max(buf, n);
      if (!b && tm != kNegInf) m = maxsum_merge(m, MaxSum{tm, tile_sumexp(buf, n, tm)});
    }
    ms[t] = m;
    bad[t] = b;
  });
  std::vector<float> rmax(B), rlog(B);
  std::vector<int> rbad(B);
  for (int64_t r = 0; r < B; ++r) {
    MaxSum m = ms[r * part.chunks];
    int b = bad[r * part.chunks];
    for (int64_t c = 1; c < part.chunks; ++c) {
      m = maxsum_merge(m, ms[r * part.chunks + c]);
      b |= bad[r * part.chunks + c];
    }
    rbad[r] = b || m.m == kNegInf;
    rmax[r] = m.m;
    rlog[r] = std::log(m.s);
  }
  for_tasks(B * part.chunks, part.chunk_len, [&](int64_t t) {
    const int64_t r = t / part.chunks, c = t % part.chunks;
    const int64_t lo = c * part.chunk_len, hi = std::min(V, lo + part.chunk_len);
    float* orow = o + r * V;
    if (rbad[r]) {
      std::fill(orow + lo, orow + hi, std::numeric_limits<float>::quiet_NaN());
      return;
    }
    alignas(64) float buf[kTile];
    for (int64_t t0 = lo; t0 < hi; t0 += kTile) {
      const int n = static_cast<int>(std::min<int64_t>(kTile, hi - t0));
      combine_tile<T>(zp0 + r * sp + t0, zb0 ? zb0 + r * sb + t0 : nullptr, w[r], n, buf);
      tile_logsoftmax(buf, n, rmax[r], rlog[r], orow + t0);
    }
  });
}

}  // namespace

at::Tensor guided_logprobs(const at::Tensor& logits_pref, const c10::optional<at::Tensor>& logits_base,
                           const at::Tensor& weight) {
  const op_args::GuidedArgs a = op_args::prepare_guided_logprobs(logits_pref, logits_base, weight);
  at::Tensor out = op_args::guided_logprobs_output(a);
  if (a.B == 0) return out;
  PYALIGN_DISPATCH_LOGITS(a.zp.scalar_type(), "guided_logprobs", [&] {
    run<scalar_t>(a.zp, a.zb.defined() ? &a.zb : nullptr, a.weight.data_ptr<float>(), out);
  });
  return out;
}

}  // namespace cpu
}  // namespace pyalign
