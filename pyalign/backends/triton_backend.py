"""The Triton backend: ``pyalign.triton_kernels`` under the op contract of ``pyalign/ops/``.

Runs on CUDA tensors (compiled kernels), or on CPU tensors under ``TRITON_INTERPRET=1`` (slow; for tests).
Inputs may be fp32/bf16/fp16/fp64 views with any row stride (last-dimension stride 1): the kernels load and
upcast, no copy. fp64 logits are combined (and, for log-probs, normalised) in fp64 as in the reference.
Every launch runs on the tensor's own device and that device's current stream (a device guard around each
launch), and allocates its reduction workspace per call, so the ops are safe under CUDA-graph capture and
concurrent streams. Rows that cannot be sampled give token −1 (log-probs / scores NaN), detected in the
kernels.

Candidate counts above the kernels' register tiers (k > ``MAX_K`` = 1024 for top-k / rescoring) are routed to
the torch backend, which has the same semantics (the Triton top-k does k passes over the row: at such k a
sort is faster anyway).
"""
from __future__ import annotations

import torch

from . import torch_backend as _torch
from ..triton_kernels.guided_logprobs import guided_logprobs as _guided_logprobs
from ..triton_kernels.guided_sample import guided_sample as _guided_sample
from ..triton_kernels.rescore_candidates import MAX_K as _MAX_RESCORE_K
from ..triton_kernels.rescore_candidates import rescore_candidates as _rescore_candidates
from ..triton_kernels.topk_candidates import MAX_K
from ..triton_kernels.topk_candidates import topk_candidates as _topk_candidates
from ..triton_kernels.topk_rescore import topk_rescore as _topk_rescore


def guided_sample(logits_pref, logits_base, weight, temperature, top_k, top_p, rng):
    return _guided_sample(logits_pref, logits_base, weight, temperature, top_k, top_p, rng)


def guided_logprobs(logits_pref, logits_base, weight):
    return _guided_logprobs(logits_pref, logits_base, weight)


def topk_candidates(logits, k):
    if int(k) > MAX_K:
        return _torch.topk_candidates(logits, int(k))
    return _topk_candidates(logits, int(k))


def topk_rescore(base_logits, rm_logits, ref_logits, k, weight, temperature, rng):
    if rm_logits.dim() == 2:
        rm_logits = rm_logits.unsqueeze(1)
    if weight.dim() == 1:
        weight = weight.reshape(-1, 1).expand(base_logits.shape[0], rm_logits.shape[1])
    if int(k) > MAX_K:
        return _torch.topk_rescore(base_logits, rm_logits, ref_logits, int(k), weight, temperature, rng)
    return _topk_rescore(base_logits, rm_logits, ref_logits, int(k), weight, temperature, rng)


def rescore_candidates(base_terms, rewards, candidates, lambdas, temperature, rng, vocab_size):
    if base_terms.shape[1] > _MAX_RESCORE_K:
        return _torch.rescore_candidates(base_terms, rewards, candidates, lambdas, temperature, rng,
                                         int(vocab_size))
    return _rescore_candidates(base_terms, rewards, candidates, lambdas, temperature, rng, int(vocab_size))

