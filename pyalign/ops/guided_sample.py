"""``torch.ops.pyalign.guided_sample``: schema, fake kernel and the validating public wrapper.

z = z_base + w (z_pref − z_base); greedy or Gumbel-max sample of z/τ after top-k/top-p, one op. Semantics: ``pyalign/reference``; kernels: one file per backend
(``csrc/cpu/``, ``csrc/cuda/``, ``triton_kernels/``, ``pyalign/backends/torch_backend.py``).
"""
from __future__ import annotations

import functools

from typing import Optional

import torch

from .._validation import check_logit_pair
from ._common import PerRow, _full, _last_dim_contiguous, _raise_bad_rows, _row_param, define, make_rng

SCHEMA = ("guided_sample(Tensor logits_pref, Tensor? logits_base, Tensor weight, Tensor temperature, "
          "Tensor top_k, Tensor top_p, Tensor rng) -> (Tensor, Tensor)")
define(SCHEMA)


@torch.library.register_fake("pyalign::guided_sample")
def _(logits_pref, logits_base, weight, temperature, top_k, top_p, rng):
    B = logits_pref.shape[0]
    return (logits_pref.new_empty((B,), dtype=torch.int64), logits_pref.new_empty((B,), dtype=torch.float32))


def guided_sample(logits_pref: torch.Tensor, logits_base: Optional[torch.Tensor] = None, weight: PerRow = 1.0,
                  temperature: PerRow = 1.0, top_k: PerRow = 0, top_p: PerRow = 1.0,
                  generator: Optional[torch.Generator] = None, *, seed: Optional[PerRow] = None,
                  offset: PerRow = 0, check_rows: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row from softmax(z/τ), z = z_base + w·(z_pref − z_base), in one op.

    temperature 0 is greedy (argmax, ties to the smallest id); top_k 0 and top_p 1 disable the filters
    (per-row values allowed). Returns (tokens [B] int64, log_softmax(z)[token] [B] fp32). The draw is
    Gumbel-max with Philox noise keyed by (seed, offset, token id): the same on every backend
    (see ``pyalign/reference/sampling.py`` for the exact order of operations).
    """
    check_logit_pair(logits_pref, logits_base, "logits_pref", "logits_base")
    B, V = logits_pref.shape
    dev = logits_pref.device
    if seed is None and generator is None and _all_scalars(weight, temperature, top_k, top_p) and temperature == 0:
        args = _greedy_params(float(weight), int(top_k), float(top_p), B, dev)       # one cached lookup
    else:
        args = _params(weight, temperature, top_k, top_p, generator, seed, offset, B, dev)
    tokens, logp = torch.ops.pyalign.guided_sample(_last_dim_contiguous(logits_pref),
                                                   _last_dim_contiguous(logits_base), *args)
    if check_rows and _any_negative(tokens):
        _raise_bad_rows(tokens < 0, {"logits_pref": logits_pref, "logits_base": logits_base}, "logit")
    return tokens, logp


def _all_scalars(*values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _any_negative(tokens: torch.Tensor) -> bool:
    """A bad row (token −1)? On the CPU through numpy (no dispatcher round trip); on a GPU one synchronisation."""
    if tokens.device.type == "cpu":
        return bool(tokens.numpy().min(initial=0) < 0)
    return bool(tokens.min() < 0)


@functools.lru_cache(maxsize=256)
def _greedy_params(weight: float, top_k: int, top_p: float, B: int, dev: torch.device) -> tuple:
    """The greedy call's parameter tensors, validated and built once per (values, B, device)."""
    return _params(weight, 0.0, top_k, top_p, None, None, 0, B, dev)


def _params(weight, temperature, top_k, top_p, generator, seed, offset, B: int, dev: torch.device) -> tuple:
    w = _row_param(weight, B, "weight", torch.float32, dev, hint="a finite guidance weight is required")
    tau = _row_param(temperature, B, "temperature", torch.float32, dev, lo=0.0, hint="use 0 for greedy decoding")
    k = _row_param(top_k, B, "top_k", torch.int64, dev, lo=0, hint="use 0 to disable top-k")
    p = _row_param(top_p, B, "top_p", torch.float32, dev, lo=0.0, hi=1.0, lo_open=True,
                   hint="top_p must lie in (0, 1]; use 1.0 to disable")
    if seed is None and generator is None and isinstance(temperature, (int, float)) and temperature == 0:
        rng = _full(0, 2 * B, torch.int64, torch.device(dev)).view(B, 2)     # greedy: the key is never read
    else:
        rng = make_rng(B, dev, generator, seed, offset)
    return w, tau, k, p, rng
