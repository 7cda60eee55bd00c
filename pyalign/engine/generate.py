"""``pyalign.generate``: answer a batch of prompts with any registered method on the HF engine.

    model, tok = pyalign.models.load_model()
    [r] = pyalign.generate(model, tok, "How do I boil an egg?", preference="concise", method="amulet",
                           max_new_tokens=64)
    r.text, r.token_ids, r.logprobs, r.finish_reason, r.timings

Each prompt is one engine request (``pyalign.engine.hf``): all are admitted together, each row stops on its own at
an EOS id (the tokenizer's and the model's ``generation_config``), a stop string or ``max_new_tokens``, and leaves
the batch then. ``token_ids`` holds the new tokens including a final EOS token (as Hugging Face ``generate``
returns it); ``text`` is decoded without special tokens and, on a stop string, ends just before it.
``stream(row, token_id, delta)`` is called once per new token of each row; deltas hold back incomplete UTF-8 and
anything that could still become a stop string, and concatenate to ``text`` (``beam`` streams its tokens only
once it has finished).

Method parameters (``T``, ``alpha``, ``lam``, ``eta``, ``ratio``, ``weight``, ``k``, ``reward``, ...) are the fields of
the method's ``Params`` dataclass (``pyalign.methods``); a parameter the method does not have is an error.

Seeds: ``seed=int`` gives each prompt the seed ``prompt_seed(seed, prompt)`` (a prompt's sample does not depend on
the other prompts of the batch or its position; equal prompts get equal samples), ``seed=[...]`` one seed per
prompt; the Philox offset is the step number. Without a seed, each request's seed is drawn from ``generator`` (or
torch's default generator).

Timings (seconds, per row): ``prefill_s`` (admission and first token), ``decode_s`` (from then until the row
finished), ``total_s``, ``tokens_per_s`` = new tokens after the first / decode_s and ``ms_per_token``.
"""
from __future__ import annotations

import hashlib
from typing import Callable, Optional, Sequence, Union

import torch

from ..errors import InvalidArgument
from ..methods import SEED_BOUND, SamplingParams, get_method
from .hf import HFEngine
from .results import GenerationResult
from .text import eos_token_ids, pad_token_id


def prompt_seed(seed: int, prompt) -> int:
    """A row's seed from the request seed and its prompt text: independent of the batch and the row index."""
    h = hashlib.blake2b(f"{int(seed)}\x00{prompt}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(h, "little") % SEED_BOUND


def _prompts(prompts) -> list:
    if isinstance(prompts, str):
        return [prompts]
    if not isinstance(prompts, (list, tuple)):
        raise InvalidArgument("prompts", f"prompts must be a string or a list of strings, got {type(prompts).__name__}")
    prompts = list(prompts)
    if not prompts:
        raise InvalidArgument("prompts", "prompts is empty: pass a string or a non-empty list of strings")
    for i, p in enumerate(prompts):
        if not isinstance(p, (str, list)):
            raise InvalidArgument(f"prompts[{i}]", f"prompts[{i}] must be a string, got {type(p).__name__}")
        if isinstance(p, str) and not p.strip():
            raise InvalidArgument(f"prompts[{i}]", f"prompts[{i}] is empty: every prompt needs some text")
    return prompts


def _seeds(seed, prompts: list) -> list:
    if seed is None:
        return [None] * len(prompts)
    if isinstance(seed, bool):
        raise InvalidArgument("seed", "seed must be an int or one int per prompt")
    if isinstance(seed, int):
        return [prompt_seed(seed, p) for p in prompts]
    seeds = list(seed)
    if len(seeds) != len(prompts):
        raise InvalidArgument("seed", f"seed must be an int or one int per prompt ({len(prompts)}), "
                                      f"got {len(seeds)} values")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int):
            raise InvalidArgument("seed", f"seed values must be integers, got {s!r}")
    return [int(s) % SEED_BOUND for s in seeds]


def generate(model, tokenizer, prompts: Union[str, Sequence[str]], preference=None, method: str = "amulet",
             max_new_tokens: int = 128, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
             seed: Union[None, int, Sequence[int]] = None, placement: Optional[str] = None,
             system_prompt: Optional[str] = None, stop: Union[None, str, Sequence[str]] = None,
             stream: Optional[Callable[[int, int, str], None]] = None, generator: Optional[torch.Generator] = None,
             ignore_eos: bool = False, pref_input_ids: Optional[list] = None, base_input_ids: Optional[list] = None,
             **method_params) -> list[GenerationResult]:
    """One ``GenerationResult`` per prompt, in order; see the module docstring for the exact semantics.

    ``placement``: where the preference goes, "system" (Amulet's official form) or "user"; None is the method's
    default (the system prompt, except PAD: the user turn, its paper's form).
    ``ignore_eos``: decode exactly ``max_new_tokens`` tokens per prompt (benchmarks).
    ``pref_input_ids`` / ``base_input_ids``: exact context token ids per prompt, replacing the template
    (conformance tests, custom templates)."""
    cls = get_method(method)
    prompts = _prompts(prompts)
    if stream is not None and not callable(stream):
        raise InvalidArgument("stream", "stream must be a callable stream(row_index, token_id, text_delta)")
    seeds = _seeds(seed, prompts)
    samplings = [SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                                seed=s, stop=stop, ignore_eos=ignore_eos) for s in seeds]
    overrides = _overrides(cls, len(prompts), pref_input_ids, base_input_ids)
    if cls.kind == "search":
        from .beam import beam_search
        return beam_search(model, tokenizer, prompts, preference, samplings[0], placement=placement,
                           system_prompt=system_prompt, stream=stream, context_overrides=overrides, **method_params)
    engine = HFEngine(model, tokenizer, max_batch=len(prompts), generator=generator)
    requests = [engine.build_request(p, preference, method, samplings[i], placement=placement,
                                     system_prompt=system_prompt, request_id=str(i),
                                     context_ids_override=overrides[i], **method_params)
                for i, p in enumerate(prompts)]
    return engine.run(requests, stream)


def _overrides(cls, n: int, pref_input_ids, base_input_ids) -> list:
    if pref_input_ids is None and base_input_ids is None:
        return [None] * n
    given = {"pref": pref_input_ids, "base": base_input_ids}
    for name, ids in given.items():
        if ids is not None and len(ids) != n:
            raise InvalidArgument(f"{name}_input_ids", f"{name}_input_ids has {len(ids)} rows but there are {n} prompts")
    missing = [c for c in cls.contexts if given.get(c) is None]
    if missing:
        raise InvalidArgument(f"{missing[0]}_input_ids", f"method {cls.name!r} reads the contexts {cls.contexts}: "
                                                         f"pass {missing[0]}_input_ids too")
    return [[given[c][i] for c in cls.contexts] for i in range(n)]


__all__ = ["GenerationResult", "eos_token_ids", "generate", "pad_token_id", "prompt_seed"]
