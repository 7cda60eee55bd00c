"""Beam search (method ``beam``) through Hugging Face ``model.generate``: a whole-continuation search, not a
per-token rule, so it runs here rather than in the continuous-batching loop."""
from __future__ import annotations

import time

import torch

from ..batching import ContextBatch
from ..errors import InvalidArgument
from ..methods.beam import Beam
from ..preferences import batch_context_ids, get_preference
from .results import GenerationResult
from .text import RowText, eos_token_ids, pad_token_id


@torch.inference_mode()
def beam_search(model, tokenizer, prompts, preference, sampling, placement=None, system_prompt=None, stream=None,
                context_overrides=None, **params) -> list[GenerationResult]:
    """Beam search on the preference context; one GenerationResult per prompt (log-probs: the preference
    model's log-probs of the returned tokens, one teacher-forced forward)."""
    cls = Beam
    unknown = sorted(set(params) - set(cls.Params.names()))
    if unknown:
        raise InvalidArgument(unknown[0], f"method 'beam' has no parameter {', '.join(unknown)}; its parameters are "
                                          f"{', '.join(cls.Params.names())}")
    if preference is None and not context_overrides[0]:
        raise InvalidArgument("preference", "method 'beam' needs a preference: pass preference='concise' (or "
                                            "another named preference, or free text)")
    p = cls.Params.build(params)
    placement = cls.default_placement if placement is None else placement
    t0 = time.perf_counter()
    if context_overrides[0] is not None:
        pref = [o[0] for o in context_overrides]
    else:
        pref, _ = batch_context_ids(tokenizer, prompts, get_preference(preference), placement, system_prompt)
    pad_id = pad_token_id(tokenizer, model)
    ctx = ContextBatch(model, pref, pad_id, sampling.max_new_tokens)     # padding and length checks
    ids, mask = ctx.prompt_ids, ctx.attention_mask
    eos = list(eos_token_ids(tokenizer, model))
    beam_kw = dict(early_stopping=True, length_penalty=1.0) if p.num_beams > 1 else {}
    out = model.generate(input_ids=ids, attention_mask=mask, num_beams=p.num_beams, do_sample=False,
                         max_new_tokens=sampling.max_new_tokens, min_new_tokens=1, eos_token_id=eos or None,
                         pad_token_id=pad_id, **beam_kw)
    L = ids.shape[1]
    new = out[:, L:]
    full_mask = torch.cat([mask, torch.ones_like(new)], dim=1)
    positions = (full_mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=out, attention_mask=full_mask, position_ids=positions).logits
    lp = torch.log_softmax(logits[:, L - 1:-1].float(), dim=-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
    now = time.perf_counter()
    results = []
    for r, prompt in enumerate(prompts):
        row = new[r].tolist()
        n = next((j + 1 for j, t in enumerate(row) if t in eos), len(row))
        text, finish = RowText(tokenizer, sampling.stop), "length"
        for j, t in enumerate(row[:n]):
            if t in eos:
                finish = "eos"
                delta = text.flush()
            else:
                delta = text.add(t)
                if text.stopped:
                    finish = "stop"
            if j == n - 1 and finish == "length":
                delta += text.flush()
            if stream is not None:
                stream(r, t, delta)
            if text.stopped:
                n = j + 1
                break
        total = now - t0
        results.append(GenerationResult(
            prompt=prompt, preference=preference, method=cls.name, text=text.text, token_ids=row[:n],
            logprobs=lp[r, :n].tolist(), finish_reason=finish, num_prompt_tokens=len(pref[r]),
            timings=dict(prefill_s=total, decode_s=0.0, total_s=total, tokens_per_s=0.0,
                         ms_per_token=1000.0 * total / max(n, 1))))
    return results
