"""Guided log-probabilities: out[b] = log_softmax(zb + w_b*(zp - zb)) over the vocabulary, stored fp32.

One launch, one program per row, two passes: (1) online max / sum-exp and the NaN/+inf flag, (2) write
z - max - log(sum). Rows with NaN / +inf input or no finite z are all NaN. fp32/bf16/fp16 logits are
computed in fp32; fp64 logits in fp64 (combination, max, sum and log), rounded once to fp32 at the store,
exactly as ``pyalign.reference.guidance.guided_logprobs`` does.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import LOGIT_DTYPES, PTR_TYPE, Variant, device_guard, load_guided, make_signature, online_lse, row_view

BLOCK = 2048
NUM_WARPS = 8


@triton.jit(do_not_specialize=["stride_p", "stride_b", "stride_o", "V"], do_not_specialize_on_alignment=["w_ptr"])
def _guided_logprobs_kernel(zp_ptr, zb_ptr, stride_p, stride_b, w_ptr, out_ptr, stride_o, V,
                            HAS_BASE: tl.constexpr, F64: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    zp_row = zp_ptr + row * stride_p
    zb_row = zb_ptr + row * stride_b
    w = tl.load(w_ptr + row).to(tl.float32)
    if F64:
        m = tl.full([], float("-inf"), tl.float64)
        ssum = tl.zeros([], dtype=tl.float64)
    else:
        m = tl.full([], float("-inf"), tl.float32)
        ssum = tl.zeros([], dtype=tl.float32)
    bad = tl.zeros([], dtype=tl.int32)
    for start in range(0, V, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < V
        z, bad_l = load_guided(zp_row, zb_row, offs, mask, w, HAS_BASE, F64)
        bad = tl.maximum(bad, tl.max(bad_l.to(tl.int32), axis=0))
        m, ssum = online_lse(m, ssum, z)
    bad_row = (bad != 0) | (m == float("-inf"))
    for start in range(0, V, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < V
        z, _bad = load_guided(zp_row, zb_row, offs, mask, w, HAS_BASE, F64)
        out = tl.where(bad_row, float("nan"), (z - m) - tl.log(ssum))
        tl.store(out_ptr + row * stride_o + offs, out.to(tl.float32), mask=mask)


def _constexprs(dtype: torch.dtype, has_base: bool, block: int = BLOCK) -> dict:
    return dict(HAS_BASE=has_base, F64=dtype == torch.float64, BLOCK=block)


def compile_variants() -> list[Variant]:
    """Every configuration ``guided_logprobs`` launches (one per dtype and base context)."""
    out = []
    for dt in LOGIT_DTYPES:
        for has_base in (False, True):
            cx = _constexprs(dt, has_base)
            types = dict(zp_ptr=PTR_TYPE[dt], zb_ptr=PTR_TYPE[dt], stride_p="i32", stride_b="i32", w_ptr="*fp32",
                         out_ptr="*fp32", stride_o="i32", V="i32")
            out.append(Variant(_guided_logprobs_kernel, make_signature(_guided_logprobs_kernel, types, cx), cx,
                               dict(num_warps=NUM_WARPS, enable_fp_fusion=False)))
    return out


def guided_logprobs(logits_pref: torch.Tensor, logits_base: torch.Tensor | None, weight: torch.Tensor,
                    *, block_size: int | None = None) -> torch.Tensor:
    """[B, V] fp32 log-probs of the guided logits; see the module docstring. ``block_size`` (a power of
    two) is a test hook for the interpreter; the compiled kernels use ``BLOCK``."""
    B, V = logits_pref.shape
    out = torch.empty((B, V), dtype=torch.float32, device=logits_pref.device)
    if B == 0 or V == 0:
        return out
    zp = row_view(logits_pref)
    has_base = logits_base is not None
    zb = row_view(logits_base) if has_base else zp
    w = weight.float().contiguous()                    # [B]; read only with a base context
    cx = _constexprs(zp.dtype, has_base, block_size or BLOCK)
    with device_guard(zp):
        _guided_logprobs_kernel[(B,)](zp, zb, zp.stride(0), zb.stride(0), w, out, out.stride(0), V, **cx,
                                      num_warps=NUM_WARPS, enable_fp_fusion=False)
    return out
