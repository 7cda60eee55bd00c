"""Hugging Face integration: Amulet / Linear Alignment as a ``LogitsProcessor`` for ``model.generate``.

    from pyalign import AmuletLogitsProcessor
    from pyalign.preferences import context_ids, get_preference

    pref_ids, base_ids = context_ids(tok, question, get_preference("concise"))
    pref = torch.tensor([pref_ids])
    base = [base_ids]
    out = model.generate(pref, logits_processor=[AmuletLogitsProcessor(model, base)], do_sample=False,
                         max_new_tokens=64)

``generate`` runs the preference context; the processor runs the base context on the same model with its
own KV cache (the pattern of transformers' ``UnbatchedClassifierFreeGuidanceLogitsProcessor``): on the first
call it prefills the base prompts, then feeds the last generated token of each row. It returns
``guided_logprobs(scores, base_logits, A)`` = log_softmax(z_base + A (z_pref − z_base)), so greedy decoding
picks exactly the token ``pyalign.generate(method="amulet")`` picks. Batches work (one base prompt per row
of ``input_ids``, of any lengths); beam search does not (the base cache is not reordered with the beams).
A processor holds state: create a new one for each ``generate`` call.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from ..ops import guided_logprobs
from ..batching import ContextBatch
from ..methods.amulet import AmuletParams, Amulet


class AmuletLogitsProcessor:
    """log_softmax(z_base + A (z_pref − z_base)) with z_base from ``base_input_ids`` on ``model``.

    A = ``weight`` if given, else 1 + ``ratio`` if given (Linear Alignment), else amulet_weight(T, α, λ, η).
    ``base_input_ids``: a [B, L] tensor (no padding), or a list of B token-id lists (any lengths)."""

    def __init__(self, model, base_input_ids: Union[torch.Tensor, Sequence[Sequence[int]]],
                 weight: Optional[float] = None, ratio: Optional[float] = None,
                 pad_token_id: Optional[int] = None, **amulet_params):
        if ratio is not None and weight is None:
            weight = 1.0 + float(ratio)
        self.weight = Amulet(AmuletParams(weight=weight, **amulet_params)).weight()   # T, alpha, lam, eta
        if isinstance(base_input_ids, torch.Tensor):
            ids = base_input_ids.reshape(1, -1) if base_input_ids.dim() == 1 else base_input_ids
            seqs = ids.tolist()
        else:
            seqs = [list(map(int, s)) for s in base_input_ids]
            if seqs and not isinstance(base_input_ids[0], (list, tuple, torch.Tensor)):
                seqs = [list(map(int, base_input_ids))]
        if pad_token_id is None:
            gc = getattr(model, "generation_config", None)
            pad_token_id = getattr(gc, "pad_token_id", None)
            if pad_token_id is None:
                pad_token_id = getattr(model.config, "pad_token_id", None) or 0
        self.ctx = ContextBatch(model, seqs, int(pad_token_id))
        self._started = False

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[0] != self.ctx.num_rows:
            raise ValueError(f"AmuletLogitsProcessor has {self.ctx.num_rows} base rows but generate() runs "
                             f"{input_ids.shape[0]} sequences: pass one base prompt per input row "
                             "(beam search and num_return_sequences > 1 are not supported)")
        if not self._started:
            base = self.ctx.prefill()
            self._started = True
        else:
            base = self.ctx.step(input_ids[:, -1])
        base = base.to(device=scores.device, dtype=scores.dtype)
        return guided_logprobs(scores, base, self.weight).to(scores.dtype)
