"""Shared pieces of the op modules: the library, per-row parameters, RNG keys, bad-row errors.

Cost of the public wrappers: Python scalars are checked on the host and become cached [B] tensors (no allocation,
no kernel per call); per-row tensors are checked by shape, dtype and device, and by value only on the CPU (on a
GPU a value check is a host synchronisation: tensors there are taken as validated by the caller, e.g. once per
request as ``pyalign.engine`` does). The one remaining synchronisation on a GPU is the bad-row check of a result
(``check_rows=False`` skips it: token −1 then marks such rows).
"""
from __future__ import annotations

import functools
import math
from typing import Optional, Union

import torch

from .. import backends
from .._validation import check_no_nan, check_range, per_row

LIB = torch.library.Library("pyalign", "DEF")
Scalar = Union[float, int]
PerRow = Union[Scalar, torch.Tensor]
SEED_BOUND = 2 ** 62
ROW_SEED_STRIDE = 0x9E3779B97F4A7C15 % SEED_BOUND   # golden-ratio stride: distinct rows, distinct keys


def define(schema: str) -> str:
    """Define ``torch.ops.pyalign.<name>`` from its schema; CPU and CUDA calls go to the device's backend
    (``pyalign.backends``) by the op's name. Returns the name."""
    name = schema.split("(", 1)[0]
    LIB.define(schema)
    for dev, key in (("cpu", "CPU"), ("cuda", "CUDA")):
        def impl(*args, _dev=dev, _name=name):
            return getattr(backends.for_device(_dev), _name)(*args)
        impl.__name__ = f"{name}_{dev}"
        LIB.impl(name, impl, key)
    return name


def make_rng(batch: int, device: torch.device, generator: Optional[torch.Generator] = None,
             seed: Optional[PerRow] = None, offset: PerRow = 0) -> torch.Tensor:
    """Per-row RNG keys [B, 2] int64 = (seed, offset).

    With ``seed`` as a [B] tensor or list, row b's draw is fully determined by (seed[b], offset[b], token id),
    whatever the batch composition or backend: pass a request's seed and its step number as ``offset`` for
    per-request reproducibility. A single int seeds row b with (seed + b·0x9E3779B97F4A7C15) mod 2^62, so the
    rows of one call get independent noise. Without ``seed``, seeds are drawn from ``generator`` (or the
    default generator of ``device``), which advances it: seeded generators reproduce, and the draw is
    CUDA-graph safe."""
    device = torch.device(device)
    if seed is None:
        if generator is not None and generator.device.type != device.type:
            raise ValueError(f"generator is on {generator.device} but the logits are on {device}; "
                             f"create it with torch.Generator(device={device.type!r})")
        seeds = torch.randint(0, SEED_BOUND, (batch,), generator=generator, device=device, dtype=torch.int64)
    elif isinstance(seed, int) or (isinstance(seed, torch.Tensor) and seed.dim() == 0):
        rows = torch.arange(batch, dtype=torch.int64, device=device)
        seeds = (int(seed) + rows * ROW_SEED_STRIDE) % SEED_BOUND
    else:
        seeds = per_row(seed, batch, "seed", torch.int64, device)
    offsets = per_row(offset, batch, "offset", torch.int64, device)
    return torch.stack([seeds, offsets], dim=1)


def _last_dim_contiguous(x: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return x if x is None or x.stride(-1) == 1 else x.contiguous()


def _raise_bad_rows(bad: torch.Tensor, inputs: dict[str, Optional[torch.Tensor]], what: str) -> None:
    for name, t in inputs.items():
        if t is not None:
            check_no_nan(t.reshape(t.shape[0], -1), name)
    row = int(bad.nonzero()[0, 0])
    raise ValueError(f"row {row} has no finite {what}: every token is -inf (masked) in the combined logits, "
                     "so nothing can be sampled; check the masks applied to the inputs")


@functools.lru_cache(maxsize=256)
def _full(value, batch: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A cached constant [B] tensor (ops never write their inputs, so sharing is safe)."""
    return torch.full((batch,), value, dtype=dtype, device=device)


def _row_param(value, batch: int, name: str, dtype: torch.dtype, device: torch.device, lo=None, hi=None,
               lo_open: bool = False, hint: str = "") -> torch.Tensor:
    """A per-row parameter as a contiguous [B] tensor: scalars checked on the host and cached; tensors checked by
    metadata, and by value on the CPU only (see the module docstring)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        v = float(value)
        bad = not math.isfinite(v) or (lo is not None and (v <= lo if lo_open else v < lo)) or \
            (hi is not None and v > hi)
        if bad:
            bound = [f"{'>' if lo_open else '>='} {lo}"] if lo is not None else []
            bound += [f"<= {hi}"] if hi is not None else []
            raise ValueError(f"{name} must be finite{' and ' + ' and '.join(bound) if bound else ''}, "
                             f"got {value!r}. {hint}".strip())
        return _full(int(value) if dtype == torch.int64 else v, batch, dtype, torch.device(device))
    t = per_row(value, batch, name, dtype, device)
    if t.device.type == "cpu":
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} must be finite, got {t.tolist()}")
        check_range(t, name, lo=lo, hi=hi, lo_open=lo_open, hint=hint)
    return t
