"""``la``: Linear Alignment (Amulet's LA baseline) — classifier-free guidance between the two contexts.

    z = z_pref + r (z_pref − z_base) = z_base + (1 + r)(z_pref − z_base)        (r = 2 in Amulet's baseline)
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from .registry import GuidedMethod, MethodParams, param, register_method


@dataclasses.dataclass(frozen=True)
class LAParams(MethodParams):
    ratio: float = param(2.0, "Linear Alignment ratio r: z = z_pref + r (z_pref − z_base)")
    weight: Optional[float] = param(None, "guidance weight w of z_base + w (z_pref − z_base), replacing 1 + ratio")


@register_method
class LinearAlignment(GuidedMethod):
    name, Params, contexts = "la", LAParams, ("pref", "base")
    summary = "Linear Alignment: z = z_pref + r (z_pref − z_base), r = 2"

    def weight(self) -> float:
        p = self.params
        return p.weight if p.weight is not None else 1.0 + p.ratio
