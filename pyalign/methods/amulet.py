"""``amulet``: T FTRL updates per token between the preference and plain contexts, collapsed exactly to one pass.

    z = z_base + A (z_pref − z_base),   A = amulet_weight(T, α, λ, η)   (≈ 5.6487 at the official defaults)

The recurrence and the proof of the collapse are in ``pyalign/reference/amulet.py`` (the executable spec, with the
literal T-step loop the kernels are tested against); the official defaults are written once, there.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from ..errors import InvalidArgument
from ..reference.amulet import OFFICIAL, amulet_weight
from .registry import GuidedMethod, MethodParams, param, register_method


@dataclasses.dataclass(frozen=True)
class AmuletParams(MethodParams):
    T: int = param(OFFICIAL.T, "Amulet updates per token", minimum=1, flag="--T")
    alpha: float = param(OFFICIAL.alpha, "utility scale α (0 = plain preference decoding)", minimum=0.0)
    lam: float = param(OFFICIAL.lam, "KL weight λ towards the preference policy", minimum=0.0)
    eta: float = param(OFFICIAL.eta, "FTRL learning rate η", minimum=0.0, exclusive_minimum=True)
    weight: Optional[float] = param(None, "guidance weight A, replacing amulet_weight(T, α, λ, η)")


@register_method
class Amulet(GuidedMethod):
    name, Params, contexts = "amulet", AmuletParams, ("pref", "base")
    summary = "Amulet: T FTRL updates per token, collapsed exactly to z = z_base + A (z_pref − z_base)"

    def weight(self) -> float:
        p = self.params
        if p.weight is not None:
            return p.weight
        try:
            return amulet_weight(p.T, p.alpha, p.lam, p.eta)
        except ValueError as exc:            # the recurrence overflowed: name the culprit
            raise InvalidArgument("T", str(exc)) from exc
