"""Two-context guidance: z = z_base + w·(z_pref − z_base), the combination every method here shares.

    w = A(T, α, λ, η)  Amulet (collapsed, see ``amulet.py``)
    w = 1 + r          Linear Alignment / classifier-free guidance (r = 2 in Amulet's LA baseline)
    w = 1              plain decoding from the preference context ("Pref")
    no base context    plain decoding ("Base")

A token that is −∞ in either context is −∞ in z. Computed in fp32 (fp64 inputs stay fp64) in exactly this
order, zb + w·(zp − zb), which every backend follows.
"""
from __future__ import annotations

import torch


def guided_logits(logits_pref: torch.Tensor, logits_base: torch.Tensor | None, weight: torch.Tensor) -> torch.Tensor:
    """z [B, V] fp32: zb + w[b]·(zp − zb) with −∞ where either context is −∞ (zp alone if no base)."""
    dtype = torch.float64 if logits_pref.dtype == torch.float64 else torch.float32
    zp = logits_pref.to(dtype)
    if logits_base is None:
        return zp.clone()
    zb = logits_base.to(dtype)
    w = weight.to(dtype).reshape(-1, 1)
    mask = torch.isneginf(zp) | torch.isneginf(zb)
    z = zb + w * (zp - zb)
    return z.masked_fill(mask, float("-inf"))


def guided_logprobs(logits_pref: torch.Tensor, logits_base: torch.Tensor | None, weight: torch.Tensor) -> torch.Tensor:
    """log_softmax(z_base + w·(z_pref − z_base)) over the vocabulary, [B, V] fp32."""
    return torch.log_softmax(guided_logits(logits_pref, logits_base, weight), dim=-1)
