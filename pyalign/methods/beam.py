"""``beam``: beam search on the preference context (Amulet's beam-search baseline).

Not a per-token rule but a search over whole continuations: ``pyalign.generate`` runs it through Hugging Face
``model.generate(num_beams=..., do_sample=False)`` (``pyalign.engine.beam``); the step-by-step engines
(continuous batching, vLLM) refuse it.
"""
from __future__ import annotations

import dataclasses

from .registry import Method, MethodParams, param, register_method


@dataclasses.dataclass(frozen=True)
class BeamParams(MethodParams):
    num_beams: int = param(4, "beams", minimum=1)


@register_method
class Beam(Method):
    name, Params, kind, contexts = "beam", BeamParams, "search", ("pref",)
    summary = "beam search on the preference context (Amulet's baseline)"
