"""Plain-PyTorch reference math: the executable specification every kernel is tested against."""
from .amulet import amulet_iterative, amulet_weight
from .guidance import guided_logits, guided_logprobs
from .philox import gumbel, philox4x32_10, row_gumbel, uniform
from .rescore import rescore_candidates, topk_candidates, topk_rescore
from .sampling import guided_sample, topk_mask, topp_mask

__all__ = ["amulet_iterative", "amulet_weight", "guided_logits", "guided_logprobs", "guided_sample",
           "gumbel", "philox4x32_10", "rescore_candidates", "row_gumbel", "topk_candidates", "topk_mask",
           "topk_rescore", "topp_mask", "uniform"]
