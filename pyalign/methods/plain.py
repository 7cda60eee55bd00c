"""``base`` and ``pref``: plain decoding of one context (the two single-context baselines of the Amulet paper).

    base:  z = z_base   (Amulet's system prompt with an empty preference; the preference is ignored)
    pref:  z = z_pref   (the preference-prompted context: "Pref" in the paper)
"""
from __future__ import annotations

from .registry import GuidedMethod, register_method


@register_method
class Base(GuidedMethod):
    name, contexts, requires_preference = "base", ("base",), False
    summary = "plain decoding of the plain prompt (the preference is ignored)"

    def weight(self) -> float:
        return 1.0


@register_method
class Pref(GuidedMethod):
    name, contexts = "pref", ("pref",)
    summary = "plain decoding of the preference-prompted context (Amulet's 'Pref' baseline)"

    def weight(self) -> float:
        return 1.0
