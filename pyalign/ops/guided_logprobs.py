"""``torch.ops.pyalign.guided_logprobs``: schema, fake kernel and the validating public wrapper.

log_softmax(z_base + w (z_pref − z_base)) over the vocabulary, [B, V]. Semantics: ``pyalign/reference``; kernels: one file per backend
(``csrc/cpu/``, ``csrc/cuda/``, ``triton_kernels/``, ``pyalign/backends/torch_backend.py``).
"""
from __future__ import annotations

from typing import Optional

import torch

from .._validation import check_logit_pair
from ._common import PerRow, _last_dim_contiguous, _raise_bad_rows, _row_param, define

SCHEMA = ("guided_logprobs(Tensor logits_pref, Tensor? logits_base, Tensor weight) -> Tensor")
define(SCHEMA)


@torch.library.register_fake("pyalign::guided_logprobs")
def _(logits_pref, logits_base, weight):
    return logits_pref.new_empty(logits_pref.shape, dtype=torch.float32)


def guided_logprobs(logits_pref: torch.Tensor, logits_base: Optional[torch.Tensor] = None,
                    weight: PerRow = 1.0, check_rows: bool = True) -> torch.Tensor:
    """log_softmax(z_base + w·(z_pref − z_base)) over the vocabulary: [B, V] fp32.

    ``weight`` is a float or one per row: Amulet's A (``pyalign.amulet_weight``), 1 + r for Linear
    Alignment, 1 for plain preference decoding. A token that is −∞ in either context stays −∞.

    >>> zp, zb = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    >>> guided_logprobs(zp, zb, 2.0).exp()      # z = [4, 0]
    tensor([[0.9820, 0.0180]])
    """
    check_logit_pair(logits_pref, logits_base, "logits_pref", "logits_base")
    B = logits_pref.shape[0]
    w = _row_param(weight, B, "weight", torch.float32, logits_pref.device, hint="a finite guidance weight is required")
    out = torch.ops.pyalign.guided_logprobs(_last_dim_contiguous(logits_pref), _last_dim_contiguous(logits_base), w)
    if check_rows:                 # a bad row is NaN throughout: its first column tells, no [B, V] scan
        bad = torch.isnan(out[:, 0])
        if bool(bad.any()):
            _raise_bad_rows(bad, {"logits_pref": logits_pref, "logits_base": logits_base}, "log-probability")
    return out
