"""Amulet (Zhang et al.): the literal T-step FTRL loop of the paper and its exact one-pass collapse.

Per token, with L1 = log softmax(z_pref) and Lb = log softmax(z_base), π_1 = softmax(z_pref), and for
t = 1..T (T updates; the result is π_{T+1}, as in the official code):

    Q_t          = α (log π_t − Lb)
    log π_{t+1}  = ( λ L1 + (Σ_{i≤t} Q_i)/t + log π_t/(η t) ) / ( λ + 1/(η t) ),   renormalised.

Every iterate is A_t·z_pref + B_t·z_base + (row constant) with A_t + B_t = 1, A_1 = 1 and

    A_{t+1} = (λη t + ηα Σ_{i≤t} A_i + A_t) / (λη t + 1),

so π_{T+1} = softmax(z_base + A·(z_pref − z_base)) with A = A_{T+1} (``amulet_weight``).
A token that is −∞ in either context is −∞ in the result (the official loop made it NaN).
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch

from .._validation import check_amulet_hyper, check_logit_pair


class AmuletHyper(NamedTuple):
    T: int
    alpha: float
    lam: float
    eta: float


#: The official code's hyper-parameters (the package defaults, written here once).
OFFICIAL = AmuletHyper(T=60, alpha=2.0, lam=2.0, eta=10.0)


@functools.lru_cache(maxsize=1024)
def amulet_weight(T: int = OFFICIAL.T, alpha: float = OFFICIAL.alpha, lam: float = OFFICIAL.lam,
                  eta: float = OFFICIAL.eta) -> float:
    """The Amulet guidance coefficient A = A_{T+1} (≈ 5.6487 at the official T=60, α=2, λ=2, η=10).

    A_1 = 1,  A_{t+1} = (λη t + ηα Σ_{i≤t} A_i + A_t) / (λη t + 1).
    π_{T+1} = softmax(z_base + A (z_pref − z_base)); O(T) on the host, cached.
    """
    T, alpha, lam, eta = check_amulet_hyper(T, alpha, lam, eta)
    a_t, a_sum = 1.0, 0.0
    for t in range(1, T + 1):
        a_sum += a_t
        a_t = (lam * eta * t + eta * alpha * a_sum + a_t) / (lam * eta * t + 1.0)
        if not math.isfinite(a_t):
            raise ValueError(
                f"amulet_weight overflowed at t={t} for T={T}, alpha={alpha}, lam={lam}, eta={eta}: "
                "the guidance grows without bound when lam is much smaller than alpha; use a smaller T or alpha, "
                "or a larger lam")
    return a_t


def amulet_iterative(logits_pref: torch.Tensor, logits_base: torch.Tensor, T: int = OFFICIAL.T,
                     alpha: float = OFFICIAL.alpha, lam: float = OFFICIAL.lam, eta: float = OFFICIAL.eta) -> torch.Tensor:
    """The paper's literal T-step loop (the executable definition): log π_{T+1}, [B, V], in the input's float
    precision (fp64 stays fp64, anything else is computed in fp32)."""
    T, alpha, lam, eta = check_amulet_hyper(T, alpha, lam, eta)
    check_logit_pair(logits_pref, logits_base, "logits_pref", "logits_base")
    dtype = torch.float64 if logits_pref.dtype == torch.float64 else torch.float32
    zp, zb = logits_pref.to(dtype), logits_base.to(dtype)
    mask = torch.isneginf(zp) | torch.isneginf(zb)
    neg_inf = torch.tensor(float("-inf"), dtype=dtype, device=zp.device)
    l1 = torch.log_softmax(zp.masked_fill(mask, float("-inf")), dim=-1)
    lb = torch.log_softmax(zb.masked_fill(mask, float("-inf")), dim=-1)
    log_pi = l1
    q_sum = torch.zeros_like(l1)
    for t in range(1, T + 1):
        q_sum = q_sum + alpha * torch.where(mask, 0.0, log_pi - lb)
        nxt = (lam * l1 + q_sum / t + log_pi / (eta * t)) / (lam + 1.0 / (eta * t))
        log_pi = torch.log_softmax(torch.where(mask, neg_inf, nxt), dim=-1)
    return log_pi
