"""Adapters over ``torch.ops.pyalign_C.*`` shared by the cpp and cuda backends (the C++ ops dispatch on the
tensors' device themselves). fp64 logits in guided_sample / guided_logprobs — computed in fp64 by the
reference — go to the torch backend; the kernels compute in fp32."""
from __future__ import annotations

import torch

from . import torch_backend as _torch

_C = torch.ops.pyalign_C


def guided_sample(logits_pref, logits_base, weight, temperature, top_k, top_p, rng):
    if logits_pref.dtype == torch.float64:
        return _torch.guided_sample(logits_pref, logits_base, weight, temperature, top_k, top_p, rng)
    return _C.guided_sample(logits_pref, logits_base, weight, temperature, top_k, top_p, rng)


def guided_logprobs(logits_pref, logits_base, weight):
    if logits_pref.dtype == torch.float64:
        return _torch.guided_logprobs(logits_pref, logits_base, weight)
    return _C.guided_logprobs(logits_pref, logits_base, weight)


def topk_candidates(logits, k):
    return _C.topk_candidates(logits, k)


def topk_rescore(base_logits, rm_logits, ref_logits, k, weight, temperature, rng):
    return _C.topk_rescore(base_logits, rm_logits, ref_logits, k, weight, temperature, rng)


def rescore_candidates(base_terms, rewards, candidates, lambdas, temperature, rng, vocab_size):
    return _C.rescore_candidates(base_terms, rewards, candidates, lambdas, temperature, rng, vocab_size)
