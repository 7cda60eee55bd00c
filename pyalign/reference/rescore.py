"""Reward rescoring of the base model's top-k candidates: PAD (one launch) and ARGS/PANDA (two phases).

Candidates (``topk_candidates``): the k largest base logits of the row, in descending order, ties broken by
the smaller vocabulary index (so every backend picks the same set and order).

PAD (``topk_rescore``), per row b, for candidates c_1..c_k and D preference dimensions:
    valid_j   = base, every rm_d and ref are finite at c_j
    rm_d[j]   = log_softmax over valid j of rm_logits[b, d, c_j]       (log-softmax over the k only)
    ref[j]    = log_softmax over valid j of ref_logits[b, c_j]
    score_j   = base_logits[b, c_j] + Σ_d w[b, d]·(rm_d[j] − ref[j])    (−∞ if not valid_j)
    token     = c_argmax score (τ = 0; ties: the earlier candidate), or Gumbel-max of score/τ with the noise
                of ``philox.py`` keyed by (seed, offset, c_j): a draw from softmax(score/τ) over the k.

ARGS / PANDA (``rescore_candidates``), with base terms b_j [B, k] (the caller's choice: base logits or
log-probs, see ``pyalign.methods``), rewards r_j [B, k] and a λ set [B, M]:
    score[m, j] = b_j + λ_m · r_j;   (m*, j*) = argmax over (m, j) (ties: smaller m, then smaller j), or
    Gumbel-max of score/τ over the k·M pairs, noise keyed by (seed, offset, c_j + V·m)
    (a draw from the mixture Σ_m softmax(score[m]/τ)·Z_m/Z).
ARGS is the M = 1 case.
"""
from __future__ import annotations

import torch

from .philox import gumbel


def topk_candidates(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(values [B, k] fp32, indices [B, k] int64): descending, ties by the smaller index."""
    z = logits.to(torch.float32)
    order = torch.sort(z, dim=-1, descending=True, stable=True)
    return order.values[:, :k].contiguous(), order.indices[:, :k].contiguous()


def _masked_log_softmax(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(x.masked_fill(~valid, float("-inf")), dim=-1)


def _choose(score: torch.Tensor, noise_index: torch.Tensor, temperature: torch.Tensor,
            rng: torch.Tensor) -> torch.Tensor:
    """Position of the chosen entry of score [B, N]: greedy argmax where τ = 0, else Gumbel-max of score/τ."""
    greedy = temperature <= 0
    tau = torch.where(greedy, torch.ones_like(temperature), temperature).to(torch.float32).reshape(-1, 1)
    g = gumbel(rng[:, :1], rng[:, 1:2], noise_index)
    noisy = score / tau + g
    return torch.where(greedy, torch.argmax(score, dim=-1), torch.argmax(noisy, dim=-1))


def topk_rescore(base_logits: torch.Tensor, rm_logits: torch.Tensor, ref_logits: torch.Tensor, k: int,
                 weight: torch.Tensor, temperature: torch.Tensor, rng: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PAD step. base/ref [B, V], rm [B, D, V], weight [B, D] fp32, temperature [B], rng [B, 2].

    Returns (tokens [B] int64, candidates [B, k] int64, scores [B, k] fp32)."""
    _, cand = topk_candidates(base_logits, k)
    base_c = base_logits.to(torch.float32).gather(-1, cand)
    ref_c = ref_logits.to(torch.float32).gather(-1, cand)
    rm_c = rm_logits.to(torch.float32).gather(-1, cand[:, None, :].expand(-1, rm_logits.shape[1], -1))
    valid = torch.isfinite(base_c) & torch.isfinite(ref_c) & torch.isfinite(rm_c).all(dim=1)
    if not bool(valid.any(dim=-1).all()):
        bad = int((~valid.any(dim=-1)).nonzero()[0, 0])
        raise ValueError(f"row {bad}: none of the top-{k} candidates is finite in base, reward and reference "
                         "logits; nothing can be chosen")
    rm_lsm = _masked_log_softmax(rm_c, valid[:, None, :])
    ref_lsm = _masked_log_softmax(ref_c, valid)
    reward = torch.where(valid[:, None, :], rm_lsm - ref_lsm[:, None, :], 0.0)
    score = base_c + (weight.to(torch.float32)[:, :, None] * reward).sum(dim=1)
    score = score.masked_fill(~valid, float("-inf"))
    pos = _choose(score, cand, temperature, rng)
    tokens = cand.gather(-1, pos[:, None]).squeeze(-1)
    return tokens, cand, score


def rescore_candidates(base_terms: torch.Tensor, rewards: torch.Tensor, candidates: torch.Tensor,
                       lambdas: torch.Tensor, temperature: torch.Tensor, rng: torch.Tensor, vocab_size: int
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ARGS/PANDA step. base_terms, rewards [B, k] fp32; candidates [B, k] int64; lambdas [B, M] fp32.

    Returns (tokens [B] int64, candidate position [B] int64, λ index [B] int64)."""
    b = base_terms.to(torch.float32)
    r = rewards.to(torch.float32)
    lam = lambdas.to(torch.float32)
    score = b[:, None, :] + lam[:, :, None] * r[:, None, :]          # [B, M, k]
    score = torch.where(torch.isneginf(b)[:, None, :], float("-inf"), score)
    B, M, k = score.shape
    if not bool(torch.isfinite(score).reshape(B, -1).any(dim=-1).all()):
        raise ValueError("a row has no candidate with a finite base term and reward: nothing can be chosen")
    m_idx = torch.arange(M, device=score.device, dtype=torch.int64).reshape(1, M, 1)
    noise_index = (candidates[:, None, :] + vocab_size * m_idx).reshape(B, M * k)
    flat = _choose(score.reshape(B, M * k), noise_index, temperature, rng)
    pos = flat % k
    return candidates.gather(-1, pos[:, None]).squeeze(-1), pos, flat // k
