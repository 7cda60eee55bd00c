// Argument preparation of the pyalign_C ops, written once for the CPU bindings (csrc/cpu/*.cpp) and the CUDA
// bindings (csrc/cuda/bindings_cuda.cpp). Per op, prepare_<op>(...) checks the arguments (errors name the op,
// the argument, what was expected and the fix) and returns a struct of prepared arguments:
//  - logits: dim checked, dtype float32 / bfloat16 / float16 / float64, on one device, last dimension
//    contiguous (any row stride);
//  - per-row parameters: numel checked, cast to the kernel dtype (fp32 or int64), contiguous, moved to the
//    logits' device;
// and <op>_outputs(args) allocates the outputs (the shapes and dtypes of the fake kernels in pyalign/_ops.py).
// The kernels return those (empty) outputs as they are when B = 0.
// Torch headers only (no CUDA), so the CPU build and the g++ syntax check of the CUDA bindings both include it.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <tuple>

namespace pyalign {
namespace op_args {

// t, or a copy whose last dimension is contiguous (rows may keep any stride).
inline at::Tensor last_dim_contiguous(const at::Tensor& t) {
  return t.dim() == 0 || t.stride(-1) == 1 ? t : t.contiguous();
}

// A parameter cast to the kernel dtype, contiguous, on `device`.
inline at::Tensor param(const at::Tensor& t, at::ScalarType dtype, const at::Device& device) {
  return t.to(device, dtype).contiguous();
}

inline bool is_logits_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kBFloat16 || t == at::kHalf || t == at::kDouble;
}

// logits tensor `name` of op `op`: `dim` dimensions ([B, V] or [B, D, V]), a supported floating dtype.
inline void check_logits(const at::Tensor& t, const char* op, const char* name, int64_t dim, const char* shape) {
  TORCH_CHECK(t.defined(), op, ": ", name, " is undefined; pass a ", shape, " tensor");
  TORCH_CHECK(t.dim() == dim, op, ": ", name, " must be ", shape, ", got shape ", t.sizes());
  TORCH_CHECK(is_logits_dtype(t.scalar_type()), op, ": ", name, " has dtype ", t.scalar_type(),
              "; expected float32, bfloat16, float16 or float64 (cast it with .float())");
}

inline void check_same_device(const at::Tensor& t, const at::Tensor& like, const char* op, const char* name,
                              const char* like_name) {
  TORCH_CHECK(t.device() == like.device(), op, ": ", name, " is on ", t.device(), " but ", like_name, " is on ",
              like.device(), "; move both to the same device");
}

// A per-row parameter with `n` entries (`what` describes the expected shape), cast and moved to `device`.
inline at::Tensor row_param(const at::Tensor& t, int64_t n, at::ScalarType dtype, const at::Device& device,
                            const char* op, const char* name, const char* what) {
  TORCH_CHECK(t.defined(), op, ": ", name, " is undefined; pass ", what);
  TORCH_CHECK(t.numel() == n, op, ": ", name, " must have ", n, " entries (", what, "), got shape ", t.sizes());
  return param(t, dtype, device);
}

inline void check_k(int64_t k, int64_t V, const char* op) {
  TORCH_CHECK(k >= 1 && k <= V, op, ": k must be in [1, V] = [1, ", V, "], got ", k,
              "; ask for at most as many candidates as the vocabulary holds");
}

// ------------------------------------------------------------------ guided_sample / guided_logprobs
struct GuidedArgs {
  at::Tensor zp;           // logits_pref [B, V], last dimension contiguous
  at::Tensor zb;           // logits_base [B, V] (same dtype and device as zp), undefined when absent
  at::Tensor weight;       // [B] fp32
  at::Tensor temperature;  // [B] fp32 (guided_sample only)
  at::Tensor top_k;        // [B] int64 (guided_sample only)
  at::Tensor top_p;        // [B] fp32 (guided_sample only)
  at::Tensor rng;          // [B, 2] int64 (seed, offset) (guided_sample only)
  int64_t B = 0, V = 0;
  const void* zb_ptr() const { return zb.defined() ? zb.data_ptr() : nullptr; }
  int64_t zb_stride() const { return zb.defined() ? zb.stride(0) : 0; }
};

// The checks and casts shared by both guided ops (logits and weight).
inline GuidedArgs prepare_guided(const char* op, const at::Tensor& logits_pref,
                                 const c10::optional<at::Tensor>& logits_base, const at::Tensor& weight) {
  check_logits(logits_pref, op, "logits_pref", 2, "[B, V]");
  GuidedArgs a;
  a.zp = last_dim_contiguous(logits_pref);
  a.B = a.zp.size(0);
  a.V = a.zp.size(1);
  TORCH_CHECK(a.V >= 1, op, ": logits_pref has an empty vocabulary (shape ", a.zp.sizes(),
              "); pass at least one logit per row");
  if (logits_base.has_value() && logits_base->defined()) {
    const at::Tensor& zb = *logits_base;
    check_logits(zb, op, "logits_base", 2, "[B, V]");
    TORCH_CHECK(zb.sizes() == a.zp.sizes(), op, ": logits_base must have the shape of logits_pref ",
                a.zp.sizes(), ", got ", zb.sizes(), "; both contexts must come from the same model");
    TORCH_CHECK(zb.scalar_type() == a.zp.scalar_type(), op, ": logits_base has dtype ", zb.scalar_type(),
                " but logits_pref has ", a.zp.scalar_type(), "; cast both to one dtype");
    check_same_device(zb, a.zp, op, "logits_base", "logits_pref");
    a.zb = last_dim_contiguous(zb);
  }
  a.weight = row_param(weight, a.B, at::kFloat, a.zp.device(), op, "weight", "one guidance weight per row");
  return a;
}

inline GuidedArgs prepare_guided_sample(const at::Tensor& logits_pref, const c10::optional<at::Tensor>& logits_base,
                                        const at::Tensor& weight, const at::Tensor& temperature,
                                        const at::Tensor& top_k, const at::Tensor& top_p, const at::Tensor& rng) {
  constexpr const char* op = "guided_sample";
  GuidedArgs a = prepare_guided(op, logits_pref, logits_base, weight);
  const at::Device dev = a.zp.device();
  a.temperature = row_param(temperature, a.B, at::kFloat, dev, op, "temperature", "one per row, 0 = greedy");
  a.top_k = row_param(top_k, a.B, at::kLong, dev, op, "top_k", "one per row, 0 = no top-k filter");
  a.top_p = row_param(top_p, a.B, at::kFloat, dev, op, "top_p", "one per row, 1 = no top-p filter");
  a.rng = row_param(rng, 2 * a.B, at::kLong, dev, op, "rng", "[B, 2]: (seed, offset) per row");
  return a;
}

// (tokens [B] int64, log-probs [B] fp32)
inline std::tuple<at::Tensor, at::Tensor> guided_sample_outputs(const GuidedArgs& a) {
  return {at::empty({a.B}, a.zp.options().dtype(at::kLong)), at::empty({a.B}, a.zp.options().dtype(at::kFloat))};
}

inline GuidedArgs prepare_guided_logprobs(const at::Tensor& logits_pref,
                                          const c10::optional<at::Tensor>& logits_base, const at::Tensor& weight) {
  return prepare_guided("guided_logprobs", logits_pref, logits_base, weight);
}

// log-probs [B, V] fp32 (contiguous)
inline at::Tensor guided_logprobs_output(const GuidedArgs& a) {
  return at::empty({a.B, a.V}, a.zp.options().dtype(at::kFloat));
}

// ------------------------------------------------------------------ topk_candidates
struct TopkCandidatesArgs {
  at::Tensor logits;  // [B, V], last dimension contiguous
  int64_t B = 0, V = 0, k = 0;
};

inline TopkCandidatesArgs prepare_topk_candidates(const at::Tensor& logits, int64_t k) {
  constexpr const char* op = "topk_candidates";
  check_logits(logits, op, "logits", 2, "[B, V]");
  TopkCandidatesArgs a;
  a.logits = last_dim_contiguous(logits);
  a.B = a.logits.size(0);
  a.V = a.logits.size(1);
  check_k(k, a.V, op);
  a.k = k;
  return a;
}

// (values [B, k] fp32, indices [B, k] int64)
inline std::tuple<at::Tensor, at::Tensor> topk_candidates_outputs(const TopkCandidatesArgs& a) {
  return {at::empty({a.B, a.k}, a.logits.options().dtype(at::kFloat)),
          at::empty({a.B, a.k}, a.logits.options().dtype(at::kLong))};
}

// ------------------------------------------------------------------ topk_rescore
struct TopkRescoreArgs {
  at::Tensor base;         // base_logits [B, V], last dimension contiguous
  at::Tensor rm;           // rm_logits [B, D, V], last dimension contiguous (D may be 0: no reward terms)
  at::Tensor ref;          // ref_logits [B, V], last dimension contiguous
  at::Tensor weight;       // [B, D] fp32
  at::Tensor temperature;  // [B] fp32
  at::Tensor rng;          // [B, 2] int64
  int64_t B = 0, D = 0, V = 0, k = 0;
};

inline TopkRescoreArgs prepare_topk_rescore(const at::Tensor& base_logits, const at::Tensor& rm_logits,
                                            const at::Tensor& ref_logits, int64_t k, const at::Tensor& weight,
                                            const at::Tensor& temperature, const at::Tensor& rng) {
  constexpr const char* op = "topk_rescore";
  check_logits(base_logits, op, "base_logits", 2, "[B, V]");
  check_logits(rm_logits, op, "rm_logits", 3, "[B, D, V]");
  check_logits(ref_logits, op, "ref_logits", 2, "[B, V]");
  TopkRescoreArgs a;
  a.base = last_dim_contiguous(base_logits);
  a.B = a.base.size(0);
  a.V = a.base.size(1);
  a.D = rm_logits.size(1);
  TORCH_CHECK(rm_logits.size(0) == a.B && rm_logits.size(2) == a.V, op, ": rm_logits must be [B, D, V] = [", a.B,
              ", D, ", a.V, "] (the shape of base_logits with the D reward models in between), got ",
              rm_logits.sizes());
  TORCH_CHECK(ref_logits.sizes() == a.base.sizes(), op, ": ref_logits must have the shape of base_logits ",
              a.base.sizes(), ", got ", ref_logits.sizes());
  check_same_device(rm_logits, a.base, op, "rm_logits", "base_logits");
  check_same_device(ref_logits, a.base, op, "ref_logits", "base_logits");
  check_k(k, a.V, op);
  a.k = k;
  a.rm = last_dim_contiguous(rm_logits);
  a.ref = last_dim_contiguous(ref_logits);
  const at::Device dev = a.base.device();
  a.weight = row_param(weight, a.B * a.D, at::kFloat, dev, op, "weight", "[B, D]: one weight per reward model")
                 .reshape({a.B, a.D});
  a.temperature = row_param(temperature, a.B, at::kFloat, dev, op, "temperature", "one per row, 0 = greedy");
  a.rng = row_param(rng, 2 * a.B, at::kLong, dev, op, "rng", "[B, 2]: (seed, offset) per row");
  return a;
}

// (tokens [B] int64, candidates [B, k] int64, scores [B, k] fp32)
inline std::tuple<at::Tensor, at::Tensor, at::Tensor> topk_rescore_outputs(const TopkRescoreArgs& a) {
  const auto o = a.base.options();
  return {at::empty({a.B}, o.dtype(at::kLong)), at::empty({a.B, a.k}, o.dtype(at::kLong)),
          at::empty({a.B, a.k}, o.dtype(at::kFloat))};
}

// ------------------------------------------------------------------ rescore_candidates
struct RescoreCandidatesArgs {
  at::Tensor base_terms;   // [B, k] fp32
  at::Tensor rewards;      // [B, k] fp32
  at::Tensor candidates;   // [B, k] int64
  at::Tensor lambdas;      // [B, M] fp32
  at::Tensor temperature;  // [B] fp32
  at::Tensor rng;          // [B, 2] int64
  int64_t B = 0, k = 0, M = 0, vocab_size = 0;
};

inline RescoreCandidatesArgs prepare_rescore_candidates(const at::Tensor& base_terms, const at::Tensor& rewards,
                                                        const at::Tensor& candidates, const at::Tensor& lambdas,
                                                        const at::Tensor& temperature, const at::Tensor& rng,
                                                        int64_t vocab_size) {
  constexpr const char* op = "rescore_candidates";
  TORCH_CHECK(base_terms.defined() && base_terms.dim() == 2, op, ": base_terms must be [B, k], got ",
              base_terms.defined() ? base_terms.sizes() : at::IntArrayRef{});
  RescoreCandidatesArgs a;
  a.B = base_terms.size(0);
  a.k = base_terms.size(1);
  TORCH_CHECK(a.k >= 1, op, ": base_terms has no candidates (shape ", base_terms.sizes(), "); pass k >= 1");
  TORCH_CHECK(rewards.defined() && rewards.sizes() == base_terms.sizes(), op,
              ": rewards must have the shape of base_terms ", base_terms.sizes(), " (one reward per candidate)");
  TORCH_CHECK(candidates.defined() && candidates.sizes() == base_terms.sizes(), op,
              ": candidates must have the shape of base_terms ", base_terms.sizes(), " (the candidates' token ids)");
  TORCH_CHECK(lambdas.defined() && lambdas.dim() == 2 && lambdas.size(0) == a.B && lambdas.size(1) >= 1, op,
              ": lambdas must be [B, M] with B = ", a.B, " and M >= 1 (the λ set of each row), got ",
              lambdas.defined() ? lambdas.sizes() : at::IntArrayRef{});
  TORCH_CHECK(vocab_size >= 1, op, ": vocab_size must be >= 1 (the vocabulary size V; the noise of λ index m is "
              "keyed by token + V·m), got ", vocab_size);
  a.M = lambdas.size(1);
  a.vocab_size = vocab_size;
  const at::Device dev = base_terms.device();
  check_same_device(rewards, base_terms, op, "rewards", "base_terms");
  check_same_device(candidates, base_terms, op, "candidates", "base_terms");
  check_same_device(lambdas, base_terms, op, "lambdas", "base_terms");
  a.base_terms = param(base_terms, at::kFloat, dev);
  a.rewards = param(rewards, at::kFloat, dev);
  a.candidates = param(candidates, at::kLong, dev);
  a.lambdas = param(lambdas, at::kFloat, dev);
  a.temperature = row_param(temperature, a.B, at::kFloat, dev, op, "temperature", "one per row, 0 = greedy");
  a.rng = row_param(rng, 2 * a.B, at::kLong, dev, op, "rng", "[B, 2]: (seed, offset) per row");
  return a;
}

// (tokens, candidate position, λ index), each [B] int64
inline std::tuple<at::Tensor, at::Tensor, at::Tensor> rescore_candidates_outputs(const RescoreCandidatesArgs& a) {
  const auto o = a.base_terms.options().dtype(at::kLong);
  return {at::empty({a.B}, o), at::empty({a.B}, o), at::empty({a.B}, o)};
}

}  // namespace op_args
}  // namespace pyalign
