"""The method registry and the base classes of every decoding method.

A method is a *rule*, not a loop (DESIGN.md §7): it declares the contexts it needs, its typed parameters and how
to choose a token from this step's logits of those contexts. Engines (the Hugging Face loop in
``pyalign.engine``, vLLM in ``pyalign.integrations.vllm``) run the model and call the rule; the CLI, ``--help``,
``pyalign.generate`` and the evaluation grid read the registry. Adding a method is one new module here::

    @dataclasses.dataclass(frozen=True)
    class MineParams(MethodParams):
        strength: float = param(1.0, "how hard to steer", minimum=0.0)

    @register_method
    class Mine(GuidedMethod):
        name, Params, contexts = "mine", MineParams, ("pref", "base")
        summary = "z = z_base + strength (z_pref − z_base)"
        def weight(self) -> float:
            return self.params.strength

Parameters are validated when built (``InvalidArgument`` naming the field); ``MethodParams.cli_flags`` turns the
fields into ``--flag`` options, so a method's defaults are written once, in its dataclass.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, ClassVar, Iterable, Optional

from ..errors import InvalidArgument

_REGISTRY: dict[str, type["Method"]] = {}


def param(default: Any, help: str, *, minimum: Optional[float] = None, maximum: Optional[float] = None,
          exclusive_minimum: bool = False, choices: Optional[Iterable] = None, flag: Optional[str] = None):
    """A method parameter: its default, help text and valid range, checked when the parameters are built."""
    meta = dict(help=help, minimum=minimum, maximum=maximum, exclusive_minimum=exclusive_minimum,
                choices=tuple(choices) if choices is not None else None, flag=flag)
    return dataclasses.field(default=default, metadata=meta)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class MethodParams:
    """Base of every method's parameter dataclass: type and range checks from the ``param`` metadata."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = hints[f.name]
            if typing.get_origin(kind) is typing.Union:
                if value is None and type(None) in typing.get_args(kind):
                    continue
                options = [a for a in typing.get_args(kind) if a is not type(None)]
                kind = options[0] if len(options) == 1 else None      # a union of kinds: the method checks it
            meta = f.metadata
            if kind is int:
                if isinstance(value, bool) or not isinstance(value, int):
                    if isinstance(value, float) and value.is_integer():
                        object.__setattr__(self, f.name, int(value))
                        value = int(value)
                    else:
                        raise InvalidArgument(f.name, f"{f.name} must be an integer, got {value!r}")
            elif kind is float:
                if not _number(value) or not math.isfinite(value):
                    raise InvalidArgument(f.name, f"{f.name} must be a finite number, got {value!r}")
                object.__setattr__(self, f.name, float(value))
                value = float(value)
            if meta.get("choices") is not None and value not in meta["choices"]:
                raise InvalidArgument(f.name, f"{f.name} must be one of {', '.join(map(str, meta['choices']))}, "
                                              f"got {value!r}")
            lo, hi = meta.get("minimum"), meta.get("maximum")
            if lo is not None and (value <= lo if meta.get("exclusive_minimum") else value < lo):
                op = ">" if meta.get("exclusive_minimum") else ">="
                raise InvalidArgument(f.name, f"{f.name} must be {op} {lo} ({meta['help']}), got {value!r}")
            if hi is not None and value > hi:
                raise InvalidArgument(f.name, f"{f.name} must be <= {hi} ({meta['help']}), got {value!r}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def build(cls, values: dict) -> "MethodParams":
        """Parameters from a dict that may hold other methods' keys too (they are ignored); None means default."""
        return cls(**{k: v for k, v in values.items() if k in cls.names() and v is not None})

    @classmethod
    def cli_flags(cls) -> list[tuple[str, dataclasses.Field]]:
        """(``--flag``, field) per parameter, for argparse."""
        return [(f.metadata.get("flag") or "--" + f.name.replace("_", "-"), f) for f in dataclasses.fields(cls)]


@dataclasses.dataclass(frozen=True)
class NoParams(MethodParams):
    """A method without parameters of its own."""


class Method:
    """Base class. ``contexts`` are the prompts a request needs, in the order the rule reads their logits:
    ``"pref"`` (the preference-prompted context) and/or ``"base"`` (the plain context), built by
    ``pyalign.preferences.context_ids``."""
    name: ClassVar[str] = "?"
    kind: ClassVar[str] = "?"            # "guided" | "reward" | "search"
    Params: ClassVar[type[MethodParams]] = NoParams
    contexts: ClassVar[tuple[str, ...]] = ("base",)
    requires_preference: ClassVar[bool] = True
    accepts_preference_list: ClassVar[bool] = False
    #: where the preference goes when the request does not say ("system" prompt or "user" turn)
    default_placement: ClassVar[str] = "system"
    summary: ClassVar[str] = ""

    def __init__(self, params: Optional[MethodParams] = None):
        params = self.Params() if params is None else params
        if not isinstance(params, self.Params):
            raise InvalidArgument("params", f"method {self.name!r} takes {self.Params.__name__}, "
                                            f"got {type(params).__name__}")
        self.params = params

    @classmethod
    def from_kwargs(cls, **values) -> "Method":
        return cls(cls.Params.build(values))


class GuidedMethod(Method):
    """z = z_second + w (z_first − z_second) over the method's contexts (one context: z = z_first), sampled by
    ``torch.ops.pyalign.guided_sample``. ``weight()`` is the only thing a guided method decides."""
    kind = "guided"

    def weight(self) -> float:
        raise NotImplementedError(f"{type(self).__name__} must define weight()")


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: adds ``cls`` under ``cls.name`` (re-registering a name replaces it)."""
    if not isinstance(getattr(cls, "name", None), str) or cls.name in ("", "?"):
        raise ValueError("a registered method needs a class attribute name = '...'")
    _REGISTRY[cls.name] = cls
    return cls


def available_methods() -> list[str]:
    return list(_REGISTRY)


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name``; unknown names raise InvalidArgument listing the known ones."""
    if not isinstance(name, str):
        raise InvalidArgument("method", f"method must be a string, got {type(name).__name__}")
    if name not in _REGISTRY:
        raise InvalidArgument("method", f"unknown method {name!r}; known methods: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def all_param_names() -> set[str]:
    """Every parameter name of every registered method (to tell a typo from another method's parameter)."""
    return {n for cls in _REGISTRY.values() for n in cls.Params.names()}
