"""Engines provide the logits; methods (``pyalign.methods``) choose the tokens (DESIGN.md §7).

``HFEngine`` (hf.py): continuous batching on a Hugging Face model — requests join and leave a running batch;
``generate`` (generate.py): a batch of prompts run to completion on it; ``beam_search`` (beam.py): method ``beam``.
"""
from .hf import Event, HFEngine, Request
from .results import GenerationResult

__all__ = ["Event", "GenerationResult", "HFEngine", "Request"]
