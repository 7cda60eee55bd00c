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

import torch

from ..api import rescore_candidates, topk_candidates
from ..generation.context import ContextBatch
from ..generation.methods import DecodingMethod, register_method
from .pad import check_k
from .rewards import load_reward

BASE_TERMS = ("logprob", "prob", "logit")


def base_terms(logits: torch.Tensor, candidates: torch.Tensor, form: str = "logprob") -> torch.Tensor:
    """π_b term of the candidates [B, k]: "logprob" log_softmax(z)[c], "prob" softmax(z)[c], "logit" z[c]."""
    z = logits.float()
    if form == "logit":
        return z.gather(-1, candidates)
    lp = torch.log_softmax(z, dim=-1).gather(-1, candidates)
    if form == "logprob":
        return lp
    if form == "prob":
        return lp.exp()
    raise ValueError(f"base_term must be one of {', '.join(BASE_TERMS)}, got {form!r}")


@register_method("args")
class ARGS(DecodingMethod):
    """ARGS decoding with one weight w (PANDA subclasses it with a λ set)."""

    requires_preference = True
    default_base_term = "logprob"

    def __init__(self, model, tokenizer, prompts, preference, config):
        super().__init__(model, tokenizer, prompts, preference, config)
        ex = config.extra
        self.k = check_k(ex.get("k", 10), model)
        self.base_term = ex.get("base_term", self.default_base_term)
        if self.base_term not in BASE_TERMS:
            raise ValueError(f"base_term must be one of {', '.join(BASE_TERMS)}, got {self.base_term!r}")
        if isinstance(preference, (list, tuple)):
            raise ValueError(f"method {self.name!r} takes one preference (several dimensions: method 'pad')")
        self.setup_weights(ex)
        _, base = self.context_ids()
        self.num_prompt_tokens = [len(s) for s in base]
        self.ctx = ContextBatch(model, base, self.pad_id, config.max_new_tokens)
        self.reward = load_reward(ex.get("reward"), preference, head=ex.get("reward_head"),
                                  device=next(model.parameters()).device)
        self.session = self.reward.session(self.prompts, preference, tokenizer)
        self.last_rewards = None     # [B, k] rewards of the last step (inspection, tests)
        self.last_candidates = None

    def setup_weights(self, ex) -> None:
        w = ex.get("reward_weight")
        w = 1.0 if w is None else w
        if isinstance(w, (list, tuple)):
            if len(w) != 1:
                raise ValueError("method 'args' takes one reward_weight (several dimensions: method 'pad')")
            w = w[0]
        w = float(w)
        if not (w >= 0.0) or w == float("inf"):
            raise ValueError(f"reward_weight must be a finite number >= 0 for method {self.name!r}, got {w}: a "
                             "negative weight rewards the opposite of the preference; ask for the opposite preference")
        self.weight = w

    def lambdas(self) -> torch.Tensor:
        """[B, M] weights of this step (ARGS: the single w)."""
        return torch.full((self.B, 1), self.weight)

    def _choose(self, logits: torch.Tensor):
        c = self.config
        _, cand = topk_candidates(logits, self.k)
        b = base_terms(logits, cand, self.base_term)
        r = self.session.score(cand).to(b.device, torch.float32)
        self.last_rewards, self.last_candidates = r, cand
        lam = self.lambdas().to(b.device)
        seeds = self.seeds.to(b.device) if isinstance(self.seeds, torch.Tensor) else self.seeds
        tokens, pos, m = rescore_candidates(b, r, cand, lam, logits.shape[-1], c.temperature, c.generator,
                                            seed=seeds, offset=self.step)
        self.last_lambda_index = m
        chosen_lam = lam.gather(-1, m[:, None])
        logp = torch.log_softmax(b + chosen_lam * r, dim=-1).gather(-1, pos[:, None]).squeeze(-1)
        return tokens, logp

    def first(self):
        return self._choose(self.ctx.prefill())

    def advance(self, tokens):
        self.step += 1
        tokens = tokens.reshape(-1)
        self.session.advance(tokens)
        return self._choose(self.ctx.step(tokens))
