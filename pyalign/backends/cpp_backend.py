"""The C++ CPU backend: thin adapters over ``torch.ops.pyalign_C.*`` (csrc/cpu, built by ``_build.py``).

Importing this module compiles the extension on first use (ninja, ~1 min on 2 cores, cached afterwards) and
raises ``_build.BuildError`` with the compiler's message if that fails: the backend registry reports it and
falls back to the torch backend. Same signatures and semantics as ``torch_backend`` (bad rows → token −1).
fp64 logits in guided_sample / guided_logprobs (computed in fp64 by the reference) go to the torch backend.
"""
from __future__ import annotations

import torch

from . import _build
from . import torch_backend as _torch

BUILD_INFO = _build.load()
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
