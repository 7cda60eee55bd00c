"""Guided log-probabilities: out[b] = log_softmax(zb + w_b*(zp - zb)) over the vocabulary, fp32.

One launch, one program per row, two passes: (1) online max / sum-exp and the NaN/+inf flag, (2) write
z - max - log(sum). Rows with NaN / +inf input or no finite z are all NaN.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import load_guided, online_lse


@triton.jit
def _guided_logprobs_kernel(zp_ptr, zb_ptr, stride_p, stride_b, w_ptr, out_ptr, stride_o, V,
                            HAS_BASE: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    zp_row = zp_ptr + row * stride_p
    zb_row = zb_ptr + row * stride_b
    w = 1.0
    if HAS_BASE:
        w = tl.load(w_ptr + row).to(tl.float32)
    m = tl.full([], float("-inf"), tl.float32)
    ssum = tl.zeros([], dtype=tl.float32)
    bad = tl.zeros([], dtype=tl.int32)
    for start in range(0, V, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < V
        z, bad_l = load_guided(zp_row, zb_row, offs, mask, w, HAS_BASE)
        bad = tl.maximum(bad, tl.max(bad_l.to(tl.int32), axis=0))
        m, ssum = online_lse(m, ssum, z)
    bad_row = (bad != 0) | (m == float("-inf"))
    for start in range(0, V, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < V
        z, _bad = load_guided(zp_row, zb_row, offs, mask, w, HAS_BASE)
        out = tl.where(bad_row, float("nan"), (z - m) - tl.log(ssum))
        tl.store(out_ptr + row * stride_o + offs, out, mask=mask)


def guided_logprobs(logits_pref: torch.Tensor, logits_base: torch.Tensor | None, weight: torch.Tensor,
                    *, block_size: int | None = None) -> torch.Tensor:
    """[B, V] fp32 log-probs of the guided logits; see the module docstring."""
    B, V = logits_pref.shape
    out = torch.empty((B, V), dtype=torch.float32, device=logits_pref.device)
    if B == 0 or V == 0:
        return out
    zp = logits_pref if logits_pref.stride(-1) == 1 else logits_pref.contiguous()
    has_base = logits_base is not None
    zb = (logits_base if logits_base.stride(-1) == 1 else logits_base.contiguous()) if has_base else zp
    BLOCK = block_size or min(2048, triton.next_power_of_2(V))
    _guided_logprobs_kernel[(B,)](zp, zb, zp.stride(0), zb.stride(0), weight.float().contiguous(), out,
                                  out.stride(0), V, HAS_BASE=has_base, BLOCK=BLOCK, num_warps=8,
                                  enable_fp_fusion=False)
    return out
