// guided_sample on CPU: z = zb + w(zp - zb) (fp32), log-sum-exp of z, and the token: greedy argmax (τ = 0) or
// Gumbel-max of z/τ + g(seed, offset, i) with the Philox noise of philox.h, after optional top-k / top-p.
//
// Unfiltered rows (greedy, or no top-k/top-p): ONE pass over the row, split into (row, chunk) tasks when the
// batch is small; each task keeps an online (max, sum) and an (value, index) argmax, merged per row. The Gumbel
// noise is only drawn for tokens that can still win: s + g <= s + 17 < best prunes a token without computing
// its Philox/log (exact: it cannot change the argmax).
//
// Filtered rows (τ > 0 with 0 < k < V or p < 1), one thread per row, over an fp32 copy of the row:
//  - top-k threshold: the k-th largest s = z/τ (a min-heap of packed keys for k <= 256, nth_element above);
//    keep s >= kth (ties at the k-th value kept, as in the reference);
//  - top-p threshold: a 65 536-bin histogram of the softmax mass over the order-preserving image of s (the top
//    16 bits), scanned from the top to find the bin where the cumulative mass reaches p; only that bin's
//    elements are sorted to find the smallest s whose mass strictly above is < p. No full-vocabulary sort;
//  - then the pruned Gumbel-max over the kept tokens.
// Rows with NaN/+inf inputs or no finite z give token -1 and log-prob NaN.
#include "cpu_common.h"
#include "ops_cpu.h"
#include "pyalign/op_args.h"

namespace pyalign {
namespace cpu {
namespace {

struct RowParams {
  float w, tau, p;
  int64_t k, seed, offset;
};

struct Partial {
  MaxSum ms{kNegInf, 0.0f};
  ArgMax am{kNegInf, -1};
  int bad = 0;
};

template <typename T>
void unfiltered_chunk(const T* zp, const T* zb, const RowParams& rp, int64_t lo, int64_t hi, Partial& out) {
  alignas(64) float buf[kTile];
  Partial P;
  const bool greedy = !(rp.tau > 0.0f);
  for (int64_t t0 = lo; t0 < hi; t0 += kTile) {
    const int n = static_cast<int>(std::min<int64_t>(kTile, hi - t0));
    P.bad |= combine_tile<T>(zp + t0, zb ? zb + t0 : nullptr, rp.w, n, buf);
    if (P.bad) break;
    const float tm = tile_max(buf, n);
    if (tm == kNegInf) continue;
    P.ms = maxsum_merge(P.ms, MaxSum{tm, tile_sumexp(buf, n, tm)});
    if (greedy) {
      if (P.am.i < 0 || tm > P.am.v) {
        int j = 0;
        while (buf[j] != tm) ++j;
        P.am = ArgMax{tm, t0 + j};
      }
    } else {
      const float sm = tm / rp.tau;
      if (P.am.i >= 0 && sm + kGumbelMax < P.am.v) continue;
      tile_div(buf, n, rp.tau);
      for (int j = 0; j < n; ++j) {
        const float s = buf[j];
        if (s == kNegInf) continue;
        if (P.am.i >= 0 && s + kGumbelMax < P.am.v) continue;
        const float v = s + gumbel_noise(rp.seed, rp.offset, static_cast<uint64_t>(t0 + j));
        if (P.am.i < 0 || v > P.am.v) P.am = ArgMax{v, t0 + j};
      }
    }
  }
  out = P;
}

// Filtered row: returns the token (or -1) and writes the (max, sum) statistics of z.
template <typename T>
int64_t filtered_row(const T* zp, const T* zb, const RowParams& rp, int64_t V, MaxSum& ms_out,
                     std::vector<float>& s, std::vector<double>& hist) {
  s.resize(V);
  int bad = 0;
  MaxSum ms{kNegInf, 0.0f};
  for (int64_t t0 = 0; t0 < V; t0 += kTile) {
    const int n = static_cast<int>(std::min<int64_t>(kTile, V - t0));
    bad |= combine_tile<T>(zp + t0, zb ? zb + t0 : nullptr, rp.w, n, s.data() + t0);
    if (bad) return -1;
    const float tm = tile_max(s.data() + t0, n);
    if (tm != kNegInf) ms = maxsum_merge(ms, MaxSum{tm, tile_sumexp(s.data() + t0, n, tm)});
    tile_div(s.data() + t0, n, rp.tau);
  }
  ms_out = ms;
  if (ms.m == kNegInf) return -1;
  const float max_s = ms.m / rp.tau;
  float thr = kNegInf;
  if (rp.k > 0 && rp.k < V) {
    std::vector<Key> keys;
    const float* sp = s.data();
    topk_range([sp](int64_t i) { return sp[i]; }, 0, V, rp.k, keys);
    Key mn = keys[0];
    for (Key x : keys) mn = x < mn ? x : mn;
    thr = key_score(mn);
  }
  if (rp.p < 1.0f) {
    // Histogram of exp(s - max) over the kept tokens by the top 16 bits of the ordered image.
    if (hist.size() != 65536) hist.assign(65536, 0.0);
    uint32_t bmin = 65535, bmax = 0;
    double Z = 0.0;
    for (int64_t i = 0; i < V; ++i) {
      const float x = s[i];
      if (!(x >= thr) || x == kNegInf) continue;
      const double e = std::exp(static_cast<double>(x - max_s));
      const uint32_t b = ordered_image(x) >> 16;
      hist[b] += e;
      Z += e;
      bmin = b < bmin ? b : bmin;
      bmax = b > bmax ? b : bmax;
    }
    const double target = static_cast<double>(rp.p) * Z;
    double above = 0.0;
    int64_t bstar = -1;
    for (int64_t b = bmax; b >= static_cast<int64_t>(bmin); --b) {
      if (above + hist[b] >= target) {
        bstar = b;
        break;
      }
      above += hist[b];
    }
    for (uint32_t b = bmin; b <= bmax; ++b) hist[b] = 0.0;
    if (bstar >= 0) {
      std::vector<float> vals;
      for (int64_t i = 0; i < V; ++i) {
        const float x = s[i];
        if (!(x >= thr) || x == kNegInf) continue;
        if ((ordered_image(x) >> 16) == static_cast<uint32_t>(bstar)) vals.push_back(x);
      }
      std::sort(vals.begin(), vals.end(), std::greater<float>());
      float tp = vals.empty() ? kNegInf : vals[0];
      double cum = above;  // mass strictly above the current tie group
      size_t g = 0;
      while (g < vals.size()) {
        size_t h = g;
        double group = 0.0;
        while (h < vals.size() && vals[h] == vals[g]) {
          group += std::exp(static_cast<double>(vals[h] - max_s));
          ++h;
        }
        if (cum < target) tp = vals[g];
        else break;
        cum += group;
        g = h;
      }
      thr = std::max(thr, tp);
    }
  }
  ArgMax am{kNegInf, -1};
  for (int64_t i = 0; i < V; ++i) {
    const float x = s[i];
    if (!(x >= thr) || x == kNegInf) continue;
    if (am.i >= 0 && x + kGumbelMax < am.v) continue;
    const float v = x + gumbel_noise(rp.seed, rp.offset, static_cast<uint64_t>(i));
    if (am.i < 0 || v > am.v) am = ArgMax{v, i};
  }
  return am.i;
}

template <typename T>
void run(const at::Tensor& zp_t, const at::Tensor* zb_t, const std::vector<RowParams>& params, at::Tensor& tokens,
         at::Tensor& logp) {
  const int64_t B = zp_t.size(0), V = zp_t.size(1);
  const T* zp0 = zp_t.data_ptr<T>();
  const T* zb0 = zb_t ? zb_t->data_ptr<T>() : nullptr;
  const int64_t sp = zp_t.stride(0), sb = zb_t ? zb_t->stride(0) : 0;
  int64_t* tok = tokens.data_ptr<int64_t>();
  float* lp = logp.data_ptr<float>();

  std::vector<int64_t> plain, filtered;
  for (int64_t r = 0; r < B; ++r) {
    const RowParams& p = params[r];
    const bool sampled = p.tau > 0.0f;
    if (sampled && ((p.k > 0 && p.k < V) || p.p < 1.0f)) filtered.push_back(r);
    else plain.push_back(r);
  }
  std::vector<MaxSum> stats(B, MaxSum{kNegInf, 0.0f});
  std::vector<int64_t> chosen(B, -1);

  if (!plain.empty()) {
    const int64_t nb = static_cast<int64_t>(plain.size());
    const Partition part = partition_rows(nb, V);
    std::vector<Partial> partial(nb * part.chunks);
    for_tasks(nb * part.chunks, part.chunk_len, [&](int64_t t) {
      const int64_t r = plain[t / part.chunks], c = t % part.chunks;
      const int64_t lo = c * part.chunk_len, hi = std::min(V, lo + part.chunk_len);
      unfiltered_chunk<T>(zp0 + r * sp, zb0 ? zb0 + r * sb : nullptr, params[r], lo, hi, partial[t]);
    });
    for (int64_t j = 0; j < nb; ++j) {
      Partial P = partial[j * part.chunks];
      for (int64_t c = 1; c < part.chunks; ++c) {
        const Partial& Q = partial[j * part.chunks + c];
        P.bad |= Q.bad;
        P.ms = maxsum_merge(P.ms, Q.ms);
        P.am = argmax_merge(P.am, Q.am);
      }
      const int64_t r = plain[j];
      stats[r] = P.ms;
      chosen[r] = (P.bad || P.ms.m == kNegInf) ? -1 : P.am.i;
    }
  }
  if (!filtered.empty()) {
    for_tasks(static_cast<int64_t>(filtered.size()), V, [&](int64_t j) {
      thread_local std::vector<float> s;
      thread_local std::vector<double> hist;
      const int64_t r = filtered[j];
      chosen[r] = filtered_row<T>(zp0 + r * sp, zb0 ? zb0 + r * sb : nullptr, params[r], V, stats[r], s, hist);
    });
  }
  for (int64_t r = 0; r < B; ++r) {
    const int64_t t = chosen[r];
    tok[r] = t;
    if (t < 0) {
      lp[r] = std::numeric_limits<float>::quiet_NaN();
      continue;
    }
    const float a = load_f(zp0 + r * sp, t);
    const float z = zb0 ? guided_combine(a, load_f(zb0 + r * sb, t), params[r].w) : a;
    lp[r] = (z - stats[r].m) - std::log(stats[r].s);
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> guided_sample(const at::Tensor& logits_pref,
                                                 const c10::optional<at::Tensor>& logits_base,
                                                 const at::Tensor& weight, const at::Tensor& temperature,
                                                 const at::Tensor& top_k, const at::Tensor& top_p,
                                                 const at::Tensor& rng) {
  const op_args::GuidedArgs a =
      op_args::prepare_guided_sample(logits_pref, logits_base, weight, temperature, top_k, top_p, rng);
  auto out = op_args::guided_sample_outputs(a);
  if (a.B == 0) return out;
  const float *w = a.weight.data_ptr<float>(), *tau = a.temperature.data_ptr<float>();
  const float* p = a.top_p.data_ptr<float>();
  const int64_t *k = a.top_k.data_ptr<int64_t>(), *g = a.rng.data_ptr<int64_t>();
  std::vector<RowParams> params(a.B);
  for (int64_t r = 0; r < a.B; ++r) params[r] = RowParams{w[r], tau[r], p[r], k[r], g[2 * r], g[2 * r + 1]};
  PYALIGN_DISPATCH_LOGITS(a.zp.scalar_type(), "guided_sample", [&] {
    run<scalar_t>(a.zp, a.zb.defined() ? &a.zb : nullptr, params, std::get<0>(out), std::get<1>(out));
  });
  return out;
}

}  // namespace cpu
}  // namespace pyalign
