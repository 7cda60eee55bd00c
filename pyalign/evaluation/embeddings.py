"""The coherence metric: cosine of MiniLM sentence embeddings of the prompt and the response.

    coherence(prompt, response) = cos(e(prompt), e(response))   ∈ [−1, 1]

The encoder (loading, pooling, normalisation) is ``pyalign.scoring.SentenceEncoder``, the one the embedding
reward of ARGS/PANDA uses too.
"""
from __future__ import annotations

from typing import Optional, Sequence

from ..scoring.embeddings import SentenceEncoder, minilm_path, shared_encoder  # noqa: F401


def coherence_scores(prompts: Sequence[str], responses: Sequence[str],
                     encoder: Optional[SentenceEncoder] = None) -> list[float]:
    """cos(e(prompt_i), e(response_i)) for each pair (the process's shared MiniLM when no encoder is given)."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    return (encoder or shared_encoder()).cosine(list(prompts), list(responses)).tolist()


def coherence(prompt: str, response: str, encoder: Optional[SentenceEncoder] = None) -> float:
    return coherence_scores([prompt], [response], encoder)[0]
