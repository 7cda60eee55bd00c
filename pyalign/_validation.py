"""Argument checks shared by the public API: every message names the argument and says how to fix it."""
from __future__ import annotations

import math
from typing import Optional

import torch

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def check_amulet_hyper(T, alpha, lam, eta):
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be an integer >= 1 (the number of Amulet updates per token), got {T!r}")
    for name, value in (("alpha", alpha), ("lam", lam), ("eta", eta)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0 (the utility scale; 0 gives plain preference decoding), got {alpha}")
    if lam < 0:
        raise ValueError(f"lam must be >= 0 (the KL weight towards the preference policy), got {lam}")
    if eta <= 0:
        raise ValueError(f"eta must be > 0 (the FTRL learning rate), got {eta}")
    return int(T), float(alpha), float(lam), float(eta)


def check_logits(x: torch.Tensor, name: str, allow_fp64: bool = True) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [batch, vocab], got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape [batch, vocab], got shape {tuple(x.shape)}; "
                         f"for model output [batch, seq, vocab] pass {name}[:, -1, :]")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)}): pass at least one row")
    if x.shape[1] == 0:
        raise ValueError(f"{name} has an empty vocabulary (shape {tuple(x.shape)})")
    ok = FLOAT_DTYPES + ((torch.float64,) if allow_fp64 else ())
    if x.dtype not in ok:
        raise TypeError(f"{name} must be float32, bfloat16 or float16, got {x.dtype}; cast it with .float()")


def check_logit_pair(zp: torch.Tensor, zb: Optional[torch.Tensor], name_p: str, name_b: str) -> None:
    check_logits(zp, name_p)
    if zb is None:
        return
    check_logits(zb, name_b)
    if zb.shape[1] != zp.shape[1]:
        raise ValueError(f"vocabulary mismatch: {name_p} has {zp.shape[1]} tokens and {name_b} {zb.shape[1]}; "
                         "both contexts must come from the same model/tokenizer")
    if zb.shape[0] != zp.shape[0]:
        raise ValueError(f"batch mismatch: {name_p} has {zp.shape[0]} rows and {name_b} {zb.shape[0]}")
    if zb.dtype != zp.dtype:
        raise TypeError(f"dtype mismatch: {name_p} is {zp.dtype} and {name_b} is {zb.dtype}; cast one of them")
    if zb.device != zp.device:
        raise ValueError(f"device mismatch: {name_p} is on {zp.device} and {name_b} on {zb.device}")


def check_no_nan(x: torch.Tensor, name: str) -> None:
    """NaN and +inf logits are errors (never sampled); −inf means 'masked'."""
    bad = torch.isnan(x) | torch.isposinf(x)
    if bool(bad.any()):
        row, col = (int(v) for v in bad.nonzero()[0])
        kind = "NaN" if bool(torch.isnan(x[row, col])) else "+inf"
        raise ValueError(f"{name} contains {kind} (first at row {row}, token {col}); logits must be finite or "
                         "-inf (masked). Check the model output (fp16 overflow?) before sampling")


def per_row(value, batch: int, name: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A scalar or a [B] tensor/list as a contiguous [B] tensor of ``dtype`` on ``device``."""
    t = torch.as_tensor(value, dtype=dtype, device=device) if not isinstance(value, torch.Tensor) else value
    if t.dim() == 0:
        return t.to(device=device, dtype=dtype).expand(batch).contiguous()
    if t.dim() != 1 or t.shape[0] != batch:
        raise ValueError(f"{name} must be a scalar or have shape [{batch}] (one per row), got {tuple(t.shape)}")
    if t.device != device:
        raise ValueError(f"{name} is on {t.device} but the logits are on {device}; move it with .to({str(device)!r})")
    return t.to(dtype).contiguous()


def check_range(t: torch.Tensor, name: str, lo=None, hi=None, lo_open=False, hi_open=False, hint="") -> None:
    if t.is_floating_point() and bool(torch.isnan(t).any()):
        raise ValueError(f"{name} contains NaN")
    if lo is not None:
        bad = (t <= lo) if lo_open else (t < lo)
        if bool(bad.any()):
            raise ValueError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {t[bad][0].item()}. {hint}".strip())
    if hi is not None:
        bad = (t >= hi) if hi_open else (t > hi)
        if bool(bad.any()):
            raise ValueError(f"{name} must be {'<' if hi_open else '<='} {hi}, got {t[bad][0].item()}. {hint}".strip())
