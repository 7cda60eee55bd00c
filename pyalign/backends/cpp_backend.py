"""The C++ CPU backend: thin adapters over ``torch.ops.pyalign_C.*`` (csrc/cpu, built by ``_build.py``).

Importing this module compiles the extension on first use (ninja, ~1 min on 2 cores, cached afterwards) and
raises ``_build.BuildError`` with the compiler's message if that fails: the backend registry reports it and
falls back to the torch backend. Same signatures and semantics as ``torch_backend`` (bad rows → token −1).
The adapters themselves are in ``_c_ops.py``.
"""
from __future__ import annotations

from . import _build

BUILD_INFO = _build.load()

from ._c_ops import (guided_logprobs, guided_sample, rescore_candidates, topk_candidates,  # noqa: E402,F401
                     topk_rescore)
