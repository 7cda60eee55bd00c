"""``torch.ops.pyalign.topk_candidates``: schema, fake kernel and the validating public wrapper.

The k largest logits per row, descending, ties to the smaller id. Semantics: ``pyalign/reference``; kernels: one file per backend
(``csrc/cpu/``, ``csrc/cuda/``, ``triton_kernels/``, ``pyalign/backends/torch_backend.py``).
"""
from __future__ import annotations


import torch

from .._validation import check_logits, check_no_nan
from ._common import _last_dim_contiguous, define

SCHEMA = ("topk_candidates(Tensor logits, int k) -> (Tensor, Tensor)")
define(SCHEMA)


@torch.library.register_fake("pyalign::topk_candidates")
def _(logits, k):
    B = logits.shape[0]
    return (logits.new_empty((B, k), dtype=torch.float32), logits.new_empty((B, k), dtype=torch.int64))


def _check_k(k: int, V: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an integer, got {type(k).__name__}")
    if k < 1 or k > V:
        raise ValueError(f"k must be between 1 and the vocabulary size {V}, got {k}")
    return k


def topk_candidates(logits: torch.Tensor, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest logits per row, descending, ties to the smaller id: (values [B,k] fp32, ids [B,k] int64)."""
    check_logits(logits, "logits")
    _check_k(k, logits.shape[1])
    check_no_nan(logits, "logits")
    return torch.ops.pyalign.topk_candidates(_last_dim_contiguous(logits), k)
