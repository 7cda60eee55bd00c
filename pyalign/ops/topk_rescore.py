"""``torch.ops.pyalign.topk_rescore``: schema, fake kernel and the validating public wrapper.

PAD's step: top-k of the base logits rescored by a token-level reward, then argmax or a draw. Semantics: ``pyalign/reference``; kernels: one file per backend
(``csrc/cpu/``, ``csrc/cuda/``, ``triton_kernels/``, ``pyalign/backends/torch_backend.py``).
"""
from __future__ import annotations

from typing import Optional, Union

import torch

from .._validation import check_logits, check_range, per_row
from ._common import PerRow, _last_dim_contiguous, _raise_bad_rows, define, make_rng
from .topk_candidates import _check_k

SCHEMA = ("topk_rescore(Tensor base_logits, Tensor rm_logits, Tensor ref_logits, int k, Tensor weight, "
          "Tensor temperature, Tensor rng) -> (Tensor, Tensor, Tensor)")
define(SCHEMA)


@torch.library.register_fake("pyalign::topk_rescore")
def _(base_logits, rm_logits, ref_logits, k, weight, temperature, rng):
    B = base_logits.shape[0]
    return (base_logits.new_empty((B,), dtype=torch.int64), base_logits.new_empty((B, k), dtype=torch.int64),
            base_logits.new_empty((B, k), dtype=torch.float32))


def topk_rescore(base_logits: torch.Tensor, rm_logits: torch.Tensor, ref_logits: torch.Tensor, k: int = 10,
                 weight: Union[PerRow, torch.Tensor] = 1.0, temperature: PerRow = 0.0,
                 generator: Optional[torch.Generator] = None, *, seed: Optional[PerRow] = None,
                 offset: PerRow = 0, return_details: bool = False):
    """PAD's token-level reward-guided choice among the base model's top-k, in one op.

    score_j = base[c_j] + Σ_d w_d·(log_softmax_k(rm_d[c])_j − log_softmax_k(ref[c])_j) over the k candidates
    c = top-k(base); token = argmax score (temperature 0) or a draw from softmax(score/τ).
    ``rm_logits`` is [B, V] or [B, D, V] (D preference dimensions, ``weight`` then a [D] or [B, D] vector).
    Returns tokens [B] (and, with ``return_details``, candidates [B, k] and scores [B, k])."""
    check_logits(base_logits, "base_logits")
    check_logits(ref_logits, "ref_logits")
    B, V = base_logits.shape
    if not isinstance(rm_logits, torch.Tensor) or rm_logits.dim() not in (2, 3):
        raise ValueError("rm_logits must have shape [batch, vocab] or [batch, dims, vocab]")
    rm3 = rm_logits[:, None, :] if rm_logits.dim() == 2 else rm_logits
    for name, t in (("rm_logits", rm3), ("ref_logits", ref_logits)):
        if t.shape[0] != B or t.shape[-1] != V:
            raise ValueError(f"{name} has shape {tuple(t.shape)} but base_logits is [{B}, {V}]: vocabularies and "
                             "batches must match (same tokenizer; re-tokenise or use a reward model of the base family)")
        if t.device != base_logits.device:
            raise ValueError(f"{name} is on {t.device} but base_logits on {base_logits.device}")
        if t.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise TypeError(f"{name} must be float32, bfloat16 or float16, got {t.dtype}")
    D = rm3.shape[1]
    _check_k(k, V)
    dev = base_logits.device
    w = torch.as_tensor(weight, dtype=torch.float32, device=dev) if not isinstance(weight, torch.Tensor) else weight
    w = w.to(device=dev, dtype=torch.float32)
    if w.dim() == 0:
        w = w.reshape(1, 1).expand(B, D)
    elif w.dim() == 1 and w.shape[0] == D:
        w = w.reshape(1, D).expand(B, D)
    elif w.dim() == 1 and w.shape[0] == B and D == 1:
        w = w.reshape(B, 1)
    elif not (w.dim() == 2 and tuple(w.shape) == (B, D)):
        raise ValueError(f"weight must be a scalar, [{D}] (one per preference dimension), or [{B}, {D}]; "
                         f"got {tuple(w.shape)}")
    w = w.contiguous()
    if not bool(torch.isfinite(w).all()):
        raise ValueError("weight must be finite")
    tau = per_row(temperature, B, "temperature", torch.float32, dev)
    check_range(tau, "temperature", lo=0.0, hint="use 0 for greedy decoding")
    rng = make_rng(B, dev, generator, seed, offset)
    tokens, cand, scores = torch.ops.pyalign.topk_rescore(
        _last_dim_contiguous(base_logits), rm3 if rm3.stride(-1) == 1 else rm3.contiguous(),
        _last_dim_contiguous(ref_logits), k, w, tau, rng)
    bad = tokens < 0
    if bool(bad.any()):
        _raise_bad_rows(bad, {"base_logits": base_logits, "rm_logits": rm3, "ref_logits": ref_logits},
                        "candidate (base, reward and reference logits all finite)")
    return (tokens, cand, scores) if return_details else tokens
