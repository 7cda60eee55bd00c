"""PAD step in one launch (one program per row b, candidates c_1..c_k = top-k of the base logits):

    valid_j  = base, ref and every rm_d finite at c_j
    score_j  = base[c_j] + Σ_d w_d (log_softmax_valid(rm_d[c])_j − log_softmax_valid(ref[c])_j)   (−inf if not valid)
    token    = c_{min argmax score} (τ = 0) or c_{min argmax score/τ + g(seed, offset, c_j)} (Gumbel-max)

Rows with NaN/+inf anywhere in base, rm or ref, or with no valid candidate, give token −1, scores NaN and
candidates 0..k−1 (as the torch backend). Top-k: k rounds of argmax-with-exclusion (``topk_candidates``).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import BIG_IDX, PTR_TYPE, Variant, device_guard, make_signature, row_view
from ._philox import philox_gumbel
from .topk_candidates import KP_TIERS, MAX_K, kp_tier, topk_row  # noqa: F401 (MAX_K re-exported)

BLOCK = 2048
NUM_WARPS = 8
DTYPES = (torch.float32, torch.bfloat16, torch.float16)   # base, rm and ref share one; others go through fp32


@triton.jit
def _bad_any(x_row, V, BLOCK: tl.constexpr):
    bad = tl.zeros([], dtype=tl.int32)
    for start in range(0, V, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(x_row + offs, mask=offs < V, other=0.0).to(tl.float32)
        bad = tl.maximum(bad, tl.max(((x != x) | (x == float("inf"))).to(tl.int32), axis=0))
    return bad


@triton.jit
def _masked_lsm(x, valid):
    x = tl.where(valid, x, float("-inf"))
    m = tl.max(x, axis=0)
    m_safe = tl.where(m == float("-inf"), 0.0, m)
    return (x - m_safe) - tl.log(tl.sum(tl.exp(x - m_safe), axis=0))


@triton.jit(do_not_specialize=["stride_b", "stride_rb", "stride_rd", "stride_f", "V", "K", "D"],
            do_not_specialize_on_alignment=["w_ptr", "tau_ptr", "rng_ptr", "tok_ptr", "cand_ptr", "score_ptr"])
def _topk_rescore_kernel(base_ptr, rm_ptr, ref_ptr, stride_b, stride_rb, stride_rd, stride_f, w_ptr, tau_ptr,
                         rng_ptr, tok_ptr, cand_ptr, score_ptr, V, K, D,
                         KP: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    base_row = base_ptr + row * stride_b
    ref_row = ref_ptr + row * stride_f
    rm_row = rm_ptr + row * stride_rb
    bad = tl.maximum(_bad_any(base_row, V, BLOCK), _bad_any(ref_row, V, BLOCK))
    for d in range(0, D):
        bad = tl.maximum(bad, _bad_any(rm_row + d * stride_rd, V, BLOCK))
    j = tl.arange(0, KP)
    jm = j < K
    _vals, cand = topk_row(base_row, V, K, KP, BLOCK)
    cand = tl.where(bad != 0, j, cand)
    base_c = tl.load(base_row + cand, mask=jm, other=0.0).to(tl.float32)
    ref_c = tl.load(ref_row + cand, mask=jm, other=0.0).to(tl.float32)
    valid = jm & (tl.abs(base_c) < float("inf")) & (tl.abs(ref_c) < float("inf"))
    for d in range(0, D):
        rm_c = tl.load(rm_row + d * stride_rd + cand, mask=jm, other=0.0).to(tl.float32)
        valid = valid & (tl.abs(rm_c) < float("inf"))
    ref_l = _masked_lsm(ref_c, valid)
    acc = tl.zeros([KP], dtype=tl.float32)
    for d in range(0, D):
        rm_c = tl.load(rm_row + d * stride_rd + cand, mask=jm, other=0.0).to(tl.float32)
        wd = tl.load(w_ptr + row * D + d).to(tl.float32)
        acc = acc + wd * tl.where(valid, _masked_lsm(rm_c, valid) - ref_l, 0.0)
    score = tl.where(valid, base_c + acc, float("-inf"))
    bad = (bad != 0) | (tl.max(valid.to(tl.int32), axis=0) == 0)
    tau = tl.load(tau_ptr + row).to(tl.float32)
    if tau > 0.0:
        seed = tl.load(rng_ptr + 2 * row)
        offset = tl.load(rng_ptr + 2 * row + 1)
        key = tl.math.div_rn(score, tau) + philox_gumbel(seed, offset, cand)
    else:
        key = score
    key = tl.where(jm, key, float("-inf"))
    best = tl.max(key, axis=0)
    pos = tl.min(tl.where(jm & (key == best), j, BIG_IDX), axis=0)
    tok = tl.sum(tl.where(j == pos, cand, 0), axis=0)
    tl.store(tok_ptr + row, tl.where(bad, -1, tok.to(tl.int64)))
    tl.store(cand_ptr + row * K + j, tl.where(bad, j, cand).to(tl.int64), mask=jm)
    tl.store(score_ptr + row * K + j, tl.where(bad, float("nan"), score), mask=jm)


def _constexprs(k: int, block: int | None = None) -> dict:
    return dict(KP=kp_tier(k), BLOCK=block or BLOCK)


def compile_variants() -> list[Variant]:
    """Every configuration ``topk_rescore`` launches: dtype x KP tier."""
    out = []
    for dt in DTYPES:
        for kp in KP_TIERS:
            cx = _constexprs(kp)
            types = dict(base_ptr=PTR_TYPE[dt], rm_ptr=PTR_TYPE[dt], ref_ptr=PTR_TYPE[dt], stride_b="i32",
                         stride_rb="i32", stride_rd="i32", stride_f="i32", w_ptr="*fp32", tau_ptr="*fp32",
                         rng_ptr="*i64", tok_ptr="*i64", cand_ptr="*i64", score_ptr="*fp32", V="i32", K="i32",
                         D="i32")
            out.append(Variant(_topk_rescore_kernel, make_signature(_topk_rescore_kernel, types, cx), cx,
                               dict(num_warps=NUM_WARPS, enable_fp_fusion=False)))
    return out


def topk_rescore(base_logits: torch.Tensor, rm_logits: torch.Tensor, ref_logits: torch.Tensor, k: int,
                 weight: torch.Tensor, temperature: torch.Tensor, rng: torch.Tensor, *,
                 block_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tokens [B] int64, candidates [B, k] int64, scores [B, k] fp32); base/ref [B, V], rm [B, D, V].

    Logits of one shared dtype in ``DTYPES`` are read in place; any other mix (e.g. fp64 base) is cast
    to fp32 first, which is what the reference computes in (every input ``.to(float32)``)."""
    B, V = base_logits.shape
    D = rm_logits.shape[1]
    dev = base_logits.device
    tokens = torch.empty(B, dtype=torch.int64, device=dev)
    cand = torch.empty((B, k), dtype=torch.int64, device=dev)
    scores = torch.empty((B, k), dtype=torch.float32, device=dev)
    if B == 0:
        return tokens, cand, scores
    dts = {base_logits.dtype, rm_logits.dtype, ref_logits.dtype}
    if len(dts) > 1 or not dts <= set(DTYPES):
        base_logits, rm_logits, ref_logits = base_logits.float(), rm_logits.float(), ref_logits.float()
    base, ref, rm = row_view(base_logits), row_view(ref_logits), row_view(rm_logits)
    with device_guard(base):
        _topk_rescore_kernel[(B,)](
            base, rm, ref, base.stride(0), rm.stride(0), rm.stride(1), ref.stride(0),
            weight.float().contiguous(), temperature.float().contiguous(), rng.to(torch.int64).contiguous(),
            tokens, cand, scores, V, k, D, **_constexprs(k, block_size), num_warps=NUM_WARPS,
            enable_fp_fusion=False)
    return tokens, cand, scores
