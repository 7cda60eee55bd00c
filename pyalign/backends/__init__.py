"""Backend registry: which implementation of the ``torch.ops.pyalign`` ops runs for a given device.

Every backend module exposes the same five functions with the op signatures of ``pyalign/_ops.py``
(tensors already validated by the public wrappers, contiguous last dimension):

    guided_sample, guided_logprobs, topk_candidates, topk_rescore, rescore_candidates

and reports rows it cannot sample (NaN, +inf or all −∞ logits) as token −1 (log-probs NaN) instead of
raising, so that kernels never need a host synchronisation; the public wrappers turn that into an error.

Selection, first match wins: ``with pyalign.backends.use("triton"):`` (thread-local), the environment
variable ``PYALIGN_BACKEND=torch|cpp|cuda|triton``, then the fastest available for the device
(CPU: cpp → torch; CUDA: cuda → triton → torch).
"""
from __future__ import annotations

import contextlib
import importlib
import os
import threading
from types import ModuleType

NAMES = ("torch", "cpp", "cuda", "triton")
_DEFAULT_ORDER = {"cpu": ("cpp", "torch"), "cuda": ("cuda", "triton", "torch")}
_DEVICES = {"torch": ("cpu", "cuda"), "cpp": ("cpu",), "cuda": ("cuda",), "triton": ("cuda", "cpu")}
_local = threading.local()
_cache: dict[str, ModuleType | Exception] = {}


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (not built, no GPU, Triton missing, ...)."""


def _load(name: str) -> ModuleType:
    if name not in NAMES:
        raise ValueError(f"unknown pyalign backend {name!r}; choose one of {', '.join(NAMES)}")
    if name not in _cache:
        try:
            _cache[name] = importlib.import_module(f"pyalign.backends.{name}_backend")
        except Exception as exc:  # noqa: BLE001 - the reason is reported to the user verbatim
            _cache[name] = exc
    found = _cache[name]
    if isinstance(found, Exception):
        raise BackendUnavailable(f"pyalign backend {name!r} is unavailable: {found}") from found
    return found


def available(name: str) -> bool:
    """True if backend ``name`` loads on this machine (it may still support only some devices)."""
    try:
        _load(name)
        return True
    except BackendUnavailable:
        return False


def requested() -> str | None:
    """The forced backend name (context manager, then PYALIGN_BACKEND), or None for automatic choice."""
    name = getattr(_local, "name", None) or os.environ.get("PYALIGN_BACKEND") or None
    if name is not None and name not in NAMES:
        raise ValueError(f"PYALIGN_BACKEND={name!r} is not a backend; choose one of {', '.join(NAMES)}")
    return name


def for_device(device_type: str) -> ModuleType:
    """The backend module that runs ops on ``device_type`` ('cpu' or 'cuda')."""
    name = requested()
    if name is not None:
        if device_type not in _DEVICES[name]:
            raise BackendUnavailable(
                f"backend {name!r} (forced by PYALIGN_BACKEND or pyalign.backends.use) cannot run on {device_type} "
                f"tensors; move the tensors to {' or '.join(_DEVICES[name])} or choose another backend")
        if name == "triton" and device_type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
            raise BackendUnavailable("the triton backend runs on CPU tensors only under TRITON_INTERPRET=1")
        return _load(name)
    for candidate in _DEFAULT_ORDER.get(device_type, ("torch",)):
        if available(candidate):
            return _load(candidate)
    raise BackendUnavailable(f"no pyalign backend can run on {device_type}")


def default_name(device_type: str) -> str:
    mod = for_device(device_type)
    return mod.__name__.rsplit(".", 1)[-1].removesuffix("_backend")


@contextlib.contextmanager
def use(name: str):
    """Force a backend for the ops called inside the block (this thread only)."""
    _load(name)
    previous = getattr(_local, "name", None)
    _local.name = name
    try:
        yield
    finally:
        _local.name = previous
