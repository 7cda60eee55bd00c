"""The Triton backend: ``pyalign.triton_kernels`` under the op contract of ``pyalign/_ops.py``.

Runs on CUDA tensors, or on CPU tensors under ``TRITON_INTERPRET=1`` (slow; for tests). Inputs may be
fp32/bf16/fp16 views with any row stride (last-dimension stride 1): the kernels load and upcast, no copy.
Rows that cannot be sampled give token −1 (log-probs / scores NaN), detected in the kernels.
"""
from __future__ import annotations

import torch

from ..triton_kernels.guided_logprobs import guided_logprobs as _guided_logprobs
from ..triton_kernels.guided_sample import guided_sample as _guided_sample
from ..triton_kernels.rescore_candidates import rescore_candidates as _rescore_candidates
from ..triton_kernels.topk_candidates import topk_candidates as _topk_candidates
from ..triton_kernels.topk_rescore import topk_rescore as _topk_rescore


def guided_sample(logits_pref, logits_base, weight, temperature, top_k, top_p, rng):
    return _guided_sample(logits_pref, logits_base, weight, temperature, top_k, top_p, rng)


def guided_logprobs(logits_pref, logits_base, weight):
    return _guided_logprobs(logits_pref, logits_base, weight)


def topk_candidates(logits, k):
    return _topk_candidates(logits, int(k))


def topk_rescore(base_logits, rm_logits, ref_logits, k, weight, temperature, rng):
    if rm_logits.dim() == 2:
        rm_logits = rm_logits.unsqueeze(1)
    if weight.dim() == 1:
        weight = weight.reshape(-1, 1).expand(base_logits.shape[0], rm_logits.shape[1])
    return _topk_rescore(base_logits, rm_logits, ref_logits, int(k), weight, temperature, rng)


def rescore_candidates(base_terms, rewards, candidates, lambdas, temperature, rng, vocab_size):
    return _rescore_candidates(base_terms, rewards, candidates, lambdas, temperature, rng, int(vocab_size))
