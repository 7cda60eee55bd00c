"""The PyTorch backend: the reference math of ``pyalign.reference`` under the op contract (bad rows → −1)."""
from __future__ import annotations

import torch

from .. import reference as ref


def _bad_rows(*tensors: torch.Tensor) -> torch.Tensor:
    """Rows with a NaN or +inf entry in any input ([B, ...] tensors)."""
    bad = None
    for t in tensors:
        if t is None:
            continue
        flat = t.flatten(1) if t.dim() > 1 else t[:, None]
        b = (torch.isnan(flat) | torch.isposinf(flat)).any(dim=-1)
        bad = b if bad is None else bad | b
    return bad


def _clean(t: torch.Tensor | None, bad: torch.Tensor) -> torch.Tensor | None:
    if t is None:
        return None
    shape = (-1,) + (1,) * (t.dim() - 1)
    return torch.where(bad.reshape(shape), torch.zeros((), dtype=t.dtype, device=t.device), t)


def guided_logprobs(logits_pref, logits_base, weight):
    out = ref.guided_logprobs(logits_pref, logits_base, weight).to(torch.float32)
    bad = _bad_rows(logits_pref, logits_base) | ~torch.isfinite(out).any(dim=-1)
    return out.masked_fill(bad[:, None], float("nan"))


def guided_sample(logits_pref, logits_base, weight, temperature, top_k, top_p, rng):
    bad = _bad_rows(logits_pref, logits_base)
    zp, zb = _clean(logits_pref, bad), _clean(logits_base, bad)
    z = ref.guided_logits(zp, zb, weight)
    bad = bad | ~torch.isfinite(z).any(dim=-1)
    zp = torch.where(bad[:, None], torch.zeros((), dtype=zp.dtype, device=zp.device), zp)
    tokens, logp = ref.guided_sample(zp, _clean(zb, bad), weight, temperature, top_k, top_p, rng)
    return tokens.masked_fill(bad, -1), logp.masked_fill(bad, float("nan"))


def topk_candidates(logits, k):
    return ref.topk_candidates(logits, k)


def topk_rescore(base_logits, rm_logits, ref_logits, k, weight, temperature, rng):
    bad = _bad_rows(base_logits, rm_logits, ref_logits)
    base_c, rm_c, ref_c = (_clean(t, bad) for t in (base_logits, rm_logits, ref_logits))
    _, cand = ref.topk_candidates(base_c, k)
    finite = (torch.isfinite(base_c.float().gather(-1, cand)) & torch.isfinite(ref_c.float().gather(-1, cand))
              & torch.isfinite(rm_c.float().gather(-1, cand[:, None, :].expand(-1, rm_c.shape[1], -1))).all(1))
    bad = bad | ~finite.any(dim=-1)
    base_c = torch.where(bad[:, None], torch.zeros((), dtype=base_c.dtype, device=base_c.device), base_c)
    ref_c = torch.where(bad[:, None], torch.zeros((), dtype=ref_c.dtype, device=ref_c.device), ref_c)
    rm_c = torch.where(bad[:, None, None], torch.zeros((), dtype=rm_c.dtype, device=rm_c.device), rm_c)
    tokens, cand, score = ref.topk_rescore(base_c, rm_c, ref_c, k, weight, temperature, rng)
    return tokens.masked_fill(bad, -1), cand, score.masked_fill(bad[:, None], float("nan"))


def rescore_candidates(base_terms, rewards, candidates, lambdas, temperature, rng, vocab_size):
    bad = _bad_rows(base_terms, rewards, lambdas)
    bad = bad | torch.isnan(rewards).any(-1) | torch.isinf(rewards).any(-1)
    b = _clean(base_terms, bad)
    bad = bad | ~torch.isfinite(b).any(dim=-1)
    b = torch.where(bad[:, None], torch.zeros((), dtype=b.dtype, device=b.device), b)
    r = torch.where(bad[:, None], torch.zeros((), dtype=rewards.dtype, device=rewards.device), rewards)
    lam = _clean(lambdas, bad)
    tokens, pos, lam_idx = ref.rescore_candidates(b, r, candidates, lam, temperature, rng, vocab_size)
    return tokens.masked_fill(bad, -1), pos.masked_fill(bad, -1), lam_idx.masked_fill(bad, -1)
