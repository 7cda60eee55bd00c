"""``torch.ops.pyalign.*``: schemas, per-device implementations (dispatching to a backend) and fake kernels.

Contract of every op (the public wrappers in ``pyalign/api.py`` validate the arguments first):
    guided_sample(logits_pref [B,V], logits_base? [B,V], weight [B] f32, temperature [B] f32,
                  top_k [B] i64, top_p [B] f32, rng [B,2] i64 (seed, offset)) -> (tokens [B] i64, logprobs [B] f32)
    guided_logprobs(logits_pref [B,V], logits_base? [B,V], weight [B] f32) -> [B,V] f32
    topk_candidates(logits [B,V], k) -> (values [B,k] f32, indices [B,k] i64)
    topk_rescore(base [B,V], rm [B,D,V], ref [B,V], k, weight [B,D] f32, temperature [B] f32, rng [B,2] i64)
                  -> (tokens [B] i64, candidates [B,k] i64, scores [B,k] f32)
    rescore_candidates(base_terms [B,k] f32, rewards [B,k] f32, candidates [B,k] i64, lambdas [B,M] f32,
                  temperature [B] f32, rng [B,2] i64, vocab_size) -> (tokens, candidate position, λ index) [B] i64
Logits may be fp32/bf16/fp16 with any row stride (last-dimension stride 1). Rows that cannot be sampled
(NaN / +inf / no finite entry) give token −1, never a silent sample. Semantics: ``pyalign/reference``.
"""
from __future__ import annotations

import torch

from . import backends

LIB = torch.library.Library("pyalign", "DEF")
SCHEMAS = {
    "guided_sample": "guided_sample(Tensor logits_pref, Tensor? logits_base, Tensor weight, Tensor temperature, "
                     "Tensor top_k, Tensor top_p, Tensor rng) -> (Tensor, Tensor)",
    "guided_logprobs": "guided_logprobs(Tensor logits_pref, Tensor? logits_base, Tensor weight) -> Tensor",
    "topk_candidates": "topk_candidates(Tensor logits, int k) -> (Tensor, Tensor)",
    "topk_rescore": "topk_rescore(Tensor base_logits, Tensor rm_logits, Tensor ref_logits, int k, Tensor weight, "
                    "Tensor temperature, Tensor rng) -> (Tensor, Tensor, Tensor)",
    "rescore_candidates": "rescore_candidates(Tensor base_terms, Tensor rewards, Tensor candidates, Tensor lambdas, "
                          "Tensor temperature, Tensor rng, int vocab_size) -> (Tensor, Tensor, Tensor)",
}
for _schema in SCHEMAS.values():
    LIB.define(_schema)


def _dispatcher(op_name: str, device_type: str):
    def impl(*args):
        return getattr(backends.for_device(device_type), op_name)(*args)
    impl.__name__ = f"{op_name}_{device_type}"
    return impl


for _name in SCHEMAS:
    for _dev, _key in (("cpu", "CPU"), ("cuda", "CUDA")):
        LIB.impl(_name, _dispatcher(_name, _dev), _key)


@torch.library.register_fake("pyalign::guided_sample")
def _(logits_pref, logits_base, weight, temperature, top_k, top_p, rng):
    B = logits_pref.shape[0]
    return (logits_pref.new_empty((B,), dtype=torch.int64), logits_pref.new_empty((B,), dtype=torch.float32))


@torch.library.register_fake("pyalign::guided_logprobs")
def _(logits_pref, logits_base, weight):
    return logits_pref.new_empty(logits_pref.shape, dtype=torch.float32)


@torch.library.register_fake("pyalign::topk_candidates")
def _(logits, k):
    B = logits.shape[0]
    return (logits.new_empty((B, k), dtype=torch.float32), logits.new_empty((B, k), dtype=torch.int64))


@torch.library.register_fake("pyalign::topk_rescore")
def _(base_logits, rm_logits, ref_logits, k, weight, temperature, rng):
    B = base_logits.shape[0]
    return (base_logits.new_empty((B,), dtype=torch.int64), base_logits.new_empty((B, k), dtype=torch.int64),
            base_logits.new_empty((B, k), dtype=torch.float32))


@torch.library.register_fake("pyalign::rescore_candidates")
def _(base_terms, rewards, candidates, lambdas, temperature, rng, vocab_size):
    B = base_terms.shape[0]
    return tuple(base_terms.new_empty((B,), dtype=torch.int64) for _ in range(3))
