"""Backend registry: which implementation of the ``torch.ops.pyalign`` ops runs for a given device.

Every backend module exposes the same five functions with the op signatures of ``pyalign/ops/``
(tensors already validated by the public wrappers, contiguous last dimension):

    guided_sample, guided_logprobs, topk_candidates, topk_rescore, rescore_candidates

and reports rows it cannot sample (NaN, +inf or all −∞ logits) as token −1 (log-probs NaN) instead of
raising, so that kernels never need a host synchronisation; the public wrappers turn that into an error.

Selection, first match wins: ``with pyalign.backends.use("triton"):`` (thread-local), the environment
variable ``PYALIGN_BACKEND=torch|cpp|cuda|triton``, then the fastest available for the device
(CPU: cpp → torch; CUDA: cuda → triton → torch). When the automatic choice has to skip the backend a device
normally uses (cpp on CPU, cuda on CUDA), it says why once per process (``BackendFallbackWarning``, naming the
backend, the reason and the fix); ``status()`` gives every backend's state for ``pyalign backends``.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import threading
import warnings
from types import ModuleType

NAMES = ("torch", "cpp", "cuda", "triton")
_DEFAULT_ORDER = {"cpu": ("cpp", "torch"), "cuda": ("cuda", "triton", "torch")}
_DEVICES = {"torch": ("cpu", "cuda"), "cpp": ("cpu",), "cuda": ("cuda",), "triton": ("cuda", "cpu")}
_local = threading.local()
_cache: dict[str, ModuleType | Exception] = {}
_warned: set[str] = set()
_warn_lock = threading.Lock()
_FIX = {
    "cpp": "the cpp backend compiles csrc/ at first use: it needs a C++17 compiler (g++) and ninja "
           "(pip install ninja), and the sources (a checkout, a wheel that ships them, or PYALIGN_CSRC pointing "
           "at a csrc/ folder); PYALIGN_BUILD_VERBOSE=1 shows the compiler output",
    "cuda": "the cuda backend compiles csrc/ with nvcc at first use: install the CUDA toolkit matching "
            "torch.version.cuda and set CUDA_HOME (or install a build made with PYALIGN_BUILD_EXT=1); "
            "PYALIGN_BUILD_VERBOSE=1 shows the compiler output",
}


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (not built, no GPU, Triton missing, ...)."""


class BackendFallbackWarning(UserWarning):
    """The automatic choice skipped the backend a device normally uses (it failed to load)."""


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
    order = _DEFAULT_ORDER.get(device_type, ("torch",))
    for candidate in order:
        if available(candidate):
            if candidate != order[0]:
                _warn_fallback(order[0], candidate, device_type)
            return _load(candidate)
    raise BackendUnavailable(f"no pyalign backend can run on {device_type}: " + "; ".join(
        f"{name}: {reason(name)}" for name in order))


def reason(name: str) -> str | None:
    """Why backend ``name`` cannot load (the error it raised), or None if it loads."""
    try:
        _load(name)
        return None
    except BackendUnavailable as exc:
        found = _cache.get(name)
        return f"{type(found).__name__}: {found}" if isinstance(found, Exception) else str(exc)


def status() -> dict[str, str]:
    """{backend name: "ok" or the reason it cannot load} for every backend (loading cpp may compile it once)."""
    return {name: reason(name) or "ok" for name in NAMES}


def _warn_fallback(skipped: str, chosen: str, device_type: str) -> None:
    """Warn once per process that ``skipped`` (the device's usual backend) failed to load."""
    with _warn_lock:
        if skipped in _warned:
            return
        _warned.add(skipped)
    why = reason(skipped) or "unknown"
    if len(why) > 2000:
        why = why[:2000] + " [...] (pyalign backends shows the whole message)"
    warnings.warn(
        f"pyalign: the {skipped} backend is unavailable, so {device_type} ops run on the {chosen} backend "
        f"(slower). Reason: {why}. Fix: {_FIX.get(skipped, 'see the reason')}; or set PYALIGN_BACKEND={chosen} "
        "to choose it explicitly (this warning is then not shown).",
        BackendFallbackWarning, stacklevel=3)


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
