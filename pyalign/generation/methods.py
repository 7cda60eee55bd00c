"""Decoding methods and their registry.

A method turns a batch of B prompts into one next token per prompt and step. ``pyalign.generate`` owns the
loop (EOS, stop strings, max_new_tokens, streaming, timings); a method only chooses tokens.

Interface (subclass ``DecodingMethod`` and register it)::

    from pyalign.generation.methods import DecodingMethod, MethodConfig, register_method

    @register_method("mine")
    class Mine(DecodingMethod):
        requires_preference = True          # generate() refuses preference=None for this method

        def __init__(self, model, tokenizer, prompts: list[str], preference: str | None, config: MethodConfig):
            super().__init__(model, tokenizer, prompts, preference, config)
            pref_ids, base_ids = self.context_ids()        # Amulet's template (or config.pref/base_input_ids)
            self.ctx = ContextBatch(model, pref_ids, self.pad_id, config.max_new_tokens)
            self.num_prompt_tokens = [len(s) for s in pref_ids]

        def first(self) -> tuple[torch.Tensor, torch.Tensor]:      # prefill; tokens [B] int64, logprobs [B]
            return self.choose(self.ctx.prefill())

        def advance(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            self.step += 1
            return self.choose(self.ctx.step(tokens))

``advance`` gets the tokens just chosen for every row (finished rows keep receiving a token, which the
loop ignores), and returns the next ones. ``choose(z_pref, z_base=None, weight=1.0)`` samples with the
configured temperature/top-k/top-p and per-row seeds (``seed=self.seeds, offset=self.step``), so a prompt's
sample depends only on (its seed, the step), never on the batch. The log-prob returned is the guided
policy's log-prob of the chosen token (before temperature/top-k/top-p). Method-specific keyword arguments of
``generate(**method_kwargs)`` arrive in ``config.extra``.

A method that cannot decode step by step (``beam``) sets ``stepwise = False`` and implements
``run() -> (list of token-id lists, list of log-prob lists)`` instead.

Registered here: ``base`` (plain base context), ``pref`` (preference context), ``la`` (Linear Alignment,
weight 1 + ratio), ``amulet`` (weight A = amulet_weight(T, α, λ, η) or ``weight=``), ``beam`` (HF beam
search on the preference context). ``get_method`` imports ``pyalign.reward_guided`` for other names
(``pad``, ``args``, ``panda`` register themselves there).
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
from typing import Callable, Optional, Sequence, Union

import torch

from ..api import SEED_BOUND, guided_sample
from ..reference.amulet import amulet_weight
from .context import ContextBatch
from .templates import context_ids

_REGISTRY: dict[str, type] = {}


@dataclasses.dataclass
class MethodConfig:
    """Everything a method may need; ``extra`` holds method-specific keyword arguments of ``generate``."""
    max_new_tokens: int = 128
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: Union[None, int, Sequence[int]] = None
    generator: Optional[torch.Generator] = None
    T: int = 60
    alpha: float = 2.0
    lam: float = 2.0
    eta: float = 10.0
    ratio: float = 2.0
    weight: Optional[float] = None
    placement: str = "system"
    system_prompt: Optional[str] = None
    num_beams: int = 4
    eos_token_ids: tuple = ()
    #: exact context token ids, one list per prompt, replacing the template (conformance tests, custom templates)
    pref_input_ids: Optional[list] = None
    base_input_ids: Optional[list] = None
    extra: dict = dataclasses.field(default_factory=dict)


def register_method(name: str) -> Callable[[type], type]:
    """Class decorator: ``@register_method("pad") class PAD(DecodingMethod): ...``. Re-registering replaces."""
    if not isinstance(name, str) or not name:
        raise ValueError("method name must be a non-empty string")

    def deco(cls: type) -> type:
        _REGISTRY[name] = cls
        cls.name = name
        return cls
    return deco


def available_methods() -> list[str]:
    _import_plugins()
    return sorted(_REGISTRY)


def _import_plugins() -> None:
    if importlib.util.find_spec("pyalign.reward_guided") is not None:
        importlib.import_module("pyalign.reward_guided")


def get_method(name: str) -> type:
    """The method class registered as ``name``; unknown names raise a ValueError listing the known ones."""
    if not isinstance(name, str):
        raise TypeError(f"method must be a string, got {type(name).__name__}")
    if name not in _REGISTRY:
        _import_plugins()
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def prompt_seed(seed: int, prompt: str) -> int:
    """A row's seed from the request seed and its prompt text: independent of the batch and the row index."""
    h = hashlib.blake2b(f"{int(seed)}\x00{prompt}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(h, "little") % SEED_BOUND


def pad_token_id(tokenizer, model=None) -> int:
    for src in (tokenizer, getattr(model, "generation_config", None), getattr(model, "config", None)):
        v = getattr(src, "pad_token_id", None) if src is not None else None
        if isinstance(v, int):
            return v
    eos = getattr(tokenizer, "eos_token_id", None)
    return int(eos) if isinstance(eos, int) else 0


class DecodingMethod:
    """Base class: stores the inputs, derives per-row seeds, and samples with ``choose``."""
    name = "?"
    requires_preference = True
    stepwise = True

    def __init__(self, model, tokenizer, prompts: Sequence[str], preference: Optional[str], config: MethodConfig):
        self.model, self.tokenizer = model, tokenizer
        self.prompts, self.preference, self.config = list(prompts), preference, config
        self.B = len(self.prompts)
        self.step = 0
        self.pad_id = pad_token_id(tokenizer, model)
        self.num_prompt_tokens: list[int] = [0] * self.B
        s = config.seed
        if s is None:
            # greedy needs no noise: a fixed key keeps the global RNG untouched
            self.seeds = 0 if _is_greedy(config.temperature) else None
        elif isinstance(s, int):
            self.seeds = torch.tensor([prompt_seed(s, p) for p in self.prompts], dtype=torch.int64)
        else:
            if len(s) != self.B:
                raise ValueError(f"seed must be an int or one int per prompt ({self.B}), got {len(s)} values")
            self.seeds = torch.tensor([int(x) % SEED_BOUND for x in s], dtype=torch.int64)

    def context_ids(self) -> tuple[Optional[list[list[int]]], list[list[int]]]:
        """(preference-context ids or None, base-context ids): the template, or config overrides."""
        c = self.config
        pref, base = (None, None)
        if c.pref_input_ids is None or c.base_input_ids is None:
            pref, base = context_ids(self.tokenizer, self.prompts,
                                     self.preference if self.requires_preference or self.preference else None,
                                     c.placement, c.system_prompt)
        if c.pref_input_ids is not None:
            pref = [list(map(int, x)) for x in c.pref_input_ids]
        if c.base_input_ids is not None:
            base = [list(map(int, x)) for x in c.base_input_ids]
        for name, ids in (("pref_input_ids", pref), ("base_input_ids", base)):
            if ids is not None and len(ids) != self.B:
                raise ValueError(f"{name} has {len(ids)} rows but there are {self.B} prompts")
        return pref, base

    def choose(self, logits_pref: torch.Tensor, logits_base: Optional[torch.Tensor] = None,
               weight=1.0) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        seeds = self.seeds
        if isinstance(seeds, torch.Tensor):
            seeds = seeds.to(logits_pref.device)
        return guided_sample(logits_pref, logits_base, weight, c.temperature, c.top_k, c.top_p, c.generator,
                             seed=seeds, offset=self.step)

    def first(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def advance(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def run(self) -> tuple[list[list[int]], list[list[float]]]:
        raise NotImplementedError


def _is_greedy(t) -> bool:
    if isinstance(t, torch.Tensor):
        return bool((t == 0).all())
    return t == 0


class SingleContext(DecodingMethod):
    """One context per prompt, plain decoding (weight 1)."""
    use_preference = False

    def __init__(self, model, tokenizer, prompts, preference, config):
        super().__init__(model, tokenizer, prompts, preference, config)
        pref, base = self.context_ids()
        ids = pref if self.use_preference else base
        self.num_prompt_tokens = [len(s) for s in ids]
        self.ctx = ContextBatch(model, ids, self.pad_id, config.max_new_tokens)

    def first(self):
        return self.choose(self.ctx.prefill())

    def advance(self, tokens):
        self.step += 1
        return self.choose(self.ctx.step(tokens))


@register_method("base")
class Base(SingleContext):
    """The base context only (Amulet's system prompt without a preference); the preference is ignored."""
    requires_preference = False


@register_method("pref")
class Pref(SingleContext):
    """The preference context only ("Pref" in the Amulet paper)."""
    use_preference = True


class TwoContext(DecodingMethod):
    """Preference rows 0..B-1 and base rows B..2B-1 in one ContextBatch; z = z_base + w (z_pref − z_base)."""

    def __init__(self, model, tokenizer, prompts, preference, config):
        super().__init__(model, tokenizer, prompts, preference, config)
        pref, base = self.context_ids()
        self.num_prompt_tokens = [len(s) for s in pref]
        self.ctx = ContextBatch(model, list(pref) + list(base), self.pad_id, config.max_new_tokens)
        self.weight = float(self.guidance_weight())

    def guidance_weight(self) -> float:
        raise NotImplementedError

    def _choose(self, logits):
        return self.choose(logits[:self.B], logits[self.B:], self.weight)

    def first(self):
        return self._choose(self.ctx.prefill())

    def advance(self, tokens):
        self.step += 1
        tokens = tokens.reshape(-1)
        return self._choose(self.ctx.step(torch.cat([tokens, tokens])))


@register_method("la")
class LinearAlignment(TwoContext):
    """Linear Alignment (Amulet's LA baseline): z = z_pref + r (z_pref − z_base), i.e. weight 1 + ratio."""

    def guidance_weight(self):
        c = self.config
        return c.weight if c.weight is not None else 1.0 + c.ratio


@register_method("amulet")
class Amulet(TwoContext):
    """Amulet: weight A = amulet_weight(T, α, λ, η) (≈ 5.6487 at the defaults), or ``weight=`` directly."""

    def guidance_weight(self):
        c = self.config
        return c.weight if c.weight is not None else amulet_weight(c.T, c.alpha, c.lam, c.eta)


@register_method("beam")
class Beam(DecodingMethod):
    """Beam search on the preference context through ``model.generate(num_beams=..., do_sample=False)``.

    Log-probs are the preference model's log-probs of the returned tokens (one teacher-forced forward)."""
    stepwise = False

    def __init__(self, model, tokenizer, prompts, preference, config):
        super().__init__(model, tokenizer, prompts, preference, config)
        if int(config.num_beams) < 1:
            raise ValueError(f"num_beams must be >= 1, got {config.num_beams}")
        pref, _ = self.context_ids()
        self.num_prompt_tokens = [len(s) for s in pref]
        self.ctx = ContextBatch(model, pref, self.pad_id, config.max_new_tokens)   # padding and length checks

    @torch.inference_mode()
    def run(self):
        c = self.config
        ids, mask = self.ctx.input_ids, self.ctx.attention_mask
        eos = list(c.eos_token_ids) or None
        beam_kw = dict(early_stopping=True, length_penalty=1.0) if int(c.num_beams) > 1 else {}
        out = self.model.generate(input_ids=ids, attention_mask=mask, num_beams=int(c.num_beams), do_sample=False,
                                  max_new_tokens=int(c.max_new_tokens), min_new_tokens=1, eos_token_id=eos,
                                  pad_token_id=self.pad_id, **beam_kw)
        L = ids.shape[1]
        new = out[:, L:]
        full_mask = torch.cat([mask, torch.ones_like(new)], dim=1)
        positions = (full_mask.cumsum(-1) - 1).clamp(min=0)
        logits = self.model(input_ids=out, attention_mask=full_mask, position_ids=positions).logits
        lp = torch.log_softmax(logits[:, L - 1:-1].float(), dim=-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
        tokens, logprobs = [], []
        eos_set = set(c.eos_token_ids)
        for r in range(self.B):
            row = new[r].tolist()
            n = len(row)
            for j, t in enumerate(row):
                if t in eos_set:
                    n = j + 1
                    break
            tokens.append(row[:n])
            logprobs.append(lp[r, :n].tolist())
        return tokens, logprobs
