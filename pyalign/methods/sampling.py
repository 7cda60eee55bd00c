"""Per-request sampling parameters, shared by every method and engine; validated once, when built.

``temperature`` 0 is greedy (argmax, ties to the smallest id); ``top_k`` 0 and ``top_p`` 1 disable the filters;
``seed`` makes a request's draws reproducible whatever else is in the batch (Philox keyed by (seed, step, token));
``ignore_eos`` decodes exactly ``max_new_tokens`` tokens (benchmarks; vLLM's option of the same name).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence, Union

from ..errors import InvalidArgument
from ..ops import SEED_BOUND


def _int(name: str, value, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise InvalidArgument(name, f"{name} must be an integer >= {lo}, got {value!r}")
    return value


def _float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidArgument(name, f"{name} must be a finite number, got {value!r}")
    return float(value)


def stop_strings(stop: Union[None, str, Sequence[str]]) -> tuple[str, ...]:
    if stop is None:
        return ()
    items = [stop] if isinstance(stop, str) else stop
    if not isinstance(items, (list, tuple)):
        raise InvalidArgument("stop", f"stop must be a string or a list of strings, got {type(stop).__name__}")
    for s in items:
        if not isinstance(s, str) or not s:
            raise InvalidArgument("stop", f"stop must be a string or a list of non-empty strings, got {s!r}")
    return tuple(items)


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 128
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: Optional[int] = None
    stop: tuple = ()
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        _int("max_new_tokens", self.max_new_tokens, 1)
        t = _float("temperature", self.temperature)
        if t < 0:
            raise InvalidArgument("temperature", f"temperature must be >= 0 (0 = greedy), got {t}")
        object.__setattr__(self, "temperature", t)
        _int("top_k", self.top_k, 0)
        p = _float("top_p", self.top_p)
        if not 0 < p <= 1:
            raise InvalidArgument("top_p", f"top_p must lie in (0, 1] (1 disables it), got {p}")
        object.__setattr__(self, "top_p", p)
        if self.seed is not None:
            if isinstance(self.seed, bool) or not isinstance(self.seed, int):
                raise InvalidArgument("seed", f"seed must be an integer, got {self.seed!r}")
            object.__setattr__(self, "seed", self.seed % SEED_BOUND)
        object.__setattr__(self, "stop", stop_strings(self.stop))
        if not isinstance(self.ignore_eos, bool):
            raise InvalidArgument("ignore_eos", f"ignore_eos must be true or false, got {self.ignore_eos!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0
