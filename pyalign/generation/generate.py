"""``pyalign.generate``: batched, KV-cached decoding with any registered method.

    model, tok = pyalign.models.load_model()
    [r] = pyalign.generate(model, tok, "How do I boil an egg?", preference="concise", method="amulet",
                           max_new_tokens=64)
    r.text, r.token_ids, r.logprobs, r.finish_reason, r.timings

The loop: the method prefills (one batched forward of all contexts) and proposes a token per row; each row
stops on its own at an EOS id (the tokenizer's and the model's ``generation_config``), a stop string, or
``max_new_tokens``; the batch runs until every row has stopped (finished rows keep being fed a token whose
result is discarded). ``token_ids`` holds the new tokens including a final EOS token (as Hugging Face
``generate`` returns it); ``text`` is decoded without special tokens and, on a stop string, ends just before
it (the tokens that completed the stop string stay in ``token_ids``). ``stream(row, token_id, delta)`` is
called once per new token of each row; deltas hold back incomplete UTF-8 and anything that could still
become a stop string, and concatenate to ``text``. (A method that is not stepwise, ``beam``, streams its tokens
only once it has finished.)

Seeds: ``seed=int`` gives each prompt the seed ``prompt_seed(seed, prompt)`` (so a prompt's sample does not
depend on the other prompts of the batch or its position; equal prompts get equal samples), ``seed=[...]``
one seed per prompt; the Philox offset is the step number. Without a seed, sampling draws from the
``torch`` default generator.

Timings (seconds, per row): ``prefill_s`` (the batch's prefill and first token), ``decode_s`` (from then until
the row finished), ``total_s``, ``tokens_per_s`` = new tokens after the first / decode_s (the steady decode
rate; 0 when a single token was generated) and ``ms_per_token`` = 1000 · total_s / new tokens.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Optional, Sequence, Union

import torch

from .._validation import check_amulet_hyper
from .methods import MethodConfig, get_method
from .templates import PLACEMENTS, resolve_preference


@dataclasses.dataclass
class GenerationResult:
    prompt: str
    preference: Optional[str]
    method: str
    text: str
    token_ids: list
    logprobs: list
    finish_reason: str
    num_prompt_tokens: int
    timings: dict


def eos_token_ids(tokenizer, model) -> tuple:
    """The tokenizer's EOS id and the model's generation_config EOS id(s), deduplicated."""
    ids = []
    for v in (getattr(tokenizer, "eos_token_id", None),
              getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        if v is None:
            continue
        for x in (v if isinstance(v, (list, tuple)) else [v]):
            if int(x) not in ids:
                ids.append(int(x))
    return tuple(ids)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _validate(prompts, method, preference, max_new_tokens, temperature, top_k, top_p, T, alpha, lam, eta, ratio,
              weight, placement, num_beams, stop):
    cls = get_method(method)
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not prompts:
        raise ValueError("prompts is empty: pass a string or a non-empty list of strings")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"prompts[{i}] must be a string, got {type(p).__name__}")
        if not p.strip():
            raise ValueError(f"prompts[{i}] is empty: every prompt needs some text")
    if isinstance(preference, (list, tuple)):
        if not getattr(cls, "accepts_preference_list", False):
            raise TypeError(f"method {method!r} takes one preference (a string); only methods combining several "
                            "preference dimensions (pad) accept a list")
        preference = [resolve_preference(p) for p in preference]
        if not preference:
            raise ValueError("preference is an empty list: give at least one preference dimension")
    elif preference is not None:
        preference = resolve_preference(preference)
    elif cls.requires_preference:
        raise ValueError(f"method {method!r} needs a preference: pass preference='concise' (or another named "
                         "preference, or free text)")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    if not _is_number(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0 (0 disables it), got {top_k!r}")
    if not _is_number(top_p) or not 0 < top_p <= 1:
        raise ValueError(f"top_p must lie in (0, 1] (1 disables it), got {top_p!r}")
    check_amulet_hyper(T, alpha, lam, eta)
    if not _is_number(ratio):
        raise ValueError(f"ratio must be a finite number, got {ratio!r}")
    if weight is not None and not _is_number(weight):
        raise ValueError(f"weight must be a finite number or None, got {weight!r}")
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be 'system' or 'user', got {placement!r}")
    if isinstance(num_beams, bool) or not isinstance(num_beams, int) or num_beams < 1:
        raise ValueError(f"num_beams must be an integer >= 1, got {num_beams!r}")
    if stop is None:
        stop = []
    elif isinstance(stop, str):
        stop = [stop]
    stop = list(stop)
    for s in stop:
        if not isinstance(s, str) or not s:
            raise ValueError(f"stop must be a string or a list of non-empty strings, got {s!r}")
    return cls, prompts, preference, stop


class _Row:
    """Per-row text state: incremental decoding, stop strings, streaming deltas."""

    def __init__(self, tokenizer, stop: list, holdback: int):
        self.tok, self.stop, self.holdback = tokenizer, stop, holdback
        self.ids: list = []
        self.logprobs: list = []
        self.text = ""
        self.emitted = 0
        self.finish: Optional[str] = None
        self.t_end = 0.0
        self.search_from = 0

    def add(self, token: int, logprob: float, is_eos: bool) -> str:
        """Append a token; returns the text delta to stream. Sets ``finish`` on EOS or a stop string."""
        self.ids.append(token)
        self.logprobs.append(logprob)
        if is_eos:
            self.finish = "eos"
        else:
            self.text = self.tok.decode(self.ids, skip_special_tokens=True)
            if self.stop:
                hits = [i for i in (self.text.find(s, max(0, self.search_from)) for s in self.stop) if i >= 0]
                if hits:
                    self.text = self.text[:min(hits)]
                    self.finish = "stop"
                else:
                    self.search_from = max(0, len(self.text) - self.holdback)
        return self.delta(final=self.finish is not None)

    def delta(self, final: bool) -> str:
        if final:
            safe = len(self.text)
        else:
            safe = len(self.text)
            while safe > self.emitted and self.text[safe - 1] == "\ufffd":   # an incomplete UTF-8 sequence
                safe -= 1
            safe = max(self.emitted, safe - self.holdback)
        d = self.text[self.emitted:safe]
        self.emitted = max(self.emitted, safe)
        return d


def generate(model, tokenizer, prompts: Union[str, Sequence[str]], preference: Optional[str] = None,
             method: str = "amulet", max_new_tokens: int = 128, temperature: float = 0.0, top_k: int = 0,
             top_p: float = 1.0, seed: Union[None, int, Sequence[int]] = None, T: int = 60, alpha: float = 2.0,
             lam: float = 2.0, eta: float = 10.0, ratio: float = 2.0, weight: Optional[float] = None,
             placement: str = "system", system_prompt: Optional[str] = None, num_beams: int = 4,
             stop: Union[None, str, Sequence[str]] = None,
             stream: Optional[Callable[[int, int, str], None]] = None,
             generator: Optional[torch.Generator] = None, **method_kwargs) -> list:
    """Generate a response per prompt with ``method`` steering towards ``preference``; one
    ``GenerationResult`` per prompt, in order. See the module docstring for the exact semantics.

    ``method_kwargs``: ``pref_input_ids`` / ``base_input_ids`` (exact context token ids per prompt, replacing
    the template) and anything a plugged-in method reads from ``config.extra``."""
    cls, prompts, preference, stop = _validate(prompts, method, preference, max_new_tokens, temperature, top_k,
                                               top_p, T, alpha, lam, eta, ratio, weight, placement, num_beams, stop)
    if stream is not None and not callable(stream):
        raise TypeError("stream must be a callable stream(row_index, token_id, text_delta)")
    eos = eos_token_ids(tokenizer, model)
    config = MethodConfig(max_new_tokens=max_new_tokens, temperature=float(temperature), top_k=int(top_k),
                          top_p=float(top_p), seed=seed, generator=generator, T=T, alpha=float(alpha),
                          lam=float(lam), eta=float(eta), ratio=float(ratio),
                          weight=None if weight is None else float(weight), placement=placement,
                          system_prompt=system_prompt, num_beams=num_beams, eos_token_ids=eos,
                          pref_input_ids=method_kwargs.pop("pref_input_ids", None),
                          base_input_ids=method_kwargs.pop("base_input_ids", None), extra=dict(method_kwargs))
    t0 = time.perf_counter()
    impl = cls(model, tokenizer, prompts, preference, config)
    _check_lengths(impl, model, max_new_tokens)
    holdback = max((len(s) for s in stop), default=1) - 1
    rows = [_Row(tokenizer, stop, holdback) for _ in prompts]
    eos_set = set(eos)

    def take(tokens: list, logps: list, now: float) -> None:
        for r, row in enumerate(rows):
            if row.finish is not None:
                continue
            d = row.add(tokens[r], logps[r], tokens[r] in eos_set)
            if row.finish is None and len(row.ids) >= max_new_tokens:
                row.finish = "length"
                d += row.delta(final=True)
            if row.finish is not None:
                row.t_end = now
            if stream is not None:
                stream(r, tokens[r], d)

    if impl.stepwise:
        tokens, logps = impl.first()
        t_prefill = time.perf_counter()
        take(tokens.tolist(), logps.tolist(), t_prefill)
        while any(row.finish is None for row in rows):
            tokens, logps = impl.advance(tokens)
            take(tokens.tolist(), logps.tolist(), time.perf_counter())
    else:
        all_tokens, all_logps = impl.run()
        t_prefill = t0
        now = time.perf_counter()
        for j in range(max((len(t) for t in all_tokens), default=0)):
            take([t[j] if j < len(t) else -1 for t in all_tokens], [lp[j] if j < len(lp) else 0.0 for lp in all_logps],
                 now)
        for row in rows:                       # a sequence the backend ended early without EOS
            if row.finish is None:
                row.finish, row.t_end = "length", now
                row.emitted = len(row.text)

    out = []
    for r, row in enumerate(rows):
        n = len(row.ids)
        prefill_s = t_prefill - t0
        decode_s = max(0.0, row.t_end - t_prefill)
        total_s = prefill_s + decode_s
        timings = dict(prefill_s=prefill_s, decode_s=decode_s, total_s=total_s,
                       tokens_per_s=(n - 1) / decode_s if n > 1 and decode_s > 0 else 0.0,
                       ms_per_token=1000.0 * total_s / n if n else 0.0)
        out.append(GenerationResult(prompt=prompts[r], preference=preference, method=method, text=row.text,
                                    token_ids=list(row.ids), logprobs=list(row.logprobs), finish_reason=row.finish,
                                    num_prompt_tokens=int(impl.num_prompt_tokens[r]), timings=timings))
    return out


def _check_lengths(impl, model, max_new_tokens: int) -> None:
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if limit is None:
        return
    for r, n in enumerate(impl.num_prompt_tokens):
        if n + max_new_tokens > limit:
            raise ValueError(f"prompts[{r}] is {n} tokens long with its template; + max_new_tokens={max_new_tokens} "
                             f"exceeds the model's context of {limit} tokens: shorten the prompt or lower "
                             "max_new_tokens")
