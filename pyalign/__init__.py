"""pyalign: test-time personalized alignment of LLMs (Amulet, Linear Alignment, PAD, ARGS, PANDA) with fused
kernels exposed as ``torch.ops.pyalign.*``."""
from . import backends
from .api import guided_logprobs, guided_sample, make_rng, rescore_candidates, topk_candidates, topk_rescore
from .reference.amulet import amulet_weight
from .generation.generate import GenerationResult, generate
from .generation.hf import AmuletLogitsProcessor

__version__ = "0.1.0"

__all__ = ["AmuletLogitsProcessor", "GenerationResult", "amulet_weight", "backends", "generate", "guided_logprobs",
           "guided_sample", "make_rng", "rescore_candidates", "topk_candidates", "topk_rescore", "__version__"]
