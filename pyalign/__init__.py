"""pyalign: test-time personalized alignment of LLMs (Amulet, Linear Alignment, PAD, ARGS, PANDA) with fused
kernels exposed as ``torch.ops.pyalign.*``.

Layers, bottom up (DESIGN.md §7; checked by tests/test_layers.py): kernels and ``reference`` → ``backends`` →
ops (``ops``: one module per op) → ``chat``/``preferences``/``scoring`` → ``methods`` (step rules) → ``engine`` (the HF
loop) and ``integrations`` (vLLM, HF ``LogitsProcessor``) → ``serve``, ``evaluation``, ``persrm`` → ``cli``."""
from . import backends
from .ops import guided_logprobs, guided_sample, make_rng, rescore_candidates, topk_candidates, topk_rescore
from .reference.amulet import amulet_weight
from .engine.generate import GenerationResult, generate
from .engine.hf import HFEngine
from .integrations.hf import AmuletLogitsProcessor

__version__ = "0.1.0"

__all__ = ["AmuletLogitsProcessor", "GenerationResult", "HFEngine", "amulet_weight", "backends", "generate",
           "guided_logprobs", "guided_sample", "make_rng", "rescore_candidates", "topk_candidates", "topk_rescore",
           "__version__"]
