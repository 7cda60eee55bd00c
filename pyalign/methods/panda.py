"""PANDA: ARGS with a candidate set Λ of context-aware weight functions (method ``"panda"``).

Per token t of prompt x (Algorithm 1, line 6 of the paper, made precise):

    c                = top-k(z_base)                                         (k = 10)
    (m*, j*)         = argmax over λ_m ∈ Λ, candidates j of   π_b-term(c_j) + λ_m(x, t) · r(x, y ⊕ c_j)
    token            = c_{j*}      (τ > 0: a Gumbel draw over the k·M pairs, see ``pyalign.rescore_candidates``)

Choices the paper leaves open, and what we ship:

* **π_b is the log-probability** ``log π_b(c_j | x, y)`` (default ``base_term="logprob"``), because Lemma 1 /
  Eq. (3) of the paper is π* ∝ exp(log π_b + λ r): the argmax of line 6 is then the mode of π* for the chosen
  λ. The literal probability reading is available as ``base_term="prob"`` (π_b ∈ [0, 1], so the reward
  dominates as soon as λ·|Δr| > 1); ``"logit"`` equals ``"logprob"`` up to a per-row constant.
* **λ schedules** λ_m(x, t), with t = the number of tokens generated so far and |x| = the prompt's length in
  base-model tokens (``lambdas=`` a set name, a list of floats (constants), or a list of ``LambdaFn``):

    ``constant``  c                                  c ∈ {0.5, 1, 1.5, 2}
    ``decay``     c · 32 / (32 + t)                  c ∈ {0.5, 1, 1.5, 2}   (steer early, then trust π_b)
    ``warmup``    c · min(1, (t + 1) / 8)            c ∈ {0.5, 1, 1.5, 2}   (let π_b open the answer)
    ``context``   c · clip(|x| / 64, 0.5, 2)          c ∈ {0.5, 1, 2}        (longer prompts carry more context)
    ``default``   {constant 0.5, constant 1, decay 2, context 1}

  Note what the joint argmax does: for a candidate with r_j > 0 the best λ is max_m λ_m(x, t), for r_j < 0
  it is min_m λ_m(x, t). So Λ acts as an asymmetric, step- and prompt-dependent weight: positive rewards are
  amplified by the largest λ of the step and negative ones damped by the smallest. λ must be ≥ 0 (a negative
  λ would turn every negative reward into a bonus); a ValueError otherwise.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional, Sequence, Union

import torch

from ..errors import InvalidArgument
from .args import ARGSParams, ARGSSession
from .registry import param, register_method
from .session import SessionMethod


@dataclasses.dataclass(frozen=True)
class LambdaFn:
    """λ(x, t): ``fn(prompt_tokens, t) -> float`` with a name for reports."""
    name: str
    fn: Callable[[int, int], float]

    def __call__(self, prompt_tokens: int, t: int) -> float:
        return float(self.fn(prompt_tokens, t))


def constant(c: float) -> LambdaFn:
    return LambdaFn(f"const({c:g})", lambda n, t: c)


def decay(c: float, t0: float = 32.0) -> LambdaFn:
    return LambdaFn(f"decay({c:g})", lambda n, t: c * t0 / (t0 + t))


def warmup(c: float, t0: float = 8.0) -> LambdaFn:
    return LambdaFn(f"warmup({c:g})", lambda n, t: c * min(1.0, (t + 1) / t0))


def context(c: float, n0: float = 64.0) -> LambdaFn:
    return LambdaFn(f"context({c:g})", lambda n, t: c * min(2.0, max(0.5, n / n0)))


SCHEDULE_SETS: dict[str, list[LambdaFn]] = {
    "constant": [constant(c) for c in (0.5, 1.0, 1.5, 2.0)],
    "decay": [decay(c) for c in (0.5, 1.0, 1.5, 2.0)],
    "warmup": [warmup(c) for c in (0.5, 1.0, 1.5, 2.0)],
    "context": [context(c) for c in (0.5, 1.0, 2.0)],
    "default": [constant(0.5), constant(1.0), decay(2.0), context(1.0)],
}


def resolve_lambdas(spec: Union[None, str, float, Sequence]) -> list[LambdaFn]:
    if spec is None:
        spec = "default"
    if isinstance(spec, str):
        if spec not in SCHEDULE_SETS:
            try:                                   # "0.5,1,2" from the command line
                return resolve_lambdas([float(x) for x in spec.split(",") if x.strip()])
            except ValueError:
                raise ValueError(f"unknown lambdas {spec!r}: use one of {', '.join(SCHEDULE_SETS)} or a list "
                                 "of numbers") from None
        return list(SCHEDULE_SETS[spec])
    if isinstance(spec, (int, float)):
        spec = [spec]
    out = []
    for x in spec:
        if isinstance(x, LambdaFn):
            out.append(x)
        elif callable(x):
            out.append(LambdaFn(getattr(x, "__name__", "custom"), x))
        else:
            v = float(x)
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"lambdas must be finite and >= 0, got {v}: a negative λ turns every negative "
                                 "reward into a bonus under PANDA's argmax over Λ")
            out.append(constant(v))
    if not out:
        raise ValueError("lambdas is empty: PANDA needs at least one λ")
    return out


class PANDASession(ARGSSession):
    """ARGS's session with a λ set: the rescoring op takes the argmax over (candidate, λ_m(x, t))."""

    def setup_weights(self, prm) -> None:
        self.lambda_fns = prm.lambda_fns()
        self.weight = 1.0 if prm.reward_weight is None else prm.reward_weight    # a global multiplier of every λ_m

    def lambdas(self) -> torch.Tensor:
        vals = torch.tensor([[self.weight * f(n, self.step_index) for f in self.lambda_fns]
                             for n in self.num_prompt_tokens], dtype=torch.float32)
        if not bool(torch.isfinite(vals).all()) or bool((vals < 0).any()):
            raise ValueError(f"a λ function returned a negative or non-finite value at step {self.step_index}: "
                             f"{vals.tolist()}")
        return vals


@dataclasses.dataclass(frozen=True)
class PANDAParams(ARGSParams):
    lambdas: Optional[object] = param(None, f"λ set: a schedule ({', '.join(SCHEDULE_SETS)}) or comma-separated "
                                            "values (default: 'default')")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.lambda_fns()                       # a bad λ set is an error now, not at the first token

    def lambda_fns(self) -> list[LambdaFn]:
        try:
            return resolve_lambdas(self.lambdas)
        except (ValueError, TypeError) as exc:
            raise InvalidArgument("lambdas", str(exc)) from exc


@register_method
class PANDA(SessionMethod):
    name, Params, Session = "panda", PANDAParams, PANDASession
    summary = "PANDA: ARGS with a set of context-aware weights λ_m(x, t), argmax over (candidate, λ)"
