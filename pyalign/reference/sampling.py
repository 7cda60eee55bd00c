"""Reference sampler (the executable spec of ``torch.ops.pyalign.guided_sample``).

Order of operations, per row b (all in fp32):
 1. z = z_base + w·(z_pref − z_base), −∞ where either context is −∞ (``guided.py``).
 2. Greedy rows (temperature τ = 0): the token is the smallest index among argmax z; top-k/top-p ignored.
 3. Otherwise s = z / τ, then
    - top-k (k > 0): keep i iff #{j : s_j > s_i} < k        (ties at the k-th value are all kept);
    - top-p (p < 1): with q = softmax(s) over the kept set, keep i iff Σ_{kept j: s_j > s_i} q_j < p
      (the smallest head of the distribution whose mass reaches p, ties kept; order-independent);
    - token = argmax over kept i of s_i + g_i, with g the Gumbel noise of ``philox.py`` keyed by
      (seed, offset, i); ties go to the smallest index. This draws exactly from softmax(s) on the kept set.
 4. The returned log-prob is log_softmax(z)[token]: the guided policy's own log-probability (τ = 1, before
    top-k/top-p), the quantity a perplexity or a KL needs.
Rows whose z has no finite entry cannot be sampled: the reference raises (kernels return token −1).
"""
from __future__ import annotations

import torch

from .guidance import guided_logits
from .philox import row_gumbel


def topk_mask(s: torch.Tensor, top_k: torch.Tensor) -> torch.Tensor:
    """keep[b, i] = #{j : s[b, j] > s[b, i]} < k[b]  (k = 0 keeps everything)."""
    sorted_desc = torch.sort(s, dim=-1, descending=True).values
    k = top_k.to(torch.int64).clamp(min=0, max=s.shape[-1])
    kth = sorted_desc.gather(-1, (k - 1).clamp(min=0).reshape(-1, 1))
    keep = s >= kth
    return keep | (k == 0).reshape(-1, 1)


def topp_mask(s: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """keep[b, i] = Σ_{j: s_j > s_i} softmax(s)_j < p[b]  (p = 1 keeps every finite token)."""
    q = torch.softmax(s, dim=-1)
    order = torch.sort(s, dim=-1, descending=True)
    q_sorted = q.gather(-1, order.indices)
    s_sorted = order.values
    csum = torch.cumsum(q_sorted, dim=-1)
    # mass strictly above each sorted position: cumulative sum up to the first element of its tie group.
    first_of_group = torch.ones_like(s_sorted, dtype=torch.bool)
    first_of_group[:, 1:] = s_sorted[:, 1:] != s_sorted[:, :-1]
    excl = csum - q_sorted
    pos = torch.arange(s.shape[-1], device=s.device).expand_as(s_sorted)
    group_start = torch.cummax(torch.where(first_of_group, pos, torch.zeros_like(pos)), dim=-1).values
    mass_above_sorted = excl.gather(-1, group_start)
    mass_above = torch.empty_like(mass_above_sorted).scatter_(-1, order.indices, mass_above_sorted)
    p = top_p.to(s.dtype).reshape(-1, 1)
    return (mass_above < p) | (p >= 1.0)


def guided_sample(logits_pref: torch.Tensor, logits_base: torch.Tensor | None, weight: torch.Tensor,
                  temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor,
                  rng: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """tokens [B] int64 and log_softmax(z)[token] [B] fp32; see the module docstring for the semantics.

    weight, temperature, top_p: [B] fp32; top_k: [B] int64; rng: [B, 2] int64 (seed, offset)."""
    z = guided_logits(logits_pref, logits_base, weight).to(torch.float32)
    finite = torch.isfinite(z).any(dim=-1)
    if not bool(finite.all()):
        bad = int((~finite).nonzero()[0, 0])
        raise ValueError(f"row {bad} of the guided logits has no finite entry (every token is -inf): "
                         "nothing can be sampled; check the masks applied to logits_pref/logits_base")
    logp = torch.log_softmax(z, dim=-1)
    greedy = temperature <= 0
    tau = torch.where(greedy, torch.ones_like(temperature), temperature).to(torch.float32).reshape(-1, 1)
    s = z / tau
    keep = topk_mask(s, top_k)
    s = s.masked_fill(~keep, float("-inf"))
    keep = topp_mask(s, top_p)
    s = s.masked_fill(~keep, float("-inf"))
    noisy = s + row_gumbel(rng, z.shape[-1])
    sampled = torch.argmax(noisy, dim=-1)       # torch.argmax returns the first maximal index
    tokens = torch.where(greedy, torch.argmax(z, dim=-1), sampled)
    return tokens, logp.gather(-1, tokens[:, None]).squeeze(-1)
