"""Engines provide the logits; methods (``pyalign.methods``) choose the tokens (DESIGN.md §7)."""
from .results import GenerationResult

__all__ = ["GenerationResult"]
