"""The ops ``torch.ops.pyalign.*``, one module per op: its schema, fake kernel (torch.compile, CUDA graphs) and
validating public wrapper together. Each call runs the device's backend (``pyalign.backends``).

Contract of every op (the public wrappers validate first; inference stacks call ``torch.ops.pyalign.<op>``):
    guided_sample(logits_pref [B,V], logits_base? [B,V], weight [B] f32, temperature [B] f32,
                  top_k [B] i64, top_p [B] f32, rng [B,2] i64 (seed, offset)) -> (tokens [B] i64, logprobs [B] f32)
    guided_logprobs(logits_pref [B,V], logits_base? [B,V], weight [B] f32) -> [B,V] f32
    topk_candidates(logits [B,V], k) -> (values [B,k] f32, indices [B,k] i64)
    topk_rescore(base [B,V], rm [B,D,V], ref [B,V], k, weight [B,D] f32, temperature [B] f32, rng [B,2] i64)
                  -> (tokens [B] i64, candidates [B,k] i64, scores [B,k] f32)
    rescore_candidates(base_terms [B,k] f32, rewards [B,k] f32, candidates [B,k] i64, lambdas [B,M] f32,
                  temperature [B] f32, rng [B,2] i64, vocab_size) -> (tokens, candidate position, λ index) [B] i64
Logits may be fp32/bf16/fp16 (fp64 too) with any row stride (last-dimension stride 1). Rows that cannot be sampled
(NaN / +inf / no finite entry) give token −1, never a silent sample.
"""
from ._common import SEED_BOUND, make_rng
from .guided_sample import guided_sample
from .guided_logprobs import guided_logprobs
from .topk_candidates import topk_candidates
from .topk_rescore import topk_rescore
from .rescore_candidates import rescore_candidates

__all__ = ["SEED_BOUND", "guided_logprobs", "guided_sample", "make_rng", "rescore_candidates", "topk_candidates",
           "topk_rescore"]
