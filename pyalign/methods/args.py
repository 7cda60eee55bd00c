"""ARGS: reward-guided search with a sequence reward model (method ``"args"``).

Per token, for every prompt b (two phases, ``pyalign.topk_candidates`` then ``pyalign.rescore_candidates``):

    c        = top-k(z_base[b])                                   (k = 10)
    r_j      = r(x_b, y_b ⊕ c_j)                                  the reward of the response so far + c_j
    score_j  = log π_b(c_j) + w · r_j;  token = c_argmax (τ = 0) or a draw from softmax(score/τ) over the k

The base term is the log-probability log_softmax(z_base)[c_j]; ARGS's code adds the raw logit instead, which
differs by a per-row constant and gives the same argmax and the same softmax(score/τ). The k candidate
rewards come from the reward session as one batch per step (a decoder classifier of the base vocabulary
scores them on its own KV cache: the prefix is never recomputed). The base context is the package's base
template (Amulet's system prompt with an empty preference, as for method ``"base"``); reward models see the
raw question and the decoded response.

Method kwargs: ``reward`` ("embedding" | "sentiment" | local HF reward-model path | PersRM dir | reward
object; default: "sentiment" for "uplifting", else "embedding"), ``reward_head``, ``reward_weight`` (w,
default 1.0; must be ≥ 0: a negative weight would reward the opposite of the preference -- use the
opposite preference instead), ``k``. The returned log-prob is log_softmax over the k scores of the choice.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from ..ops import rescore_candidates, topk_candidates
from ..batching import ContextBatch
from ..reward_guided.rewards import load_reward
from .pad import check_k
from .registry import MethodParams, param, register_method
from .session import RewardSession, SessionMethod

BASE_TERMS = ("logprob", "prob", "logit")


def base_terms(logits: torch.Tensor, candidates: torch.Tensor, form: str = "logprob",
               values: torch.Tensor = None) -> torch.Tensor:
    """π_b term of the candidates [B, k]: "logprob" z[c] − logsumexp(z), "prob" its exp, "logit" z[c].

    ``values`` (the candidates' logits, as ``topk_candidates`` returns them) saves the gather; the log-probs need
    only the row's log-sum-exp (one reduction), never a [B, V] log-softmax."""
    z = logits.float()
    zc = values.float() if values is not None else z.gather(-1, candidates)
    if form == "logit":
        return zc
    lp = zc - torch.logsumexp(z, dim=-1, keepdim=True)
    if form == "logprob":
        return lp
    if form == "prob":
        return lp.exp()
    raise ValueError(f"base_term must be one of {', '.join(BASE_TERMS)}, got {form!r}")


class ARGSSession(RewardSession):
    """ARGS on one group of requests (same preference and parameters); PANDA's session subclasses it."""

    def __init__(self, engine, requests):
        super().__init__(engine, requests)
        prm = self.params
        self.k = check_k(prm.k, self.model)
        self.base_term = prm.base_term
        self.setup_weights(prm)
        self.ctx = ContextBatch(self.model, self.base_ids, self.pad_id, self.max_new_tokens)
        self.reward = load_reward(prm.reward, self.preference, head=prm.reward_head, device=self.device)
        self.session = self.reward.session(self.prompts, self.preference, self.tokenizer)
        self.last_rewards = None     # [B, k] rewards of the last step (inspection, tests)
        self.last_candidates = None

    def setup_weights(self, prm) -> None:
        self.weight = 1.0 if prm.reward_weight is None else prm.reward_weight

    def lambdas(self) -> torch.Tensor:
        """[B, M] weights of this step (ARGS: the single w)."""
        return torch.full((self.B, 1), self.weight)

    def _choose(self, logits: torch.Tensor):
        vals, cand = topk_candidates(logits, self.k)
        b = base_terms(logits, cand, self.base_term, vals)
        r = self.session.score(cand).to(b.device, torch.float32)
        self.last_rewards, self.last_candidates = r, cand
        lam = self.lambdas().to(b.device)
        tokens, pos, m = rescore_candidates(b, r, cand, lam, logits.shape[-1], self.temperature,
                                            seed=self.seeds, offset=self.step_index)
        self.last_lambda_index = m
        chosen_lam = lam.gather(-1, m[:, None])
        logp = torch.log_softmax(b + chosen_lam * r, dim=-1).gather(-1, pos[:, None]).squeeze(-1)
        return tokens, logp

    def first(self):
        return self._choose(self.ctx.prefill())

    def advance(self, tokens):
        tokens = tokens.reshape(-1)
        self.session.advance(tokens)
        return self._choose(self.ctx.step(tokens))


@dataclasses.dataclass(frozen=True)
class ARGSParams(MethodParams):
    k: int = param(10, "candidates per step (top-k of the base model)", minimum=1)
    reward_weight: Optional[float] = param(None, "reward weight w >= 0 (default 1; a negative weight would reward "
                                                 "the opposite preference: ask for that preference instead)",
                                           minimum=0.0)
    reward: Optional[object] = param(None, "'embedding' (MiniLM), 'sentiment' (VADER), a local reward-model or "
                                           "PersRM directory (default: the preference's default reward)")
    reward_head: Optional[int] = param(None, "output head of a multi-head reward model", minimum=0)
    base_term: str = param("logprob", "π_b term of the score", choices=BASE_TERMS)


@register_method
class ARGS(SessionMethod):
    name, Params, Session = "args", ARGSParams, ARGSSession
    summary = "ARGS: top-k of the base model rescored by a sequence reward model, logit + w·r"
