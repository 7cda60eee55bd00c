"""Top-k candidates of a row: the k largest logits, descending, ties to the smaller vocabulary index.

One program per row, k rounds of "argmax with exclusion" over the order-preserving integer key of the
value: round t picks the largest (key, -index) strictly below the pair chosen in round t-1. Values are fp32
(NaN sorts first, as ``torch.sort(descending=True)``).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import (BIG_IDX, LOGIT_DTYPES, MIN_KEY, PTR_TYPE, Variant, device_guard, float_key, make_signature,
                      row_view)

BLOCK = 2048
NUM_WARPS = 8
KP_TIERS = (16, 128, 1024)       # candidate vector widths; k above the last tier is not launched here
MAX_K = KP_TIERS[-1]


def kp_tier(k: int) -> int:
    """Smallest tier >= k (a [KP] register vector holds the k results)."""
    for t in KP_TIERS:
        if k <= t:
            return t
    raise ValueError(f"k = {k} exceeds the Triton top-k limit {MAX_K}; the backend routes it to torch")


@triton.jit
def topk_row(x_row, V, K, KP: tl.constexpr, BLOCK: tl.constexpr):
    """(values [KP] fp32, indices [KP] int32) of the K largest entries of x_row[0:V]; lanes >= K unused."""
    r = tl.arange(0, KP)
    vals = tl.full([KP], float("-inf"), tl.float32)
    idxs = tl.zeros([KP], dtype=tl.int32)
    pk = tl.full([], 2 ** 40, tl.int64)
    pi = tl.full([], -1, tl.int32)
    for t in range(0, K):
        best = tl.full([], MIN_KEY, tl.int64)
        best_i = tl.full([], BIG_IDX, tl.int32)
        best_x = tl.zeros([], dtype=tl.float32)
        for start in range(0, V, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            mask = offs < V
            x = tl.load(x_row + offs, mask=mask, other=float("-inf")).to(tl.float32)
            key = float_key(x)
            elig = mask & ((key < pk) | ((key == pk) & (offs > pi)))
            ek = tl.where(elig, key, MIN_KEY)
            bk = tl.max(ek, axis=0)
            bi = tl.min(tl.where(elig & (ek == bk), offs, BIG_IDX), axis=0)
            bx = tl.sum(tl.where(offs == bi, x, 0.0), axis=0)
            upd = bk > best
            best_x = tl.where(upd, bx, best_x)
            best_i = tl.where(upd, bi, best_i)
            best = tl.where(upd, bk, best)
        vals = tl.where(r == t, best_x, vals)
        idxs = tl.where(r == t, best_i, idxs)
        pk = best
        pi = best_i
    return vals, idxs


@triton.jit(do_not_specialize=["stride_x", "V", "K"], do_not_specialize_on_alignment=["val_ptr", "idx_ptr"])
def _topk_candidates_kernel(x_ptr, stride_x, val_ptr, idx_ptr, V, K, KP: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    vals, idxs = topk_row(x_ptr + row * stride_x, V, K, KP, BLOCK)
    r = tl.arange(0, KP)
    tl.store(val_ptr + row * K + r, vals, mask=r < K)
    tl.store(idx_ptr + row * K + r, idxs.to(tl.int64), mask=r < K)


def _constexprs(k: int, block: int | None = None) -> dict:
    return dict(KP=kp_tier(k), BLOCK=block or BLOCK)


def compile_variants() -> list[Variant]:
    """Every configuration ``topk_candidates`` launches: dtype x KP tier."""
    out = []
    for dt in LOGIT_DTYPES:
        for kp in KP_TIERS:
            cx = _constexprs(kp)
            types = dict(x_ptr=PTR_TYPE[dt], stride_x="i32", val_ptr="*fp32", idx_ptr="*i64", V="i32", K="i32")
            out.append(Variant(_topk_candidates_kernel, make_signature(_topk_candidates_kernel, types, cx), cx,
                               dict(num_warps=NUM_WARPS)))
    return out


def topk_candidates(logits: torch.Tensor, k: int, *, block_size: int | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(values [B, k] fp32, indices [B, k] int64), descending, ties to the smaller index; k <= MAX_K.
    ``block_size`` (a power of two) is a test hook."""
    B, V = logits.shape
    vals = torch.empty((B, k), dtype=torch.float32, device=logits.device)
    idxs = torch.empty((B, k), dtype=torch.int64, device=logits.device)
    if B == 0 or k == 0:
        return vals, idxs
    x = row_view(logits)
    with device_guard(x):
        _topk_candidates_kernel[(B,)](x, x.stride(0), vals, idxs, V, k, **_constexprs(k, block_size),
                                      num_warps=NUM_WARPS)
    return vals, idxs
