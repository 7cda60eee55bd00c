"""Reward-guided methods as *sessions*: rules that keep per-request reward state on other models.

A reward-guided rule (PAD, ARGS, PANDA) reads the base model's logits of this step, and scores candidates with a
reward model that follows the answer on its own KV cache (``pyalign.reward_guided.rewards``: a scorer of the
scoring layer bound to the prompts). The engine admits the requests of one method, preference and parameter set
that arrive together as one ``Session``; it decodes them in lockstep and reports each request until it finishes
(finished rows keep being fed their last token until the session ends: their reward caches are not compacted).

    class Mine(SessionMethod):
        name, Params = "mine", MineParams
        class Session(RewardSession):
            def first(self):  ...  -> (tokens [B], logprobs [B])   prefill and choose
            def advance(self, tokens): ... -> (tokens, logprobs)    feed the chosen tokens and choose
"""
from __future__ import annotations

from typing import ClassVar, Optional

import torch

from .registry import Method


def output_vocab(model) -> int:
    emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return int(emb.weight.shape[0]) if emb is not None else int(model.config.vocab_size)


class RewardSession:
    """State of one group of requests; ``step()`` returns the tokens and log-probs of the requests still running."""

    def __init__(self, engine, requests: list):
        self.engine = engine
        self.model, self.tokenizer = engine.model, engine.tokenizer
        self.device = engine.device
        self.requests = list(requests)
        self.all_requests = list(requests)
        first = self.requests[0]
        self.method, self.params = first.method, first.method.params
        self.preference = first.preference
        self.placement, self.system_prompt = first.placement, first.system_prompt
        self.prompts = [r.prompt for r in self.requests]
        self.base_ids = [r.contexts[0] for r in self.requests]
        self.num_prompt_tokens = [len(s) for s in self.base_ids]
        self.pad_id = engine.pad_id
        self.max_new_tokens = max(r.sampling.max_new_tokens for r in self.requests)
        self.B = len(self.requests)
        self.seeds = torch.tensor([r.seed for r in self.requests], dtype=torch.int64, device=self.device)
        self.temperature = torch.tensor([r.sampling.temperature for r in self.requests], dtype=torch.float32,
                                        device=self.device)
        self.step_index = 0
        self._alive = list(range(self.B))
        self._last: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return len(self.requests)

    def first(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def advance(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def step(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._last is None:
            tokens, logp = self.first()
        else:
            self.step_index += 1
            tokens, logp = self.advance(self._last)
        self._last = tokens
        idx = torch.as_tensor(self._alive, dtype=torch.long, device=tokens.device)
        return tokens.index_select(0, idx), logp.index_select(0, idx)

    def keep(self, keep: list[int]) -> None:
        self._alive = [self._alive[i] for i in keep]
        self.requests = [self.requests[i] for i in keep]


class SessionMethod(Method):
    """A reward-guided method: the engine runs its requests through ``cls.Session``."""
    kind = "reward"
    contexts = ("base",)
    Session: ClassVar[type[RewardSession]] = RewardSession

    @classmethod
    def session(cls, engine, requests: list) -> RewardSession:
        return cls.Session(engine, requests)
