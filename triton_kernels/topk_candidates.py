"""Top-k candidates of a row: the k largest logits, descending, ties to the smaller vocabulary index.

One program per row, k rounds of "argmax with exclusion" over the order-preserving integer key of the
value: round t picks the largest (key, -index) strictly below the pair chosen in round t-1. Values are fp32
(NaN sorts first, as ``torch.sort(descending=True)``).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import float_key

_NONE_KEY: tl.constexpr = -(2 ** 40)
_BIG_IDX: tl.constexpr = 2 ** 31 - 1


@triton.jit
def topk_row(x_row, V, K, KP: tl.constexpr, BLOCK: tl.constexpr):
    """(values [KP] fp32, indices [KP] int32) of the K largest entries of x_row[0:V]; lanes >= K unused."""
    r = tl.arange(0, KP)
    vals = tl.full([KP], float("-inf"), tl.float32)
    idxs = tl.zeros([KP], dtype=tl.int32)
    pk = tl.full([], 2 ** 40, tl.int64)
    pi = tl.full([], -1, tl.int32)
    for t in range(0, K):
        best = tl.full([], _NONE_KEY, tl.int64)
        best_i = tl.full([], _BIG_IDX, tl.int32)
        best_x = tl.zeros([], dtype=tl.float32)
        for start in range(0, V, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            mask = offs < V
            x = tl.load(x_row + offs, mask=mask, other=float("-inf")).to(tl.float32)
            key = float_key(x)
            elig = mask & ((key < pk) | ((key == pk) & (offs > pi)))
            ek = tl.where(elig, key, _NONE_KEY)
            bk = tl.max(ek, axis=0)
            bi = tl.min(tl.where(elig & (ek == bk), offs, _BIG_IDX), axis=0)
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


@triton.jit
def _topk_candidates_kernel(x_ptr, stride_x, val_ptr, idx_ptr, V, K, KP: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    vals, idxs = topk_row(x_ptr + row * stride_x, V, K, KP, BLOCK)
    r = tl.arange(0, KP)
    tl.store(val_ptr + row * K + r, vals, mask=r < K)
    tl.store(idx_ptr + row * K + r, idxs.to(tl.int64), mask=r < K)


def topk_candidates(logits: torch.Tensor, k: int, *, block_size: int | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(values [B, k] fp32, indices [B, k] int64), descending, ties to the smaller index."""
    B, V = logits.shape
    vals = torch.empty((B, k), dtype=torch.float32, device=logits.device)
    idxs = torch.empty((B, k), dtype=torch.int64, device=logits.device)
    if B == 0 or k == 0:
        return vals, idxs
    x = logits if logits.stride(-1) == 1 else logits.contiguous()
    BLOCK = block_size or min(2048, triton.next_power_of_2(V))
    _topk_candidates_kernel[(B,)](x, x.stride(0), vals, idxs, V, k, KP=triton.next_power_of_2(k), BLOCK=BLOCK,
                                  num_warps=8)
    return vals, idxs
