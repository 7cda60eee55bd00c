"""``torch.ops.pyalign.rescore_candidates``: schema, fake kernel and the validating public wrapper.

ARGS/PANDA: argmax (or a draw) over (λ_m, candidate j) of b_j + λ_m r_j. Semantics: ``pyalign/reference``; kernels: one file per backend
(``csrc/cpu/``, ``csrc/cuda/``, ``triton_kernels/``, ``pyalign/backends/torch_backend.py``).
"""
from __future__ import annotations

from typing import Optional, Union

import torch

from .._validation import check_range, per_row
from ._common import PerRow, define, make_rng

SCHEMA = ("rescore_candidates(Tensor base_terms, Tensor rewards, Tensor candidates, Tensor lambdas, "
          "Tensor temperature, Tensor rng, int vocab_size) -> (Tensor, Tensor, Tensor)")
define(SCHEMA)


@torch.library.register_fake("pyalign::rescore_candidates")
def _(base_terms, rewards, candidates, lambdas, temperature, rng, vocab_size):
    B = base_terms.shape[0]
    return tuple(base_terms.new_empty((B,), dtype=torch.int64) for _ in range(3))


def rescore_candidates(base_terms: torch.Tensor, rewards: torch.Tensor, candidates: torch.Tensor,
                       lambdas: Union[PerRow, torch.Tensor], vocab_size: int, temperature: PerRow = 0.0,
                       generator: Optional[torch.Generator] = None, *, seed: Optional[PerRow] = None,
                       offset: PerRow = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ARGS/PANDA choice: argmax over (λ_m, candidate j) of base_terms_j + λ_m·rewards_j (or a Gumbel draw).

    base_terms, rewards: [B, k]; candidates: [B, k] token ids; lambdas: a float, [M] or [B, M].
    Returns (tokens [B], candidate position [B], λ index [B])."""
    for name, t in (("base_terms", base_terms), ("rewards", rewards)):
        if not isinstance(t, torch.Tensor) or t.dim() != 2:
            raise ValueError(f"{name} must be a [batch, k] tensor")
    B, k = base_terms.shape
    if tuple(rewards.shape) != (B, k) or tuple(candidates.shape) != (B, k):
        raise ValueError(f"rewards {tuple(rewards.shape)} and candidates {tuple(candidates.shape)} must match "
                         f"base_terms [{B}, {k}]")
    if candidates.dtype != torch.int64:
        raise TypeError(f"candidates must be int64 token ids, got {candidates.dtype}")
    if bool(torch.isnan(rewards).any()) or bool(torch.isinf(rewards).any()):
        raise ValueError("rewards contain NaN or inf: a reward model must return finite scores")
    if bool(((candidates < 0) | (candidates >= vocab_size)).any()):
        raise ValueError(f"candidates must be token ids in [0, {vocab_size})")
    dev = base_terms.device
    lam = torch.as_tensor(lambdas, dtype=torch.float32, device=dev) if not isinstance(lambdas, torch.Tensor) else lambdas
    lam = lam.to(device=dev, dtype=torch.float32)
    if lam.dim() == 0:
        lam = lam.reshape(1, 1).expand(B, 1)
    elif lam.dim() == 1:
        lam = lam.reshape(1, -1).expand(B, -1)
    elif lam.dim() != 2 or lam.shape[0] != B:
        raise ValueError(f"lambdas must be a float, [M] or [{B}, M], got {tuple(lam.shape)}")
    if not bool(torch.isfinite(lam).all()):
        raise ValueError("lambdas must be finite")
    tau = per_row(temperature, B, "temperature", torch.float32, dev)
    check_range(tau, "temperature", lo=0.0, hint="use 0 for greedy decoding")
    rng = make_rng(B, dev, generator, seed, offset)
    out = torch.ops.pyalign.rescore_candidates(base_terms.float().contiguous(), rewards.float().contiguous(),
                                               candidates.contiguous(), lam.contiguous(), tau, rng, int(vocab_size))
    if bool((out[0] < 0).any()):
        raise ValueError("a row has no candidate with a finite base term: nothing can be chosen")
    return out
